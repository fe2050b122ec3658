//! The atomics the lock-word protocol and the handle's state machine are written against: std's
//! in a normal build, loom's in a `--cfg loom` build, so that the model checks run the same code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
