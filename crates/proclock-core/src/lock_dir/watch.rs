//! Noticing that a lock directory, or a file in it, was deleted or moved while in use, without
//! polling anything.
//!
//! Why it matters: a lock is its files. Once the directory is removed (`rm -rf`, a tmpfs cleared,
//! `/run/user/<uid>` removed at the last logout) or renamed away, the processes that had it open
//! keep working on the old inodes while every process that starts afterwards creates a new
//! directory under the same path and takes the same names there: two holders of one lock. The
//! same happens to the locks of one file when only that file is deleted or renamed (a shm
//! segment: every shm lock in it; a `file` lock file: that lock). Nothing can undo the split,
//! but the holders on the old files must be told that their hold is no longer exclusive
//! (`LockDir::lose_all`, `LockDir::lose_entry`, and `Handle::lose`, which makes it `ELOCKLOST`).
//!
//! Linux: one inotify instance per process, one thread (started on first use) blocked in
//! `read` on it, no timer. Each lock directory this process opens gets a watch for
//! `IN_DELETE_SELF | IN_MOVE_SELF` (the directory itself; `IN_UNMOUNT` comes unasked, when its
//! filesystem goes away) and `IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO` (its entries: deleted,
//! renamed away, or replaced by a rename over them). Which members an entry event concerns is
//! decided by the members (`Member::splits_with`), by comparing inodes, so proclock's own
//! `rename(tmp, name)` publishing a new file marks nobody: no one uses the new file yet.
//!
//! Race between opening the directory and adding the watch: the directory may be removed or
//! renamed in between, and then the watch (added by path) lands on whatever the path names
//! now, or fails. So after adding it we check that the path still names the directory we
//! opened (same device and inode, `LockDir::check`); if not, it is already lost. The watch is
//! added while holding the registry mutex, so an event that arrives before the directory is
//! in the registry waits for it rather than being dropped as unknown.
//!
//! If the kernel's event queue overflows (`IN_Q_OVERFLOW`: events were dropped), every watched
//! directory is checked on the slow path and every member re-checks its files.
//!
//! Where no watch can be made (another OS, inotify instances exhausted, no thread could be
//! started), `LockDir::watched` stays false and the slow paths check instead: the start of every
//! wait, and every failed try (`LockDir::check`: two system calls). macOS could watch with a
//! kqueue `EVFILT_VNODE` (`NOTE_DELETE | NOTE_RENAME`) on the directory descriptor; it is not
//! written yet, so there only the slow-path check runs. Windows: see `lock_dir/mod.rs`.
//!
//! What is not seen: a *parent* of the lock directory renamed (the directory itself is not
//! moved, so no event); the slow-path check at the start of a wait sees it (the path no longer
//! names the directory), a holder that never waits does not.

use std::sync::Arc;

use super::LockDir;

/// Watch `dir` for deletion and moves (of itself and its entries) for as long as it exists.
/// Marks it watched if the watch covers it; marks it lost if it is already gone.
pub fn watch(dir: &Arc<LockDir>) {
  imp::watch(dir)
}

#[cfg(target_os = "linux")]
mod imp {
  use std::collections::HashMap;
  use std::ffi::CString;
  use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
  use std::os::unix::ffi::OsStrExt;
  use std::sync::{Arc, Mutex, OnceLock, Weak};

  use super::LockDir;

  struct Watcher {
    fd: OwnedFd,
    /// The process that made it. A child made by `fork` (without exec) shares the inotify
    /// instance with its parent but not the parent's thread, so its events would be read by
    /// the parent: such a child watches nothing and relies on the slow-path checks.
    pid: u32,
    /// Watch descriptor -> the directories it covers (one inode may be opened under two
    /// spellings; the kernel gives both the same watch).
    dirs: Mutex<HashMap<i32, Vec<Weak<LockDir>>>>,
  }

  const MASK: u32 = libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW;

  fn watcher() -> Option<&'static Watcher> {
    static WATCHER: OnceLock<Option<Watcher>> = OnceLock::new();
    WATCHER
      .get_or_init(|| {
        // SAFETY: plain syscall; the fd is owned right below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
          return None;
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        std::thread::Builder::new()
          .name("proclock-dir-watch".into())
          .stack_size(128 * 1024)
          .spawn(serve)
          .ok()?;
        Some(Watcher {
          fd,
          pid: crate::process_info::current_pid(),
          dirs: Mutex::new(HashMap::new()),
        })
      })
      .as_ref()
  }

  pub fn watch(dir: &Arc<LockDir>) {
    let Some(w) = watcher().filter(|w| w.pid == crate::process_info::current_pid()) else { return };
    let Ok(path) = CString::new(dir.path().as_os_str().as_bytes()) else { return };
    {
      let mut dirs = w.dirs.lock().unwrap_or_else(|p| p.into_inner());
      // SAFETY: valid inotify descriptor and C string.
      let wd = unsafe { libc::inotify_add_watch(w.fd.as_raw_fd(), path.as_ptr(), MASK) };
      if wd < 0 {
        return; // not watched: the slow paths check instead
      }
      let list = dirs.entry(wd).or_default();
      list.retain(|d| d.strong_count() > 0);
      list.push(Arc::downgrade(dir));
    }
    // The watch is on whatever the path names now; it covers `dir` only if that is still the
    // directory we opened. If not, `check` marks it lost.
    if dir.check().is_ok() {
      dir.set_watched();
    }
  }

  fn serve() {
    let Some(w) = watcher() else { return };
    // inotify events are 4-byte aligned; room for many events with short names.
    let mut buf = vec![0u32; 4096 / 4];
    loop {
      // SAFETY: valid descriptor (never closed) and buffer.
      let n = unsafe { libc::read(w.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len() * 4) };
      if n <= 0 {
        continue; // EINTR
      }
      // SAFETY: the kernel wrote `n` bytes of events into `buf`.
      let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
      let mut at = 0;
      let header = std::mem::size_of::<libc::inotify_event>();
      while at + header <= bytes.len() {
        // SAFETY: an event header lies at `at` (read unaligned to be safe).
        let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(bytes[at..].as_ptr().cast()) };
        let name_bytes = &bytes[at + header..(at + header + ev.len as usize).min(bytes.len())];
        let name = std::str::from_utf8(name_bytes.split(|&b| b == 0).next().unwrap_or_default()).unwrap_or("");
        at += header + ev.len as usize;
        handle(w, ev.wd, ev.mask, name);
      }
    }
  }

  fn dirs_of(w: &Watcher, wd: i32) -> Vec<Arc<LockDir>> {
    let dirs = w.dirs.lock().unwrap_or_else(|p| p.into_inner());
    dirs.get(&wd).map_or_else(Vec::new, |l| l.iter().filter_map(Weak::upgrade).collect())
  }

  fn handle(w: &Watcher, wd: i32, mask: u32, name: &str) {
    if mask & libc::IN_Q_OVERFLOW != 0 {
      // Events were dropped: look at everything on the slow path.
      let all: Vec<Arc<LockDir>> = {
        let dirs = w.dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.values().flatten().filter_map(Weak::upgrade).collect()
      };
      for d in all {
        if d.check().is_ok() {
          d.recheck_members();
        }
      }
      return;
    }
    if mask & libc::IN_IGNORED != 0 {
      // The watch is gone (its directory deleted, or its filesystem unmounted).
      w.dirs.lock().unwrap_or_else(|p| p.into_inner()).remove(&wd);
      return;
    }
    for d in dirs_of(w, wd) {
      if mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_UNMOUNT) != 0 {
        let what = if mask & libc::IN_MOVE_SELF != 0 { "moved" } else { "deleted" };
        d.lose_all(&format!("the lock directory {} was {what} while in use", d.path().display()));
      } else if !name.is_empty() {
        d.lose_entry(name, mask & libc::IN_MOVED_TO != 0);
      }
    }
  }
}

#[cfg(not(target_os = "linux"))]
mod imp {
  use super::*;

  pub fn watch(_dir: &Arc<LockDir>) {}
}
