//! A reader-writer lock: many readers or one writer, machine-wide, on the `file` backend.
//!
//! Shared and exclusive kernel locks on the same lock file as a plain `file` Lock of that name
//! (so a `Lock` and an `RwLock` writer of one name exclude each other). A handle is two halves,
//! each an ordinary [`Handle`] on its own description: one asks for shared locks, the other
//! for exclusive ones. This type only keeps the rule that a handle holds or waits for one mode
//! at a time: reading and then asking to write on the same handle is `Reentry` (upgrading in
//! place would deadlock two readers that both try it).
//!
//! Why not on `shm`: a reader count in shared memory cannot tell which readers died, so one
//! SIGKILLed reader would keep writers out for ever; per-reader records would bound the number
//! of readers. Kernel shared locks are released per description when a reader dies.

use std::path::Path;
use std::sync::Arc;

use crate::backend::AnyLock;
use crate::error::{Error, ErrorKind, Result};
use crate::file::{FileLock, Mode};
use crate::handle::Handle;
use crate::raw_lock::RawLock;

pub struct RwHandle<R: RawLock> {
  read: Arc<Handle<R>>,
  write: Arc<Handle<R>>,
}

impl RwHandle<AnyLock> {
  pub fn open(name: &str, dir: Option<&Path>, description: String) -> Result<RwHandle<AnyLock>> {
    let half = |mode| FileLock::open(name, dir, mode).map(AnyLock::File);
    Ok(RwHandle::new(
      Handle::new(half(Mode::Shared)?, false, description.clone())?,
      Handle::new(half(Mode::Exclusive)?, false, description)?,
    ))
  }
}

impl<R: RawLock + 'static> RwHandle<R> {
  /// Both halves, registered with their lock directory so that a loss reaches them.
  pub fn new(read: Handle<R>, write: Handle<R>) -> RwHandle<R> {
    let rw = RwHandle {
      read: Arc::new(read),
      write: Arc::new(write),
    };
    rw.read.join_dir();
    rw.write.join_dir();
    rw
  }

  /// Either half was lost (both are, together: they use the same file).
  pub fn is_lost(&self) -> bool {
    self.read.is_lost() || self.write.is_lost()
  }

  /// The message of this handle's `Lost` error, if it was lost.
  pub fn lost_message(&self) -> Option<String> {
    self.write.lost_message().or_else(|| self.read.lost_message())
  }

  /// The token of a hold that was lost (0 for a read hold), if the handle held when lost.
  pub fn lost_token(&self) -> Option<u64> {
    self.write.lost_token().or_else(|| self.read.lost_token())
  }

  /// The half for `mode`, if the other half neither holds nor waits.
  pub fn half(&self, mode: Mode) -> Result<&Arc<Handle<R>>> {
    let (this, other, other_name) = match mode {
      Mode::Shared => (&self.read, &self.write, "write"),
      Mode::Exclusive => (&self.write, &self.read, "read"),
    };
    if other.busy() {
      return Err(Error::new(
        ErrorKind::Reentry,
        format!("this handle already holds (or waits for) the {other_name} lock; release it first"),
      ));
    }
    Ok(this)
  }

  /// Both halves (for registering them with an environment's teardown).
  pub fn halves(&self) -> [&Arc<Handle<R>>; 2] {
    [&self.read, &self.write]
  }

  /// The mode held now, if any.
  pub fn held(&self) -> Option<Mode> {
    if self.write.held() {
      Some(Mode::Exclusive)
    } else if self.read.held() {
      Some(Mode::Shared)
    } else {
      None
    }
  }

  pub fn release(&self) -> Result<()> {
    self.end_held_half(Handle::release)
  }

  /// Give back a hold never delivered to its caller; see [`Handle::give_back`].
  pub fn give_back(&self) -> Result<()> {
    self.end_held_half(Handle::give_back)
  }

  /// End the hold of whichever half holds, with `end`.
  fn end_held_half(&self, end: fn(&Handle<R>) -> Result<()>) -> Result<()> {
    match self.held() {
      Some(Mode::Exclusive) => end(&self.write),
      Some(Mode::Shared) => end(&self.read),
      None if self.read.closed() => Err(Error::new(ErrorKind::Closed, "the lock handle is closed")),
      // Lost: the half that held (or either) says so with its reason.
      None if self.is_lost() => end(if self.write.lost_token().is_some() { &self.write } else { &self.read }),
      None => Err(Error::new(
        ErrorKind::NotHeld,
        "this handle holds neither the read nor the write lock",
      )),
    }
  }

  pub fn cancel(&self) {
    self.read.cancel();
    self.write.cancel();
  }

  pub fn close(&self) {
    self.read.close();
    self.write.close();
  }
}
