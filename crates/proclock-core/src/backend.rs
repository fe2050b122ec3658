//! The backends behind one type. A handle's backend is chosen when it is opened (the `backend`
//! option); dispatching through this enum costs one well-predicted branch per call, where a
//! trait object would cost an indirect call and keep the shm fast path from inlining.

use std::path::Path;
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::file::{FileLock, Mode};
use crate::raw_lock::{Acquired, InspectLock, Losable, OwnerInfo, RawLock, Stop};
use crate::shm::ShmLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
  /// A lock word in shared memory (`shm/mod.rs`).
  Shm,
  /// A kernel file lock (`file/mod.rs`).
  File,
}

impl Backend {
  /// The option value that names this backend.
  pub fn name(self) -> &'static str {
    match self {
      Backend::Shm => "shm",
      Backend::File => "file",
    }
  }

  pub fn parse(name: &str) -> Result<Backend> {
    match name {
      "shm" => Ok(Backend::Shm),
      "file" => Ok(Backend::File),
      other => Err(Error::new(
        ErrorKind::InvalidArgument,
        format!("backend must be 'shm' or 'file', got {other:?}"),
      )),
    }
  }
}

pub enum AnyLock {
  Shm(ShmLock),
  File(FileLock),
}

impl AnyLock {
  /// Open an exclusive lock on `name` with `backend`.
  pub fn open(backend: Backend, name: &str, dir: Option<&Path>) -> Result<AnyLock> {
    Ok(match backend {
      Backend::Shm => AnyLock::Shm(ShmLock::open(name, dir)?),
      Backend::File => AnyLock::File(FileLock::open(name, dir, Mode::Exclusive)?),
    })
  }
}

macro_rules! dispatch {
  ($self:ident, $lock:ident => $call:expr) => {
    match $self {
      AnyLock::Shm($lock) => $call,
      AnyLock::File($lock) => $call,
    }
  };
}

impl RawLock for AnyLock {
  #[inline]
  fn try_lock(&self, description: &[u8], probe: bool) -> Result<Option<Acquired>> {
    dispatch!(self, l => l.try_lock(description, probe))
  }
  fn lock(
    &self,
    description: &[u8],
    deadline: Option<Instant>,
    cancelled: &dyn Fn() -> bool,
  ) -> Result<std::result::Result<Acquired, Stop>> {
    dispatch!(self, l => l.lock(description, deadline, cancelled))
  }
  fn lock_uncancellable(&self, description: &[u8], deadline: Option<Instant>) -> Result<std::result::Result<Acquired, Stop>> {
    dispatch!(self, l => l.lock_uncancellable(description, deadline))
  }
  #[inline]
  fn unlock(&self) -> Result<()> {
    dispatch!(self, l => l.unlock())
  }
  fn abandon(&self) -> Result<()> {
    dispatch!(self, l => l.abandon())
  }
  fn interrupt(&self) {
    dispatch!(self, l => l.interrupt())
  }
  fn uuid(&self) -> [u8; 16] {
    dispatch!(self, l => l.uuid())
  }
  #[cfg(unix)]
  fn hold_descriptor(&self) -> Option<std::os::fd::RawFd> {
    dispatch!(self, l => l.hold_descriptor())
  }
  fn wait_key(&self) -> String {
    dispatch!(self, l => l.wait_key())
  }
  fn close(&self) {
    dispatch!(self, l => l.close())
  }
}

impl InspectLock for AnyLock {
  fn is_locked(&self) -> Result<bool> {
    dispatch!(self, l => l.is_locked())
  }
  fn owner(&self) -> Result<Option<OwnerInfo>> {
    dispatch!(self, l => l.owner())
  }
}

impl Losable for AnyLock {
  fn lock_dir(&self) -> Option<&crate::lock_dir::LockDir> {
    dispatch!(self, l => l.lock_dir())
  }
  fn splits_with(&self, entry: &str, replaced: bool) -> bool {
    dispatch!(self, l => l.splits_with(entry, replaced))
  }
  fn files_gone(&self) -> Option<String> {
    dispatch!(self, l => l.files_gone())
  }
}

// No `ForceRelease` for `AnyLock`: not every backend can end another process's hold. A forced
// release goes through the table of backends (`inspect.rs`), which says per backend whether it
// can.
