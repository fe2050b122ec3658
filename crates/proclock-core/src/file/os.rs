//! Kernel file locks, one small set of calls per OS, for the `file` backend.
//!
//! Every lock here belongs to an *open file description* (what one `open()` returns), never to
//! a process. That is the property the backend stands on:
//! - Classic `fcntl(F_SETLK)` locks belong to the process, and *any* `close()` of *any*
//!   descriptor of the file in that process drops them: a library that reads the lock file, a
//!   logger that opens it, `fs.readFileSync` on it, and the lock silently vanishes (SQLite's
//!   `os_unix.c` spends hundreds of lines working around this). We never use them.
//! - Two handles in one process therefore exclude each other, like two processes do.
//! - The kernel drops a description's lock when the description's last descriptor is closed,
//!   which happens when the holder dies in any way. Descriptors are opened `O_CLOEXEC`, so a
//!   spawned child never inherits one and never keeps a dead parent's lock alive.
//!
//! Per OS:
//! - **Linux**: open-file-description locks (`F_OFD_SETLK`/`F_OFD_SETLKW`, Linux 3.15+) on one
//!   byte at [`LOCK_OFFSET`]. Not `flock`: on NFS, Linux emulates `flock` with per-process
//!   byte-range locks and the close() hazard comes back; OFD locks keep their semantics there.
//! - **macOS and the BSDs**: `flock` (std's `File::lock*`), which is per description there.
//! - **Windows**: `LockFileEx` on one byte at [`LOCK_OFFSET`]. Windows byte-range locks are
//!   mandatory (a locked range cannot be read through another handle), so the locked byte lies
//!   far past the data: the holder record stays readable by everyone. (std's `File::lock`
//!   locks from offset 0, which would make the record unreadable while held.)

use std::fs::File;
use std::io;

/// Where the locked byte lies: far past the 4 KiB of data in a lock file.
#[cfg(any(target_os = "linux", windows))]
pub const LOCK_OFFSET: u64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
  /// Many holders at once (readers).
  Shared,
  /// One holder.
  Exclusive,
}

#[cfg(target_os = "linux")]
pub use imp::probe;
pub use imp::{lock, try_lock, unlock};

/// What other descriptions hold. `flock` and `LockFileEx` have no query, so the probe takes
/// the lock for an instant and gives it back. A `tryAcquire` elsewhere that lands inside that
/// instant fails once; that is the price of asking, and only `owner()`/`isLocked()`/`inspect()`
/// pay it. (Linux asks without taking: see `imp::probe`.)
#[cfg(not(target_os = "linux"))]
pub fn probe(file: &File) -> io::Result<Option<Mode>> {
  if try_lock(file, Mode::Exclusive)? {
    unlock(file)?;
    return Ok(None);
  }
  if try_lock(file, Mode::Shared)? {
    unlock(file)?;
    return Ok(Some(Mode::Shared));
  }
  Ok(Some(Mode::Exclusive))
}

#[cfg(target_os = "linux")]
mod imp {
  use super::*;
  use std::os::fd::AsRawFd;

  fn request(file: &File, cmd: libc::c_int, kind: libc::c_int) -> io::Result<libc::flock> {
    // SAFETY: a zeroed flock is a valid value; fields are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = LOCK_OFFSET as libc::off_t;
    fl.l_len = 1;
    // l_pid must be 0 for OFD requests.
    loop {
      // SAFETY: valid descriptor and a pointer to a live flock struct.
      if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) } == 0 {
        return Ok(fl);
      }
      let e = io::Error::last_os_error();
      // A signal arriving at this thread interrupts the blocking wait; ask again.
      if e.raw_os_error() != Some(libc::EINTR) {
        return Err(e);
      }
    }
  }

  fn kind(mode: Mode) -> libc::c_int {
    match mode {
      Mode::Shared => libc::F_RDLCK,
      Mode::Exclusive => libc::F_WRLCK,
    }
  }

  /// One attempt: `Ok(false)` if another description holds a conflicting lock.
  pub fn try_lock(file: &File, mode: Mode) -> io::Result<bool> {
    match request(file, libc::F_OFD_SETLK, kind(mode)) {
      Ok(_) => Ok(true),
      Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
      Err(e) => Err(e),
    }
  }

  /// Wait in the kernel until granted. (The kernel does no deadlock detection for OFD locks,
  /// so this never fails with `EDEADLK`; it waits.)
  pub fn lock(file: &File, mode: Mode) -> io::Result<()> {
    request(file, libc::F_OFD_SETLKW, kind(mode)).map(drop)
  }

  pub fn unlock(file: &File) -> io::Result<()> {
    request(file, libc::F_OFD_SETLK, libc::F_UNLCK).map(drop)
  }

  /// What other descriptions hold, without taking anything: `F_OFD_GETLK` reports a lock that
  /// would conflict with an exclusive request.
  pub fn probe(file: &File) -> io::Result<Option<Mode>> {
    let fl = request(file, libc::F_OFD_GETLK, libc::F_WRLCK)?;
    Ok(match libc::c_int::from(fl.l_type) {
      libc::F_UNLCK => None,
      libc::F_RDLCK => Some(Mode::Shared),
      _ => Some(Mode::Exclusive),
    })
  }
}

#[cfg(all(unix, not(target_os = "linux")))]
mod imp {
  use super::*;
  use std::fs::TryLockError;

  fn tried(r: Result<(), TryLockError>) -> io::Result<bool> {
    match r {
      Ok(()) => Ok(true),
      Err(TryLockError::WouldBlock) => Ok(false),
      Err(TryLockError::Error(e)) => Err(e),
    }
  }

  pub fn try_lock(file: &File, mode: Mode) -> io::Result<bool> {
    tried(match mode {
      Mode::Shared => file.try_lock_shared(),
      Mode::Exclusive => file.try_lock(),
    })
  }

  pub fn lock(file: &File, mode: Mode) -> io::Result<()> {
    match mode {
      Mode::Shared => file.lock_shared(),
      Mode::Exclusive => file.lock(),
    }
  }

  pub fn unlock(file: &File) -> io::Result<()> {
    file.unlock()
  }
}

#[cfg(windows)]
mod imp {
  use super::*;
  use std::os::windows::io::AsRawHandle;
  use windows_sys::Win32::Foundation::{ERROR_IO_PENDING, ERROR_LOCK_VIOLATION, HANDLE};
  use windows_sys::Win32::Storage::FileSystem::{LockFileEx, UnlockFileEx, LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY};
  use windows_sys::Win32::System::IO::OVERLAPPED;

  fn at_lock_offset() -> OVERLAPPED {
    // SAFETY: a zeroed OVERLAPPED is valid (no event, offset 0); the offset is set below.
    let mut o: OVERLAPPED = unsafe { std::mem::zeroed() };
    o.Anonymous.Anonymous.Offset = LOCK_OFFSET as u32;
    o.Anonymous.Anonymous.OffsetHigh = (LOCK_OFFSET >> 32) as u32;
    o
  }

  fn lock_ex(file: &File, flags: u32) -> io::Result<()> {
    let mut o = at_lock_offset();
    // SAFETY: a valid synchronous file handle; `o` outlives the call (a synchronous handle
    // completes the call before returning).
    if unsafe { LockFileEx(file.as_raw_handle() as HANDLE, flags, 0, 1, 0, &mut o) } != 0 {
      Ok(())
    } else {
      Err(io::Error::last_os_error())
    }
  }

  fn flags(mode: Mode) -> u32 {
    match mode {
      Mode::Shared => 0,
      Mode::Exclusive => LOCKFILE_EXCLUSIVE_LOCK,
    }
  }

  pub fn try_lock(file: &File, mode: Mode) -> io::Result<bool> {
    match lock_ex(file, flags(mode) | LOCKFILE_FAIL_IMMEDIATELY) {
      Ok(()) => Ok(true),
      Err(e) if matches!(e.raw_os_error(), Some(c) if c == ERROR_LOCK_VIOLATION as i32 || c == ERROR_IO_PENDING as i32) => Ok(false),
      Err(e) => Err(e),
    }
  }

  pub fn lock(file: &File, mode: Mode) -> io::Result<()> {
    lock_ex(file, flags(mode))
  }

  pub fn unlock(file: &File) -> io::Result<()> {
    let mut o = at_lock_offset();
    // SAFETY: as in `lock_ex`.
    if unsafe { UnlockFileEx(file.as_raw_handle() as HANDLE, 0, 1, 0, &mut o) } != 0 {
      Ok(())
    } else {
      Err(io::Error::last_os_error())
    }
  }
}
