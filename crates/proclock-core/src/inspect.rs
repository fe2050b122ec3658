//! Looking at locks from outside: the state of one lock, every lock of a directory, and the
//! forced release of a lock, for every backend. Nothing here takes a lock, and looking never
//! creates one: a name that was never used is simply free.
//!
//! Each backend contributes one [`Inspector`] entry to [`BACKENDS`], naming entry points that
//! live in its own folder (`shm/mod.rs`, `file/mod.rs`): how to look one lock up, how to list
//! its locks, and whether (and how) a forced release ends a hold. A new backend adds its entry
//! there and nothing else in this file changes; no backend imports this module.

use std::path::Path;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::file;
use crate::name::LockName;
pub use crate::raw_lock::{Listing, Seen, Skipped};
use crate::shm;

/// One lock as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockState {
  pub backend: Backend,
  pub name: String,
  pub seen: Seen,
}

impl LockState {
  /// Held now.
  pub fn locked(&self) -> bool {
    self.seen.locked
  }
}

/// What a backend provides for inspection: its own entry points, which live in its folder.
/// `dir` is the lock directory asked for (`None`: the default directory; the facade has
/// already applied `PROCLOCK_DIR`).
pub struct Inspector {
  pub backend: Backend,
  /// Whether one lock is held, and by whom; never creates anything.
  pub look: fn(name: &LockName, dir: Option<&Path>) -> Result<Seen>,
  /// Every lock of this backend in the directory, with its readable name and holder.
  pub list: fn(dir: Option<&Path>) -> Result<Listing>,
  /// What a forced release does with this backend.
  pub force: Forcing,
}

/// Whether a backend can end another process's hold, in the types: a backend that cannot says
/// why instead (see [`crate::raw_lock::ForceRelease`] and [`crate::raw_lock::CannotForce`]).
pub enum Forcing {
  /// End the hold of lock `name`: `Ok(false)` if it was not held or does not exist (nothing is
  /// created).
  Can(fn(name: &str, dir: Option<&Path>) -> Result<bool>),
  /// `Ok(None)` if lock `name` is not held (or does not exist), else the error a forced release
  /// fails with.
  Cannot(fn(name: &str, dir: Option<&Path>) -> Result<Option<Error>>),
}

/// Every backend `inspect`, `list` and `force_release` know.
pub const BACKENDS: &[Inspector] = &[
  Inspector {
    backend: Backend::Shm,
    look: shm::look,
    list: shm::list,
    force: Forcing::Can(shm::force_release),
  },
  Inspector {
    backend: Backend::File,
    look: file::look,
    list: file::list,
    force: Forcing::Cannot(file::why_not_forced),
  },
];

fn inspector(backend: Backend) -> &'static Inspector {
  BACKENDS
    .iter()
    .find(|i| i.backend == backend)
    .expect("every backend has an entry in BACKENDS")
}

/// The state of lock `name` of `backend`. A name never used is free; nothing is created.
pub fn inspect(backend: Backend, name: &str, dir: Option<&Path>) -> Result<LockState> {
  let b = inspector(backend);
  let lock_name = LockName::new(name)?;
  Ok(LockState {
    backend,
    name: name.to_owned(),
    seen: (b.look)(&lock_name, dir)?,
  })
}

/// Every lock of every backend in the directory, sorted by name (then backend).
pub fn list(dir: Option<&Path>) -> Result<Vec<LockState>> {
  list_with_skipped(dir).map(|(locks, _)| locks)
}

/// [`list`], and the directory entries named like lock files that it left out, with why (for
/// `proclock list` to show: a stray entry is reported, never fatal to the listing).
pub fn list_with_skipped(dir: Option<&Path>) -> Result<(Vec<LockState>, Vec<Skipped>)> {
  let (mut out, mut skipped) = (Vec::new(), Vec::new());
  for b in BACKENDS {
    let (locks, left_out) = (b.list)(dir)?;
    skipped.extend(left_out);
    for (name, seen) in locks {
      out.push(LockState {
        backend: b.backend,
        name,
        seen,
      });
    }
  }
  out.sort_by(|x, y| (&x.name, x.backend.name()).cmp(&(&y.name, y.backend.name())));
  skipped.sort_by(|x, y| x.entry.cmp(&y.entry));
  Ok((out, skipped))
}

/// End the current hold of lock `name`, whoever holds it. `Ok(false)` if it was not held (or
/// never existed: nothing is created). See [`crate::raw_lock::ForceRelease`] for what follows.
pub fn force_release(backend: Backend, name: &str, dir: Option<&Path>) -> Result<bool> {
  let b = inspector(backend);
  LockName::new(name)?;
  match b.force {
    Forcing::Can(force) => force(name, dir),
    Forcing::Cannot(why_not) => match why_not(name, dir)? {
      None => Ok(false),
      Some(refused) => Err(refused),
    },
  }
}

#[cfg(all(test, unix))]
mod tests {
  use super::*;
  use crate::ErrorKind;

  #[test]
  fn looking_creates_nothing_and_forcing_ends_a_hold() {
    let p = crate::lock_dir::scratch_dir("inspect");
    let dir = Some(p.as_path());
    // No directory: free, empty, nothing to force, and still no directory.
    assert_eq!(inspect(Backend::Shm, "a", dir).unwrap().seen.owner, None);
    assert!(list(dir).unwrap().is_empty());
    assert!(!force_release(Backend::Shm, "a", dir).unwrap());
    assert!(!p.exists(), "looking must not create the lock directory");
    assert_eq!(Backend::parse("nope").unwrap_err().kind(), ErrorKind::InvalidArgument);

    let holder = crate::Handle::new(crate::ShmLock::open("b", dir).unwrap(), false, "the holder".into()).unwrap();
    assert!(holder.try_acquire(None).unwrap());
    let token = holder.token().unwrap();
    // A name never used stays unclaimed after being inspected.
    assert_eq!(inspect(Backend::Shm, "a", dir).unwrap().seen.owner, None);
    let b = inspect(Backend::Shm, "b", dir).unwrap();
    assert!(b.locked());
    let owner = b.seen.owner.unwrap();
    assert_eq!(
      (owner.pid, owner.description.as_str(), owner.token),
      (std::process::id(), "the holder", token)
    );
    let names: Vec<_> = list(dir).unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["b"]);

    assert!(force_release(Backend::Shm, "b", dir).unwrap());
    assert!(!inspect(Backend::Shm, "b", dir).unwrap().locked());
    assert_eq!(holder.release().unwrap_err().kind(), ErrorKind::NotHeld);
    let next = crate::Handle::new(crate::ShmLock::open("b", dir).unwrap(), false, String::new()).unwrap();
    assert!(next.try_acquire(None).unwrap());
    assert!(next.owner_died());
    assert!(next.token().unwrap() > token);
    assert!(!force_release(Backend::Shm, "a", dir).unwrap());
    next.close();
    std::fs::remove_dir_all(&p).unwrap();
  }
}
