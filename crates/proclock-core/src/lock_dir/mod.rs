//! The lock directory: where every file of proclock lives, and how files in it are opened.
//!
//! A lock is identified by (backend, lock directory, name), so the directory is a namespace.
//! The `dir` option names it; without it, the default below. (The core reads no environment
//! variable for it: `PROCLOCK_DIR` is read by the caller, the JavaScript facade, in the thread
//! that asks, so that a worker thread's own environment counts.)
//!
//! The default depends on nothing in the environment, because one job started by hand and the
//! same job started by cron, a service manager, `sudo` or a container must take the same lock:
//! - Linux and other Unixes: `/tmp/proclock-<euid>`, with `/tmp` spelled out (not `$TMPDIR`).
//! - macOS: `proclock` in the per-user temporary directory the system keeps for each user
//!   (`confstr(_CS_DARWIN_USER_TEMP_DIR)`, under `/var/folders`). It is the same in every
//!   session of that user, whatever `$TMPDIR` says, and the OS creates it mode 0700 and owned by
//!   the user, so no other user can take its name first.
//! - Windows: under the per-user `%TEMP%` (still environment-dependent; left to the Windows
//!   work, which also covers ACLs).
//!
//! Why not the usual candidates:
//! - `$XDG_RUNTIME_DIR` exists only in a login session (not under cron, `sudo` or most
//!   services), and `/run/user/<uid>` is deleted at the user's last logout while processes
//!   started from that session may still hold locks in it.
//! - `$TMPDIR` differs between sessions and programs of one user.
//! - `/dev/shm`: systemd-logind's `RemoveIPC=yes` (the default on many distributions) deletes
//!   the user's files there when the user's last session ends.
//! - `$HOME` can be a network filesystem mounted on several machines (two machines would share
//!   one lock table without sharing memory, so each would think it alone holds) or read-only
//!   for service users.
//!
//! Denial: `/tmp` is writable by everyone (sticky), so another user can create
//! `/tmp/proclock-<uid>` first. There is deliberately no fallback: a fallback chosen because
//! that directory exists *now* could differ between two of our processes started before and
//! after the squatter removes it, which would be two lock directories and two holders of one
//! lock. The lock directory therefore fails closed (`ErrorKind::Permission`), and the error
//! names the owner (uid and user name) and the remedy: an administrator removes it, or the
//! `dir` option / `PROCLOCK_DIR` names a private directory.
//!
//! Why each step of opening exists:
//! - A relative `dir` is made absolute from the working directory at the moment a handle (or a
//!   look at locks) is created, before any cache lookup: a cache keyed by the relative spelling
//!   would keep meaning the old directory after `chdir`, while other processes resolve the same
//!   spelling anew. Absolute spellings and the default cost no system call to look up.
//! - Every ancestor of the lock directory is checked, as OpenSSH checks `~/.ssh`: owned by root
//!   or by us, and not writable by group or others unless sticky. Anyone who can write to an
//!   ancestor can rename the lock directory away while locks are held in it; the next process
//!   would then create a fresh one and take a lock that is still held. The check is made on
//!   descriptors, not paths: symlinks among the ancestors (macOS's `/tmp -> /private/tmp`) are
//!   resolved first (`realpath` of the parent), then the real path is walked from `/` one
//!   component at a time with `openat(O_NOFOLLOW | O_DIRECTORY)` and each opened component is
//!   `fstat`ed, so a component swapped for a symlink between the resolution and the walk is
//!   refused rather than followed. Missing ancestors are created (mode 0700) on the way.
//! - The directory is created 0700 and then `chmod`ed, because `mkdir`'s mode is filtered by the
//!   umask and a umask of 000 must not give us a world-writable namespace. A directory we did
//!   not create is accepted only if it is ours and not group/world-writable. When running as
//!   root, a root-owned directory that others may read or traverse (`/`, `/dev`, `/usr`, ...)
//!   is a system directory shared with every user and is refused too: lock files would be
//!   written among system files, visible to everyone.
//! - It is opened with `O_NOFOLLOW | O_DIRECTORY` relative to its verified parent, and the
//!   checks are made on the *open fd* (`fstat`), not the path, so a symlink swapped in between
//!   check and use is refused.
//! - Files are opened relative to that fd (`openat`) with `O_NOFOLLOW | O_CLOEXEC`: no symlink
//!   planted under a lock file name is followed, and no descriptor leaks into a spawned child
//!   (a child that inherits a lock descriptor keeps the lock alive after its parent dies).
//! - Every file is checked after opening: regular file, owned by us, one link, no group/other
//!   permission bits. A file created by us is `fchmod`ed to 0600 whatever the umask.
//! - Files that must appear fully formed (shared segments) are built under a temporary name and
//!   renamed into place while holding the directory lock, so a creator killed half-way leaves
//!   only a temporary file, never a half-initialised segment under the real name.
//! - Every process holds a shared `flock` on the directory itself while it uses it. Age-based
//!   temp cleaners (`systemd-tmpfiles` empties `/tmp` entries untouched for 10 days) skip a
//!   directory they cannot lock exclusively; deleting segments or lock files under running
//!   processes would split every lock in two. The kernel drops the flock when the process
//!   dies. (macOS's cleaner of the per-user temporary directory ignores such locks; it only
//!   removes files unused for days, and a `dir` elsewhere avoids it altogether.)
//!
//! A directory deleted or moved while in use (`rm -rf`, a tmpfs cleared at logout, an operator's
//! `mv`) splits every lock in it: processes that opened it keep using the old files, while new
//! processes create a new directory under the same path and take the same names there. So each
//! directory keeps a registry of what uses it (handles, the shm space), weakly, and a loss marks
//! them all (`Loss`, `lose_all`; `lose_entry` for one file, which splits only the locks in that
//! file). Who notices: a kernel watch on the directory (`lock_dir/watch.rs`), and, where there is no
//! watch, the slow paths (`check`: the start of a wait, a failed try). The process cache
//! (`shared`) never hands out a lost directory again, so the next handle opens the path afresh.
//!
//! Windows: names are opened with `FILE_FLAG_OPEN_REPARSE_POINT` and reparse points are
//! refused. ACLs are inherited from the per-user temp directory; they are not checked here.

mod watch;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::crash_points::{reached, Step};
use crate::error::{lost, permission, Error, Result};

/// An opened, verified lock directory.
#[derive(Debug)]
pub struct LockDir {
  path: PathBuf,
  #[cfg(unix)]
  fd: std::os::fd::OwnedFd,
  loss: Loss,
}

/// Something whose locks live in a lock directory (a handle, the shm space of a process), told
/// when the directory, or a file of it that it uses, is deleted or moved away.
/// What a member tells its user of a loss (see [`Member::lose`]).
pub type Notice = Box<dyn FnOnce() + Send>;

pub trait Member: Send + Sync {
  /// Whether the directory entry `entry` having been deleted or renamed away (`replaced`: a
  /// file renamed over it) splits this member's lock(s): it uses that file, and the name no
  /// longer leads to the file it uses.
  fn splits_with(&self, entry: &str, replaced: bool) -> bool;
  /// `Some(why)` if a file this member uses is no longer named by its path (for when events
  /// were dropped and every member must look for itself).
  fn files_gone(&self) -> Option<String>;
  /// The lock(s) may no longer be exclusive, for the reason `why`: mark it so. Idempotent;
  /// must not block. Returns what to tell the user, which the sweep runs only once every
  /// member it concerns is marked (a holder told of the loss finds its other handles lost too).
  fn lose(&self, why: &str) -> Option<Notice>;
}

/// Whether a directory was lost, and who to tell. `members` is only touched when a member is
/// created (off the hot path) and when a loss is swept; the `lost` flag is set under the same
/// mutex, so a member joining concurrently with a sweep is either swept or sees the flag.
#[derive(Default)]
struct Loss {
  lost: AtomicBool,
  why: OnceLock<String>,
  /// A kernel watch covers this directory (`lock_dir/watch.rs`): failed tries need not look.
  watched: AtomicBool,
  members: Mutex<Vec<Weak<dyn Member>>>,
}

impl std::fmt::Debug for Loss {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Loss").field("lost", &self.lost).finish_non_exhaustive()
  }
}

/// Held while creating or repairing shared files; released on drop (or by the kernel if the
/// process dies while holding it).
pub struct DirLock {
  _file: File,
}

impl LockDir {
  /// The directory to use: `explicit` (the `dir` option), else the default.
  pub fn resolve(explicit: Option<&Path>) -> Result<LockDir> {
    LockDir::open(&LockDir::resolve_path(explicit)?)
  }

  /// The directory as asked for, made absolute: `None` means the default. This is the cache key
  /// of [`LockDir::shared`] and of the shm spaces. An absolute spelling (and the default) costs
  /// no system call; a relative one is resolved against the working directory now, so that
  /// after a `chdir` the same spelling means the new directory, as it does for every other
  /// process that resolves it (see the module comment).
  pub fn requested(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    match explicit {
      None => Ok(None),
      Some(p) if p.is_absolute() => Ok(Some(p.to_path_buf())),
      Some(p) => std::path::absolute(p)
        .map(Some)
        .map_err(|e| Error::io(format!("resolving lock directory {}", p.display()), e)),
    }
  }

  /// The path [`LockDir::resolve`] would open, without creating or opening anything (so that
  /// looking at locks never creates a lock directory).
  pub fn resolve_path(explicit: Option<&Path>) -> Result<PathBuf> {
    match LockDir::requested(explicit)? {
      Some(p) => Ok(p),
      None => imp::default_dir(),
    }
  }

  /// [`LockDir::resolve`], done once per process (and again after a fork) for each directory as
  /// asked for, and shared by every lock of every backend there: one descriptor and one
  /// cleaner-guarding `flock` per directory, and no system call to find it again.
  pub fn shared(explicit: Option<&Path>) -> Result<Arc<LockDir>> {
    type Dirs = HashMap<Option<PathBuf>, (u32, Arc<LockDir>)>;
    static DIRS: OnceLock<Mutex<Dirs>> = OnceLock::new();
    let request = LockDir::requested(explicit)?;
    let pid = crate::process_info::current_pid();
    let mut dirs = DIRS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    // A lost directory is never handed out again: the next handle re-creates the path.
    if let Some((_, dir)) = dirs.get(&request).filter(|(p, d)| *p == pid && !d.is_lost()) {
      return Ok(dir.clone());
    }
    let dir = Arc::new(LockDir::resolve(request.as_deref())?);
    watch::watch(&dir);
    dirs.insert(request, (pid, dir.clone()));
    Ok(dir)
  }

  /// [`LockDir::shared`] if the directory exists; `None` (creating nothing) if it does not. A
  /// path that exists but is no good (a symlink, someone else's) is refused by `shared`.
  pub fn shared_existing(explicit: Option<&Path>) -> Result<Option<Arc<LockDir>>> {
    match fs::symlink_metadata(LockDir::resolve_path(explicit)?) {
      Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
      _ => LockDir::shared(explicit).map(Some),
    }
  }

  /// The default lock directory of this user (see the module comment). Creates nothing.
  pub fn default_path() -> Result<PathBuf> {
    imp::default_dir()
  }

  /// Open (creating it and its missing ancestors if needed) and verify `path`, every ancestor
  /// included (see the module comment).
  pub fn open(path: &Path) -> Result<LockDir> {
    let path = std::path::absolute(path).map_err(|e| Error::io(format!("resolving lock directory {}", path.display()), e))?;
    imp::open_dir(&path)
  }

  pub fn path(&self) -> &Path {
    &self.path
  }

  /// Register `member`; if the directory is already lost, it is told at once instead.
  pub fn join(&self, member: &Arc<dyn Member>) {
    let mut members = self.loss.members.lock().unwrap_or_else(|p| p.into_inner());
    if self.is_lost() {
      drop(members);
      if let Some(notice) = member.lose(self.lost_why()) {
        notice();
      }
      return;
    }
    // Forget members that are gone whenever the list has doubled since the last clean-up, so
    // it stays within twice the number of live members at amortised O(1) per join.
    if members.len() >= 16 && members.len().is_power_of_two() {
      members.retain(|m| m.strong_count() > 0);
    }
    members.push(Arc::downgrade(member));
  }

  /// The whole directory is gone or moved: every member is told, and the process cache will
  /// open the path afresh next time.
  pub fn lose_all(&self, why: &str) {
    let members = {
      let mut members = self.loss.members.lock().unwrap_or_else(|p| p.into_inner());
      let _ = self.loss.why.set(why.to_owned());
      self.loss.lost.store(true, Ordering::SeqCst);
      std::mem::take(&mut *members)
    };
    // Told outside the mutex: joins that come later see the flag and tell themselves.
    let members: Vec<_> = members.iter().filter_map(Weak::upgrade).collect();
    tell(&members, self.lost_why());
  }

  /// The entry `entry` was deleted or renamed away (`replaced`: another file was renamed over
  /// it): the members that use the file it named are told.
  pub fn lose_entry(&self, entry: &str, replaced: bool) {
    let why = format!("{} was deleted or moved while in use", self.path.join(entry).display());
    let hit: Vec<Arc<dyn Member>> = {
      let members = self.loss.members.lock().unwrap_or_else(|p| p.into_inner());
      members.iter().filter_map(Weak::upgrade).filter(|m| m.splits_with(entry, replaced)).collect()
    };
    tell(&hit, &why);
  }

  /// Every member looks for its own files (the watch dropped events).
  pub fn recheck_members(&self) {
    let members: Vec<Arc<dyn Member>> = {
      let members = self.loss.members.lock().unwrap_or_else(|p| p.into_inner());
      members.iter().filter_map(Weak::upgrade).collect()
    };
    for m in members {
      if let Some(why) = m.files_gone() {
        tell(&[m], &why);
      }
    }
  }

  pub fn is_lost(&self) -> bool {
    self.loss.lost.load(Ordering::Acquire)
  }

  /// Why the directory was lost (empty if it was not).
  pub fn lost_why(&self) -> &str {
    self.loss.why.get().map_or("", String::as_str)
  }

  /// A kernel watch reports deletions and moves of this directory and its entries.
  pub fn watched(&self) -> bool {
    self.loss.watched.load(Ordering::Acquire)
  }

  /// Only the Linux watch (inotify) exists so far; elsewhere nothing calls this.
  #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
  pub(crate) fn set_watched(&self) {
    self.loss.watched.store(true, Ordering::Release);
  }

  /// The slow-path check, for where no watch reports a loss (another OS, no inotify, a watch
  /// that could not be added) and as a second line at the start of every wait: the directory
  /// is lost if the descriptor we opened now has no link (deleted), or if the path now names
  /// another directory or nothing (moved, or deleted and re-created). Two system calls.
  pub fn check(&self) -> Result<()> {
    if !self.is_lost() {
      match imp::moved_or_deleted(self) {
        Some(why) => self.lose_all(&why),
        None => return Ok(()),
      }
    }
    Err(lost(self.lost_why()))
  }

  /// Whether `entry` in this directory still names `file` (the same inode). "Cannot tell"
  /// (an error other than "no such file") answers yes: only a name seen to lead elsewhere, or
  /// nowhere, means the file was split from its name.
  pub fn names(&self, entry: &str, file: &File) -> bool {
    imp::names(self, entry, file)
  }

  /// The identity (device, inode) of the file `entry` names now, if it can be told.
  pub fn entry_id(&self, entry: &str) -> Option<(u64, u64)> {
    imp::entry_id(self, entry).ok().flatten()
  }

  /// Whether `entry` still names the file whose identity was `id`: as [`LockDir::names`],
  /// "cannot tell" answers yes.
  pub fn names_id(&self, entry: &str, id: (u64, u64)) -> bool {
    match imp::entry_id(self, entry) {
      Ok(now) => now == Some(id),
      Err(_) => true,
    }
  }

  /// Open an existing file in the directory, verified. `Ok(None)` if there is no such file.
  pub fn open_existing(&self, name: &str) -> Result<Option<File>> {
    match imp::open_in(self, name, false) {
      Ok(f) => self.verify(f, name).map(Some),
      Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
      Err(e) => Err(self.open_error(name, e)),
    }
  }

  /// Open a file, creating it empty (mode 0600) if missing; verified.
  pub fn open_or_create(&self, name: &str) -> Result<File> {
    match imp::open_in(self, name, true) {
      Ok(f) => self.verify(f, name),
      Err(e) => Err(self.open_error(name, e)),
    }
  }

  /// Create `name` fully formed: `init` fills a temporary file of `size` bytes, which is then
  /// renamed over `name`. Call only while holding [`LockDir::lock`] and after checking that
  /// `name` is missing or unusable, so that no file anyone uses is ever replaced.
  pub fn publish(&self, name: &str, size: u64, init: impl FnOnce(&File) -> Result<()>) -> Result<()> {
    let tmp = format!("{name}.tmp");
    // A temporary left by a creator that died half-way: only ever touched under the lock.
    imp::remove_in(self, &tmp)
      .or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
      .map_err(|e| Error::io(format!("removing {}", self.path.join(&tmp).display()), e))?;
    let file = imp::create_new_in(self, &tmp).map_err(|e| self.open_error(&tmp, e))?;
    reached(Step::PublishTempCreated);
    let file = self.verify(file, &tmp)?;
    file
      .set_len(size)
      .map_err(|e| Error::io(format!("sizing {}", self.path.join(&tmp).display()), e))?;
    // Real storage for every byte before anyone maps it: a full file system is an error here,
    // not a SIGBUS later (see [`allocate`]). The temporary goes at once, freeing its space.
    allocate(&file, size).map_err(|e| {
      let _ = imp::remove_in(self, &tmp);
      no_space(&self.path.join(name), size, e)
    })?;
    reached(Step::PublishTempSized);
    init(&file)?;
    reached(Step::PublishTempWritten);
    imp::rename_in(self, &tmp, name).map_err(|e| Error::io(format!("publishing {}", self.path.join(name).display()), e))?;
    reached(Step::PublishRenamed);
    Ok(())
  }

  /// Take the directory-wide creation lock (a kernel file lock on `dir.lock`). Blocks briefly;
  /// it is only held while shared files are created or repaired.
  pub fn lock(&self) -> Result<DirLock> {
    let file = self.open_or_create("dir.lock")?;
    file
      .lock()
      .map_err(|e| Error::io(format!("locking {}", self.path.join("dir.lock").display()), e))?;
    Ok(DirLock { _file: file })
  }

  fn verify(&self, file: File, name: &str) -> Result<File> {
    imp::verify_file(&file).map_err(|why| permission(format!("refusing {}: {why}", self.path.join(name).display())))?;
    Ok(file)
  }

  fn open_error(&self, name: &str, e: io::Error) -> Error {
    let path = self.path.join(name);
    if imp::is_symlink_error(&e) {
      permission(format!("refusing {}: it is a symlink", path.display()))
    } else {
      Error::io(format!("opening {}", path.display()), e)
    }
  }
}

/// Mark every member lost, then run their notices.
fn tell(members: &[Arc<dyn Member>], why: &str) {
  let notices: Vec<Notice> = members.iter().filter_map(|m| m.lose(why)).collect();
  for notice in notices {
    notice();
  }
}

#[cfg(unix)]
mod imp {
  use super::*;
  use std::ffi::CString;
  use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
  use std::os::unix::ffi::OsStrExt;
  use std::os::unix::fs::{MetadataExt, PermissionsExt};

  fn euid() -> u32 {
    // SAFETY: geteuid never fails.
    unsafe { libc::geteuid() }
  }

  fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
  }

  #[cfg(not(target_os = "macos"))]
  pub fn default_dir() -> Result<PathBuf> {
    Ok(PathBuf::from(format!("/tmp/proclock-{}", euid())))
  }

  #[cfg(target_os = "macos")]
  pub fn default_dir() -> Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the buffer is writable for its full length, which is what we pass.
    let n = unsafe { libc::confstr(libc::_CS_DARWIN_USER_TEMP_DIR, buf.as_mut_ptr().cast(), buf.len()) };
    if n == 0 || n > buf.len() {
      return Err(Error::io(
        "finding the per-user temporary directory (confstr _CS_DARWIN_USER_TEMP_DIR)",
        io::Error::last_os_error(),
      ));
    }
    buf.truncate(n - 1); // n counts the terminating NUL
    Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)).join("proclock"))
  }

  /// "uid N (name)", the name from the user database if it has one.
  fn user(uid: u32) -> String {
    let mut buf = vec![0u8; 16384];
    // SAFETY: an all-zero passwd is a valid out-value; getpwuid_r fills it from `buf`.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the length given; `found` is set to &pwd or null.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
      return format!("uid {uid} (no user name)");
    }
    // SAFETY: pw_name points to a NUL-terminated string inside `buf`, alive here.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned();
    format!("uid {uid} ({name})")
  }

  fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid out-value; fd is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0 {
      Ok(st)
    } else {
      Err(io::Error::last_os_error())
    }
  }

  /// The parent of `path` with its symlinks resolved (`realpath`), and the last component. A
  /// parent that does not exist yet is resolved as far as it exists, and its missing
  /// components are appended (the walk creates them). `None` as the last component: `path` is
  /// `/` itself.
  fn real_parent(path: &Path) -> Result<(PathBuf, Option<std::ffi::OsString>)> {
    let err = |e: io::Error| Error::io(format!("resolving lock directory {}", path.display()), e);
    let Some(last) = path.file_name() else {
      // "/" or a path ending in "..": it must exist; resolve it whole.
      let real = fs::canonicalize(path).map_err(err)?;
      return Ok(match (real.parent(), real.file_name()) {
        (Some(parent), Some(name)) => (parent.to_path_buf(), Some(name.to_owned())),
        _ => (real, None),
      });
    };
    let mut missing = Vec::new();
    let mut at = path.parent().unwrap_or(Path::new("/"));
    loop {
      match fs::canonicalize(at) {
        Ok(mut real) => {
          real.extend(missing.iter().rev());
          return Ok((real, Some(last.to_owned())));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => match (at.file_name(), at.parent()) {
          (Some(name), Some(up)) => {
            missing.push(name.to_owned());
            at = up;
          }
          _ => return Err(err(e)),
        },
        Err(e) => return Err(err(e)),
      }
    }
  }

  /// Open `name` under `parent` as a directory without following a symlink, creating it
  /// (mode exactly 0700) if `create` and it is missing. Returns the descriptor and whether it
  /// was created here.
  fn open_component(parent: &OwnedFd, name: &std::ffi::OsStr, create: bool) -> io::Result<(OwnedFd, bool)> {
    let c = cstr(name.as_bytes())?;
    let mut created = false;
    loop {
      // SAFETY: valid dir fd and C string; the returned fd is owned below.
      let fd = unsafe {
        libc::openat(
          parent.as_raw_fd(),
          c.as_ptr(),
          libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
      };
      if fd >= 0 {
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if created {
          // mkdir's mode went through the umask; make it exactly 0700.
          // SAFETY: valid descriptor.
          if unsafe { libc::fchmod(fd.as_raw_fd(), 0o700) } != 0 {
            return Err(io::Error::last_os_error());
          }
        }
        return Ok((fd, created));
      }
      let e = io::Error::last_os_error();
      if e.raw_os_error() != Some(libc::ENOENT) || !create || created {
        return Err(e);
      }
      // SAFETY: valid dir fd and C string.
      if unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o700) } == 0 {
        created = true;
      } else {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
          return Err(e);
        }
      }
    }
  }

  /// An ancestor of a lock directory must be owned by root or by us and not writable by group
  /// or others unless sticky (see the module comment); `Err` says why not.
  #[allow(clippy::unnecessary_cast)] // mode_t is u16 on macOS
  fn check_ancestor(st: &libc::stat) -> std::result::Result<(), String> {
    let mode = st.st_mode as u32;
    if st.st_uid != 0 && st.st_uid != euid() {
      return Err(format!(
        "it belongs to {} (mode {:o}), neither root nor us ({}), who could rename the lock directory away while locks are held in it",
        user(st.st_uid),
        mode & 0o7777,
        user(euid())
      ));
    }
    if mode & 0o022 != 0 && mode & libc::S_ISVTX as u32 == 0 {
      return Err(format!(
        "its mode {:o} (owner {}) lets other users write to it without the sticky bit, so any of them could rename the lock directory away while locks are held in it",
        mode & 0o7777,
        user(st.st_uid)
      ));
    }
    Ok(())
  }

  /// Walk `real` (absolute, symlinks already resolved) from `/`, one `openat(O_NOFOLLOW)` per
  /// component, checking each with `fstat`, creating the missing ones. Returns the last one.
  fn walk(dir: &Path, real: &Path) -> Result<OwnedFd> {
    let refuse = |at: &Path, why: String| {
      permission(format!(
        "refusing lock directory {}: its ancestor {} is unsafe: {why}. Use a directory whose every ancestor is owned by root or by you and not writable by other users (sticky /tmp is fine)",
        dir.display(),
        at.display()
      ))
    };
    // SAFETY: valid C string; the returned fd is owned below.
    let fd = unsafe { libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
      return Err(Error::io("opening /", io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptor we own.
    let mut fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut at = PathBuf::from("/");
    let mut components = real.components();
    if components.next() != Some(std::path::Component::RootDir) {
      return Err(Error::io(
        format!("resolving lock directory {}", dir.display()),
        io::Error::new(io::ErrorKind::InvalidInput, "not an absolute path"),
      ));
    }
    loop {
      let st = fstat(&fd).map_err(|e| Error::io(at.display(), e))?;
      check_ancestor(&st).map_err(|why| refuse(&at, why))?;
      let Some(component) = components.next() else {
        return Ok(fd);
      };
      let std::path::Component::Normal(name) = component else {
        return Err(Error::io(
          format!("resolving lock directory {}", dir.display()),
          io::Error::new(io::ErrorKind::InvalidInput, "unexpected component in a resolved path"),
        ));
      };
      at.push(name);
      fd = match open_component(&fd, name, true) {
        Ok((fd, _)) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
          return Err(refuse(
            &at,
            "it is a symlink or not a directory (it changed while being checked)".into(),
          ))
        }
        Err(e) => {
          // An ancestor we may not even enter (another user's mode 0700 directory): say whose.
          if let Some(uid) = owner_at(&fd, name).filter(|&uid| uid != 0 && uid != euid()) {
            return Err(refuse(
              &at,
              format!(
                "it belongs to {}, neither root nor us ({}), and we may not enter it",
                user(uid),
                user(euid())
              ),
            ));
          }
          return Err(Error::io(format!("opening {}", at.display()), e));
        }
      };
    }
  }

  /// The owner of `name` under `parent`, without following a symlink; `None` if unknown.
  fn owner_at(parent: &OwnedFd, name: &std::ffi::OsStr) -> Option<u32> {
    let c = cstr(name.as_bytes()).ok()?;
    // SAFETY: an all-zero stat is a valid out-value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid dir fd, C string and out-pointer.
    (unsafe { libc::fstatat(parent.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } == 0).then_some(st.st_uid)
  }

  /// The refusal of a lock directory that belongs to another user. For the default directory
  /// this is the denial described in the module comment: name the squatter and the remedy.
  fn foreign(path: &Path, uid: u32) -> Error {
    let is_default = default_dir().is_ok_and(|d| d == path);
    permission(if is_default {
      format!(
        "refusing the default lock directory {}: it belongs to {}, not to us ({}). Another user created it first, which denies \
         us every lock in the default directory; proclock does not fall back to another directory, because processes started \
         before and after its removal would then lock in two different places. Remedy: an administrator removes {}, or set \
         the dir option (PROCLOCK_DIR, --dir) to a private directory of yours (mode 0700)",
        path.display(),
        user(uid),
        user(euid()),
        path.display()
      )
    } else {
      format!(
        "refusing lock directory {}: it belongs to {}, not to us ({}), so that user could read, replace or remove the locks in \
         it. Use a directory of your own (mode 0700), or have an administrator remove it so that it is created anew",
        path.display(),
        user(uid),
        user(euid())
      )
    })
  }

  #[allow(clippy::unnecessary_cast)] // mode_t is u16 on macOS
  pub fn open_dir(path: &Path) -> Result<LockDir> {
    let (parent, last) = real_parent(path)?;
    let parent_fd = walk(path, &parent)?;
    let fd = match &last {
      None => parent_fd,
      Some(name) => match open_component(&parent_fd, name, true) {
        Ok((fd, _)) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
          return Err(permission(format!(
            "refusing lock directory {}: it is a symlink or not a directory",
            path.display()
          )))
        }
        Err(e) => {
          // Someone else's directory we may not even open (a squatter's mode 0700 one): say
          // whose it is rather than just "permission denied".
          if let Some(uid) = owner_at(&parent_fd, name).filter(|&uid| uid != euid()) {
            return Err(foreign(path, uid));
          }
          return Err(Error::io(format!("opening lock directory {}", path.display()), e));
        }
      },
    };
    let st = fstat(&fd).map_err(|e| Error::io(path.display(), e))?;
    let mode = st.st_mode as u32 & 0o7777;
    if st.st_uid != euid() {
      return Err(foreign(path, st.st_uid));
    }
    if mode & 0o022 != 0 {
      return Err(permission(format!(
        "refusing lock directory {}: mode {:o} lets other users write to it; use a private directory (mode 0700)",
        path.display(),
        mode
      )));
    }
    if euid() == 0 && mode & 0o005 != 0 {
      return Err(permission(format!(
        "refusing lock directory {}: running as root, and this root-owned directory (mode {:o}) can be read or traversed by \
         every user, so it is a system directory, not a private one; proclock will not write its files there. Use a private \
         directory (mode 0700), for example a new subdirectory of it",
        path.display(),
        mode
      )));
    }
    // The shared lock that keeps age-based cleaners out (see the module comment). Not fatal
    // if refused (a cleaner holds it this instant): locks work without it; this process just
    // goes unprotected from that cleaner.
    // SAFETY: valid descriptor we own.
    unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    Ok(LockDir {
      path: path.to_path_buf(),
      fd,
      loss: Loss::default(),
    })
  }

  fn same(a: &libc::stat, b: &libc::stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
  }

  pub fn moved_or_deleted(dir: &LockDir) -> Option<String> {
    // SAFETY: zeroed stat buffers are valid out-parameters.
    let (mut mine, mut named) = unsafe { (std::mem::zeroed::<libc::stat>(), std::mem::zeroed::<libc::stat>()) };
    // SAFETY: valid descriptor and out-pointer.
    if unsafe { libc::fstat(dir.fd.as_raw_fd(), &mut mine) } != 0 {
      return None;
    }
    if mine.st_nlink == 0 {
      return Some(format!("the lock directory {} was deleted while in use", dir.path.display()));
    }
    let c = cstr(dir.path.as_os_str().as_bytes()).ok()?;
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::lstat(c.as_ptr(), &mut named) } != 0 {
      let e = io::Error::last_os_error();
      return matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
        .then(|| format!("the lock directory {} was moved or deleted while in use", dir.path.display()));
    }
    (!same(&mine, &named)).then(|| {
      format!(
        "the lock directory {} was moved or deleted while in use (the path now names another directory)",
        dir.path.display()
      )
    })
  }

  /// `Ok(None)`: no such entry; `Err`: cannot tell.
  pub fn entry_id(dir: &LockDir, entry: &str) -> io::Result<Option<(u64, u64)>> {
    let c = cstr(entry.as_bytes())?;
    // SAFETY: a zeroed stat buffer is a valid out-parameter.
    let mut st = unsafe { std::mem::zeroed::<libc::stat>() };
    // SAFETY: valid descriptor, C string and out-pointer.
    if unsafe { libc::fstatat(dir.fd.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
      let e = io::Error::last_os_error();
      return if e.raw_os_error() == Some(libc::ENOENT) { Ok(None) } else { Err(e) };
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(Some((st.st_dev as u64, st.st_ino as u64)))
  }

  pub fn names(dir: &LockDir, entry: &str, file: &File) -> bool {
    let Ok(c) = cstr(entry.as_bytes()) else { return true };
    // SAFETY: zeroed stat buffers are valid out-parameters.
    let (mut mine, mut named) = unsafe { (std::mem::zeroed::<libc::stat>(), std::mem::zeroed::<libc::stat>()) };
    // SAFETY: valid descriptors, C string and out-pointers.
    if unsafe { libc::fstat(file.as_raw_fd(), &mut mine) } != 0 {
      return true;
    }
    // SAFETY: as above.
    if unsafe { libc::fstatat(dir.fd.as_raw_fd(), c.as_ptr(), &mut named, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
      return io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT);
    }
    same(&mine, &named)
  }

  fn openat(dir: &LockDir, name: &str, flags: libc::c_int) -> io::Result<File> {
    let c = cstr(name.as_bytes())?;
    // SAFETY: valid dir fd and C string; the returned fd is owned below.
    let fd = unsafe { libc::openat(dir.fd.as_raw_fd(), c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
      return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor we own.
    let file = unsafe { File::from_raw_fd(fd) };
    if flags & libc::O_CREAT != 0 {
      // Created or not, a file of ours must be 0600 regardless of the umask; a file with wider
      // bits that we did not create is refused by `verify_file` below instead.
      let meta = file.metadata()?;
      if meta.uid() == euid() && meta.mode() & 0o777 != 0o600 && meta.len() == 0 && meta.nlink() == 1 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
      }
    }
    Ok(file)
  }

  pub fn open_in(dir: &LockDir, name: &str, create: bool) -> io::Result<File> {
    openat(dir, name, libc::O_RDWR | if create { libc::O_CREAT } else { 0 })
  }

  pub fn create_new_in(dir: &LockDir, name: &str) -> io::Result<File> {
    openat(dir, name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL)
  }

  pub fn remove_in(dir: &LockDir, name: &str) -> io::Result<()> {
    let c = cstr(name.as_bytes())?;
    // SAFETY: valid dir fd and C string.
    if unsafe { libc::unlinkat(dir.fd.as_raw_fd(), c.as_ptr(), 0) } == 0 {
      Ok(())
    } else {
      Err(io::Error::last_os_error())
    }
  }

  pub fn rename_in(dir: &LockDir, from: &str, to: &str) -> io::Result<()> {
    let (a, b) = (cstr(from.as_bytes())?, cstr(to.as_bytes())?);
    let d = dir.fd.as_raw_fd();
    // SAFETY: valid dir fd and C strings.
    if unsafe { libc::renameat(d, a.as_ptr(), d, b.as_ptr()) } == 0 {
      Ok(())
    } else {
      Err(io::Error::last_os_error())
    }
  }

  pub fn verify_file(file: &File) -> std::result::Result<(), String> {
    let m = file.metadata().map_err(|e| e.to_string())?;
    if !m.file_type().is_file() {
      return Err("not a regular file".into());
    }
    if m.uid() != euid() {
      return Err(format!("owned by uid {}, not by us (uid {})", m.uid(), euid()));
    }
    if m.nlink() != 1 {
      return Err(format!("it has {} hard links", m.nlink()));
    }
    if m.mode() & 0o077 != 0 {
      return Err(format!("mode {:o} gives other users access", m.mode() & 0o777));
    }
    Ok(())
  }

  pub fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
  }
}

#[cfg(windows)]
mod imp {
  use super::*;
  use std::os::windows::fs::{MetadataExt, OpenOptionsExt};

  const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
  const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x0000_0400;
  const FILE_SHARE_ALL: u32 = 0x1 | 0x2 | 0x4;

  pub fn default_dir() -> Result<PathBuf> {
    Ok(std::env::temp_dir().join("proclock"))
  }

  pub fn open_dir(path: &Path) -> Result<LockDir> {
    if let Some(parent) = path.parent() {
      fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    match fs::create_dir(path) {
      Ok(()) => {}
      Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
      Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
    }
    let meta = fs::symlink_metadata(path).map_err(|e| Error::io(path.display(), e))?;
    if !meta.is_dir() || meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
      return Err(permission(format!(
        "refusing lock directory {}: it is a reparse point or not a directory",
        path.display()
      )));
    }
    Ok(LockDir {
      path: path.to_path_buf(),
      loss: Loss::default(),
    })
  }

  // Windows: a directory with open handles in it cannot be deleted or renamed unless they were
  // opened with FILE_SHARE_DELETE; detecting the rest (a ReadDirectoryChangesW watch, or file
  // IDs compared on the slow path) is left to the Windows work.
  pub fn moved_or_deleted(_dir: &LockDir) -> Option<String> {
    None
  }

  pub fn names(_dir: &LockDir, _entry: &str, _file: &File) -> bool {
    true
  }

  pub fn entry_id(_dir: &LockDir, _entry: &str) -> io::Result<Option<(u64, u64)>> {
    Err(io::ErrorKind::Unsupported.into())
  }

  fn options(create: bool, create_new: bool) -> fs::OpenOptions {
    let mut o = fs::OpenOptions::new();
    o.read(true)
      .write(true)
      .share_mode(FILE_SHARE_ALL)
      .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    if create_new {
      o.create_new(true);
    } else if create {
      o.create(true);
    }
    o
  }

  pub fn open_in(dir: &LockDir, name: &str, create: bool) -> io::Result<File> {
    options(create, false).open(dir.path.join(name))
  }

  pub fn create_new_in(dir: &LockDir, name: &str) -> io::Result<File> {
    options(true, true).open(dir.path.join(name))
  }

  pub fn remove_in(dir: &LockDir, name: &str) -> io::Result<()> {
    fs::remove_file(dir.path.join(name))
  }

  pub fn rename_in(dir: &LockDir, from: &str, to: &str) -> io::Result<()> {
    fs::rename(dir.path.join(from), dir.path.join(to))
  }

  pub fn verify_file(file: &File) -> std::result::Result<(), String> {
    let m = file.metadata().map_err(|e| e.to_string())?;
    if !m.is_file() || m.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
      return Err("not a regular file".into());
    }
    Ok(())
  }

  pub fn is_symlink_error(_e: &io::Error) -> bool {
    false
  }
}

/// For unit tests: a lock directory path of their own, `<temp>/proclock-test-<tag>-<pid>`, not
/// yet existing (left over from an earlier run, it is removed). Tags are unique across the crate.
#[cfg(test)]
pub(crate) fn scratch_dir(tag: &str) -> PathBuf {
  let p = std::env::temp_dir().join(format!("proclock-test-{tag}-{}", std::process::id()));
  let _ = fs::remove_dir_all(&p);
  p
}

/// Give every byte of a freshly sized file real storage, so that writing any of it later
/// (through a mapping, where a failure is a SIGBUS: see `shm/segment.rs`) cannot fail for want
/// of space. Errors (`ENOSPC` above all) are returned for the creator to report.
pub fn allocate(file: &File, size: u64) -> std::io::Result<()> {
  #[cfg(target_os = "linux")]
  {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(size).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    loop {
      // posix_fallocate returns the error number instead of setting errno. glibc and musl fall
      // back to writing a byte per block where the file system has no fallocate, so every file
      // system gets real blocks; tmpfs (the usual home of a lock directory) has it natively.
      // SAFETY: a valid descriptor; the range lies within the file's size.
      match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => return Ok(()),
        libc::EINTR => continue,
        e => return Err(std::io::Error::from_raw_os_error(e)),
      }
    }
  }
  #[cfg(all(unix, not(target_os = "linux")))]
  {
    // macOS and the BSDs: `fcntl(F_PREALLOCATE)` (macOS) reserves space but does not make a
    // sparse range written, and not every file system honours it; writing the zeros does both,
    // everywhere. Segments are written once, when created, so the cost does not matter.
    use std::os::unix::fs::FileExt;
    let zeros = [0u8; 64 * 1024];
    let mut at = 0u64;
    while at < size {
      let n = (size - at).min(zeros.len() as u64) as usize;
      file.write_all_at(&zeros[..n], at)?;
      at += n as u64;
    }
    file.sync_data()
  }
  #[cfg(windows)]
  {
    // Windows: nothing to do. `set_len` (SetEndOfFile) on a file that is not marked sparse
    // allocates its clusters at once and fails there with ERROR_DISK_FULL, and proclock never
    // marks its files sparse.
    let _ = (file, size);
    Ok(())
  }
}

/// The error for a file that could not be given its space.
pub fn no_space(path: &std::path::Path, size: u64, e: std::io::Error) -> Error {
  #[cfg(unix)]
  let full = e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT);
  #[cfg(not(unix))]
  let full = e.kind() == std::io::ErrorKind::StorageFull;
  let why = if full {
    " (ENOSPC: the file system is full or the quota is used up; free some space)"
  } else {
    ""
  };
  Error::io(format!("cannot allocate {size} bytes for {}{why}", path.display()), e)
}

#[cfg(all(test, unix))]
mod tests {
  use super::*;
  use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

  use scratch_dir as scratch;

  #[test]
  fn creates_private_dir_and_files() {
    let p = scratch("create");
    let dir = LockDir::open(&p).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o700);
    // While in use, the directory carries a shared flock, so a cleaner's exclusive try fails.
    let cleaner = File::open(&p).unwrap();
    assert!(matches!(cleaner.try_lock(), Err(fs::TryLockError::WouldBlock)));
    assert!(cleaner.try_lock_shared().is_ok());
    let f = dir.open_or_create("a").unwrap();
    assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o600);
    assert!(dir.open_existing("missing").unwrap().is_none());
    fs::remove_dir_all(&p).unwrap();
  }

  #[test]
  fn refuses_symlinks_and_open_modes() {
    let p = scratch("refuse");
    let dir = LockDir::open(&p).unwrap();
    let target = p.join("target");
    fs::write(&target, b"precious").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    symlink(&target, p.join("link")).unwrap();
    let err = dir.open_or_create("link").unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Permission, "{err}");
    assert_eq!(fs::read(&target).unwrap(), b"precious");

    fs::write(p.join("wide"), b"x").unwrap();
    fs::set_permissions(p.join("wide"), fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(dir.open_existing("wide").unwrap_err().kind(), crate::ErrorKind::Permission);

    let open = scratch("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(LockDir::open(&open).unwrap_err().kind(), crate::ErrorKind::Permission);

    let linked = scratch("linked");
    symlink(&p, &linked).unwrap();
    assert_eq!(LockDir::open(&linked).unwrap_err().kind(), crate::ErrorKind::Permission);
    for d in [p, open, linked] {
      let _ = fs::remove_file(&d);
      let _ = fs::remove_dir_all(&d);
    }
  }

  #[test]
  fn the_default_ignores_the_environment_and_relative_dirs_are_made_absolute() {
    // This test process may have any TMPDIR / XDG_RUNTIME_DIR; the default does not look.
    #[cfg(not(target_os = "macos"))]
    assert_eq!(
      LockDir::default_path().unwrap(),
      PathBuf::from(format!("/tmp/proclock-{}", unsafe { libc::geteuid() }))
    );
    assert_eq!(LockDir::requested(None).unwrap(), None);
    let abs = Path::new("/some/where");
    assert_eq!(LockDir::requested(Some(abs)).unwrap().as_deref(), Some(abs));
    let rel = LockDir::requested(Some(Path::new("rel/locks"))).unwrap().unwrap();
    assert_eq!(rel, std::env::current_dir().unwrap().join("rel/locks"));
  }

  #[test]
  fn ancestors_writable_by_others_are_refused_unless_sticky() {
    let base = scratch("ancestors");
    LockDir::open(&base).unwrap();
    let mk = |name: &str, mode: u32| {
      let p = base.join(name);
      fs::create_dir(&p).unwrap();
      fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
      p
    };
    let open = mk("open", 0o777);
    let err = LockDir::open(&open.join("locks")).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Permission, "{err}");
    assert!(err.to_string().contains(&open.display().to_string()), "{err}");
    assert!(!open.join("locks").exists());
    let sticky = mk("sticky", 0o1777);
    LockDir::open(&sticky.join("locks")).unwrap();
    // Missing ancestors are created, private.
    let deep = base.join("a/b/locks");
    LockDir::open(&deep).unwrap();
    assert_eq!(fs::metadata(base.join("a")).unwrap().mode() & 0o777, 0o700);
    // A symlinked ancestor is resolved, then walked.
    symlink(&sticky, base.join("link")).unwrap();
    LockDir::open(&base.join("link/locks")).unwrap();
    symlink(&open, base.join("badlink")).unwrap();
    assert_eq!(
      LockDir::open(&base.join("badlink/locks")).unwrap_err().kind(),
      crate::ErrorKind::Permission
    );
    fs::remove_dir_all(&base).unwrap();
  }
}
