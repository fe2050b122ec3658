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
//! Windows: the default is under the per-user `%TEMP%`; names are opened with
//! `FILE_FLAG_OPEN_REPARSE_POINT` and reparse points are refused. ACLs are inherited from the
//! per-user temp directory; they are not checked here.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::crash_points::{reached, Step};
use crate::error::{permission, Error, Result};

/// An opened, verified lock directory.
#[derive(Debug)]
pub struct LockDir {
  path: PathBuf,
  #[cfg(unix)]
  fd: std::os::fd::OwnedFd,
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
    if let Some((_, dir)) = dirs.get(&request).filter(|(p, _)| *p == pid) {
      return Ok(dir.clone());
    }
    let dir = Arc::new(LockDir::resolve(request.as_deref())?);
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
    // not a SIGBUS later (see `segment::allocate`). The temporary goes at once, freeing its space.
    crate::segment::allocate(&file, size).map_err(|e| {
      let _ = imp::remove_in(self, &tmp);
      crate::segment::no_space(&self.path.join(name), size, e)
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
    })
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
    Ok(LockDir { path: path.to_path_buf() })
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
