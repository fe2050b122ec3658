//! The atomics the lock-word protocol is written against: std's in a normal build, loom's in a
//! `--cfg loom` build, so that the model check runs the same protocol code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
