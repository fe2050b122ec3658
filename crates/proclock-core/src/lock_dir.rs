//! The lock directory: where every file of proclock lives, and how files in it are opened.
//!
//! A lock is identified by (backend, lock directory, name), so the directory is a namespace.
//! Default: `$XDG_RUNTIME_DIR/proclock` when `$XDG_RUNTIME_DIR` is ours and mode 0700 (the
//! basedir spec's promise, which we check rather than trust), otherwise `proclock-<uid>` under
//! the OS temp dir; `PROCLOCK_DIR` or the `dir` option override it.
//!
//! Why each step exists:
//! - The directory is created 0700 and then `chmod`ed, because `mkdir`'s mode is filtered by the
//!   umask and a umask of 000 must not give us a world-writable namespace. A directory we did
//!   not create is accepted only if it is ours and not group/world-writable.
//! - It is opened with `O_NOFOLLOW | O_DIRECTORY` and the checks are made on the *open fd*
//!   (`fstat`), not the path, so a symlink swapped in between check and use is refused.
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
//!   dies. (macOS's `$TMPDIR` cleaner ignores such locks; it only removes files unused for
//!   days, and `$XDG_RUNTIME_DIR` or `PROCLOCK_DIR` avoid it altogether.)
//!
//! A directory deleted or moved while in use (`rm -rf`, a tmpfs cleared at logout, an operator's
//! `mv`) splits every lock in it: processes that opened it keep using the old files, while new
//! processes create a new directory under the same path and take the same names there. So each
//! directory keeps a registry of what uses it (handles, the shm space), weakly, and a loss marks
//! them all (`Loss`, `lose_all`; `lose_entry` for one file, which splits only the locks in that
//! file). Who notices: a kernel watch on the directory (`dir_watch.rs`), and, where there is no
//! watch, the slow paths (`check`: the start of a wait, a failed try). The process cache
//! (`shared`) never hands out a lost directory again, so the next handle opens the path afresh.
//!
//! Windows: the default is under the per-user `%TEMP%`; names are opened with
//! `FILE_FLAG_OPEN_REPARSE_POINT` and reparse points are refused. ACLs are inherited from the
//! per-user temp directory; they are not checked here.

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
  /// A kernel watch covers this directory (`dir_watch.rs`): failed tries need not look.
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
  /// The directory to use: `explicit` (the `dir` option), else `PROCLOCK_DIR`, else the default.
  pub fn resolve(explicit: Option<&Path>) -> Result<LockDir> {
    LockDir::open(&LockDir::resolve_path(explicit)?)
  }

  /// The directory as asked for: `explicit`, else `PROCLOCK_DIR`; `None` means the default.
  /// No system call: this is the cache key of [`LockDir::shared`] and of the shm spaces.
  pub fn requested(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
      Some(p) => Some(p.to_path_buf()),
      None => std::env::var_os("PROCLOCK_DIR").filter(|v| !v.is_empty()).map(PathBuf::from),
    }
  }

  /// The path [`LockDir::resolve`] would open, without creating or opening anything (so that
  /// looking at locks never creates a lock directory).
  pub fn resolve_path(explicit: Option<&Path>) -> Result<PathBuf> {
    match LockDir::requested(explicit) {
      Some(p) => std::path::absolute(&p).map_err(|e| Error::io(p.display(), e)),
      None => imp::default_dir(),
    }
  }

  /// [`LockDir::resolve`], done once per process (and again after a fork) for each directory as
  /// asked for, and shared by every lock of every backend there: one descriptor and one
  /// cleaner-guarding `flock` per directory, and no system call to find it again.
  pub fn shared(explicit: Option<&Path>) -> Result<Arc<LockDir>> {
    type Dirs = HashMap<Option<PathBuf>, (u32, Arc<LockDir>)>;
    static DIRS: OnceLock<Mutex<Dirs>> = OnceLock::new();
    let request = LockDir::requested(explicit);
    let pid = crate::process_info::current_pid();
    let mut dirs = DIRS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    // A lost directory is never handed out again: the next handle re-creates the path.
    if let Some((_, dir)) = dirs.get(&request).filter(|(p, d)| *p == pid && !d.is_lost()) {
      return Ok(dir.clone());
    }
    let dir = Arc::new(LockDir::resolve(request.as_deref())?);
    crate::dir_watch::watch(&dir);
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

  /// Open (creating if needed) and verify `path`.
  pub fn open(path: &Path) -> Result<LockDir> {
    if let Some(parent) = path.parent() {
      fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    imp::open_dir(path)
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

  pub fn default_dir() -> Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
      let ours = fs::symlink_metadata(&xdg)
        .map(|m| m.is_dir() && m.uid() == euid() && m.mode() & 0o777 == 0o700)
        .unwrap_or(false);
      if xdg.is_absolute() && ours {
        return Ok(xdg.join("proclock"));
      }
    }
    Ok(std::env::temp_dir().join(format!("proclock-{}", euid())))
  }

  pub fn open_dir(path: &Path) -> Result<LockDir> {
    let c = cstr(path.as_os_str().as_bytes()).map_err(|e| Error::io(path.display(), e))?;
    // SAFETY: valid C string; mkdir has no memory effects beyond it.
    let created = unsafe { libc::mkdir(c.as_ptr(), 0o700) } == 0;
    if !created {
      let e = io::Error::last_os_error();
      if e.raw_os_error() != Some(libc::EEXIST) {
        return Err(Error::io(format!("creating {}", path.display()), e));
      }
    }
    // SAFETY: valid C string; the returned fd is owned below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
      let e = io::Error::last_os_error();
      return Err(match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => permission(format!(
          "refusing lock directory {}: it is a symlink or not a directory",
          path.display()
        )),
        _ => Error::io(format!("opening lock directory {}", path.display()), e),
      });
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let dir = File::from(fd);
    if created {
      // mkdir's mode went through the umask; make it exactly 0700.
      dir
        .set_permissions(fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(path.display(), e))?;
    }
    let meta = dir.metadata().map_err(|e| Error::io(path.display(), e))?;
    if meta.uid() != euid() {
      return Err(permission(format!(
        "refusing lock directory {}: owned by uid {}, not by us (uid {})",
        path.display(),
        meta.uid(),
        euid()
      )));
    }
    if meta.mode() & 0o022 != 0 {
      return Err(permission(format!(
        "refusing lock directory {}: mode {:o} lets other users write to it",
        path.display(),
        meta.mode() & 0o777
      )));
    }
    // The shared lock that keeps age-based cleaners out (see the module comment). Not fatal
    // if refused (a cleaner holds it this instant): locks work without it; this process just
    // goes unprotected from that cleaner.
    // SAFETY: valid descriptor we own.
    unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    Ok(LockDir {
      path: path.to_path_buf(),
      fd: OwnedFd::from(dir),
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
}
