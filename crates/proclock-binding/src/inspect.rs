//! `inspect`, `list` and `forceRelease` as Node-API functions: translation of
//! `proclock_core::inspect`, nothing more.

// Only napi's generated registration refers to these functions, and a test build has none.
#![cfg_attr(test, allow(dead_code))]

use std::path::Path;

use napi_derive::napi;
use proclock_core::inspect::{self, LockState};
use proclock_core::Backend;

use crate::{js_err, Code, NativeOwner};

/// One lock as seen from outside.
#[napi(object)]
pub struct NativeLockState {
  pub backend: String,
  pub name: String,
  pub locked: bool,
  pub owner: Option<NativeOwner>,
}

impl From<LockState> for NativeLockState {
  fn from(s: LockState) -> Self {
    NativeLockState {
      backend: s.backend.name().to_owned(),
      locked: s.locked(),
      name: s.name,
      owner: s.seen.owner.map(NativeOwner::from),
    }
  }
}

/// The state of one lock, without taking it or creating anything.
#[napi]
pub fn inspect_lock(backend: String, name: String, dir: Option<String>) -> napi::Result<NativeLockState, Code> {
  let backend = Backend::parse(&backend).map_err(js_err)?;
  inspect::inspect(backend, &name, dir.as_deref().map(Path::new))
    .map(NativeLockState::from)
    .map_err(js_err)
}

/// A directory entry that the listing left out, and why.
#[napi(object)]
pub struct NativeSkipped {
  pub entry: String,
  pub why: String,
}

/// Every lock of every backend in the lock directory, and the entries left out.
#[napi(object)]
pub struct NativeListing {
  pub locks: Vec<NativeLockState>,
  pub skipped: Vec<NativeSkipped>,
}

/// Every lock of every backend in the lock directory.
#[napi]
pub fn list_locks(dir: Option<String>) -> napi::Result<NativeListing, Code> {
  let (locks, skipped) = inspect::list_with_skipped(dir.as_deref().map(Path::new)).map_err(js_err)?;
  Ok(NativeListing {
    locks: locks.into_iter().map(NativeLockState::from).collect(),
    skipped: skipped
      .into_iter()
      .map(|s| NativeSkipped {
        entry: s.entry,
        why: s.why,
      })
      .collect(),
  })
}

/// End the current hold of a lock, whoever holds it; false if it was not held.
#[napi]
pub fn force_release(backend: String, name: String, dir: Option<String>) -> napi::Result<bool, Code> {
  let backend = Backend::parse(&backend).map_err(js_err)?;
  inspect::force_release(backend, &name, dir.as_deref().map(Path::new)).map_err(js_err)
}
