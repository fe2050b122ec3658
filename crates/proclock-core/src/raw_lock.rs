//! The one small trait every backend implements, in the spirit of `lock_api::RawMutex`: the raw
//! protocol of one named lock as seen by one handle. Reentrancy, pending-acquisition rules,
//! close, and waiting on a thread of our own are layered on top in `handle.rs`, once, for all
//! backends.
//!
//! A backend must be usable from any thread: acquisition may happen on a waiter thread and
//! release on the JavaScript thread, so nothing here may be thread-affine.

use std::time::Instant;

use crate::error::{Error, Result};
pub use crate::lock_word::{Acquired, Stop};

/// The holder of a lock, as `owner()` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerInfo {
  pub pid: u32,
  /// The holding handle's UUID (empty if the holder died before recording itself).
  pub uuid: String,
  pub description: String,
  /// Epoch milliseconds when the hold began (0 if unknown).
  pub since_ms: u64,
  pub token: u64,
  /// The holder's process is running (false: it died holding; the next acquirer takes over).
  pub alive: bool,
}

impl OwnerInfo {
  /// A holder that has not recorded itself yet (it won the lock a moment ago), or whose record
  /// cannot be read: only the lock's current token is known.
  pub fn unknown(token: u64, alive: bool) -> OwnerInfo {
    OwnerInfo {
      pid: 0,
      uuid: String::new(),
      description: String::new(),
      since_ms: 0,
      token,
      alive,
    }
  }
}

/// What a backend sees of one lock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seen {
  /// Held by a live holder now (for a reader-writer lock: by readers or a writer).
  pub locked: bool,
  /// The holder, alive or not (a dead one is shown with `alive: false` until someone takes the
  /// lock over). Readers have no owner record.
  pub owner: Option<OwnerInfo>,
}

impl From<Option<OwnerInfo>> for Seen {
  /// For backends where a lock is held exactly when it has a live owner.
  fn from(owner: Option<OwnerInfo>) -> Seen {
    Seen {
      locked: owner.as_ref().is_some_and(|o| o.alive),
      owner,
    }
  }
}

/// An entry of the lock directory that `list` left out, and why (a stray file named like a lock
/// file, a lock table that cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
  /// The entry's file name in the lock directory.
  pub entry: String,
  pub why: String,
}

impl Skipped {
  pub fn new(entry: &str, why: String) -> Skipped {
    Skipped {
      entry: entry.to_owned(),
      why,
    }
  }
}

/// Every lock of one backend (readable name and holder), and the entries it left out.
pub type Listing = (Vec<(String, Seen)>, Vec<Skipped>);

pub trait RawLock: Losable + Send + Sync {
  /// One attempt, never waits. Takes the lock if free or abandoned, and, when `probe`, if its
  /// holder's process is dead (which costs system calls when the lock is busy).
  fn try_lock(&self, description: &[u8], probe: bool) -> Result<Option<Acquired>>;
  /// Wait until acquired, `deadline` passes, or `cancelled()` returns true.
  fn lock(
    &self,
    description: &[u8],
    deadline: Option<Instant>,
    cancelled: &dyn Fn() -> bool,
  ) -> Result<std::result::Result<Acquired, Stop>>;
  /// [`RawLock::lock`] on the caller's own thread, which nothing can cancel (a synchronous
  /// acquisition). A backend whose waits need a helper thread only to be cancellable may wait
  /// directly here.
  fn lock_uncancellable(&self, description: &[u8], deadline: Option<Instant>) -> Result<std::result::Result<Acquired, Stop>> {
    self.lock(description, deadline, &|| false)
  }
  /// Release a hold of this handle. `NotHeld` if this handle does not hold it (any more).
  fn unlock(&self) -> Result<()>;
  /// Release a hold of this handle so that the next holder is told the owner died.
  fn abandon(&self) -> Result<()>;
  /// Wake this handle's waiter(s) so they notice a cancellation now.
  fn interrupt(&self);
  /// This handle's owner UUID.
  fn uuid(&self) -> [u8; 16];
  /// Which lock (and mode) this handle waits on, as far as this process is concerned: pending
  /// asynchronous acquisitions with equal keys share one waiting thread (`shared_wait.rs`), and
  /// [`RawLock::interrupt`] on any of them must wake the wait in progress for any other.
  fn wait_key(&self) -> String;
  /// The handle is closed for good and holds nothing: let go of every descriptor it owns now,
  /// rather than when the handle is finally dropped (garbage collection, for JavaScript). Called
  /// once nothing else can use this handle; any later call fails or does nothing.
  fn close(&self) {}
  /// The descriptor whose lifetime keeps a hold of this handle alive, for handing the hold to
  /// a child process (`proclock run` passes it to the command it runs, as `flock(1)` does):
  /// while any process keeps a duplicate of it open, the hold survives the death of this one.
  /// Meaningful only while this handle holds (`Handle::hold_descriptor` checks that); `None`
  /// if the backend has no such descriptor. Unix only: on Windows, file locks and the liveness
  /// lock belong to the process that took them, so no descriptor can carry them to another.
  #[cfg(unix)]
  fn hold_descriptor(&self) -> Option<std::os::fd::RawFd> {
    None
  }
}

/// Looking at the lock through a handle: who holds it, without taking it. Every backend today
/// can; a backend that cannot tell (or not cheaply) leaves it out, and the handle's `is_locked`
/// and `owner` are then not there to call.
pub trait InspectLock {
  /// Held by a live holder (anyone, this handle included), now.
  fn is_locked(&self) -> Result<bool>;
  /// The current holder, if the lock is held (alive or not yet taken over).
  fn owner(&self) -> Result<Option<OwnerInfo>>;
}

/// Where a lock lives, for noticing that it was split from its name (its lock directory, or
/// its file in it, deleted or moved while in use: `lock_dir/mod.rs`). The defaults say "nowhere to
/// lose", for a backend that has no files (a database server keeps its own locks).
pub trait Losable {
  /// The lock directory this lock lives in, where its handle registers to be told of a loss.
  /// `None`: a backend without one (nothing to lose).
  #[cfg(not(loom))]
  fn lock_dir(&self) -> Option<&crate::lock_dir::LockDir> {
    None
  }
  /// Whether deleting or moving the directory entry `entry` splits this lock (see
  /// [`crate::lock_dir::Member::splits_with`]).
  fn splits_with(&self, _entry: &str, _replaced: bool) -> bool {
    false
  }
  /// `Some(why)` if this lock's files are already split from their names (checked once when a
  /// handle registers, for a loss swept just before it joined, and after dropped events).
  fn files_gone(&self) -> Option<String> {
    None
  }
}

/// Ending the current hold of a lock, whoever holds it (`forceRelease`; dangerous, for
/// operators). Only a backend that can take a hold away from a live holder implements it.
pub trait ForceRelease {
  /// `Ok(true)`: a hold was ended; `Ok(false)`: the lock was not held. Afterwards: the old
  /// holder's next release fails with `NotHeld`; the next acquirer is told `owner_died`; its
  /// token is larger than the old holder's (the backend waits, within a bound, for the old
  /// holder to finish acquiring). Called on a handle that does not hold the lock (normally one
  /// opened just for this).
  fn force_release(&self) -> Result<bool>;
}

/// The other side of [`ForceRelease`], for a backend whose holds nobody but their holder can
/// end (a kernel file lock): it says why a forced release of a held lock is refused.
pub trait CannotForce {
  /// `Ok(None)`: the lock is not held, so there is nothing to end (a forced release reports
  /// `false`); `Ok(Some(error))`: it is held, and `error` is what the forced release fails with.
  fn why_not_forced(&self) -> Result<Option<Error>>;
}

/// Canonical hyphenated form of a UUID.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
  uuid::Uuid::from_bytes(*bytes).hyphenated().to_string()
}
