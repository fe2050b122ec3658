//! The `file` backend: one handle on one lock file, locked with a kernel file lock.
//!
//! The kernel does the hard parts: exclusion between descriptions (`file/os.rs`), and
//! freeing the lock the moment its holder's last descriptor closes, which is when its process
//! dies, however it dies. What this file adds:
//!
//! - **Owner info and tokens** in the lock file (`file/format.rs`), written by the exclusive
//!   holder right after the kernel grants the lock and before the acquisition returns.
//! - **Waiting with timeouts and cancellation.** A blocking lock request (`F_OFD_SETLKW`,
//!   `flock`, `LockFileEx`) has no timeout and cannot be interrupted without signals, and a
//!   library must not install signal handlers. So the blocking request runs on a waiter thread
//!   of ours (`waiter_pool.rs`, never a libuv thread), on a description opened for that request
//!   only, while the acquiring thread waits on a condition variable that a timeout or an abort
//!   ends. A request given up on stays queued in the kernel ("parked"); when it is granted with
//!   nobody waiting for it, it is unlocked at once. The next wait in this process on the same
//!   lock and mode adopts a parked request instead of queueing another (`parked_requests`), so
//!   timeouts, aborts and closed handles never pile up threads or descriptors in the kernel.
//!   The acquiring thread is the one thread that serves every pending asynchronous acquisition
//!   of this process on the same lock and mode (`shared_wait.rs`), so a lock with thousands of
//!   pending `acquire()`s costs two threads: that one and its kernel request. Because that
//!   thread may be waiting on another handle's request, `interrupt` wakes every request of this
//!   process on the lock and mode. No thread for a request is an `Io` error, never a wait on
//!   the caller's thread.
//! - **`close()` lets go of descriptors at once.** The main and probe descriptions are dropped
//!   when the handle is closed (`RawLock::close`), not when it is garbage-collected: a loop of
//!   `withLock()` once ran out of descriptors after a few hundred calls. What may remain is a
//!   request given up on, parked as above: at most one per lock and mode in the process, adopted
//!   by the next wait or ended by its grant.
//! - **Why a description per request**: the kernel lock belongs to the description it was
//!   requested on. Had the parked request used the handle's main description, a later
//!   `tryAcquire` on that description and the parked request's "unlock, nobody wants it" would
//!   act on the same lock, and the unlock would drop a hold the handle had just taken.
//!
//! Readers (`Mode::Shared`, `RwLock`) neither read nor write the record: many hold at once, so
//! none of them owns it. Owner info and `ownerDied` describe exclusive holds.

pub mod format;
pub(crate) mod os;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::crash_points::{reached, Step};
use crate::error::{Error, ErrorKind, Result};
use crate::lock_dir::LockDir;
use crate::file::format::{LockFile, Record};
use crate::name::LockName;
pub use crate::file::os::Mode;
use crate::raw_lock::{format_uuid, Acquired, CannotForce, InspectLock, Listing, Losable, OwnerInfo, RawLock, Seen, Skipped, Stop};
use crate::waiter_pool;

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
  m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A blocking kernel request running on a waiter thread.
struct Request {
  state: Mutex<RequestState>,
  done: Condvar,
}

struct RequestState {
  /// An acquisition is waiting for this request's outcome. When the kernel grants a request
  /// nobody wants any more, the grant is given straight back.
  wanted: bool,
  /// The request has finished (granted or failed); a parked request that finished cannot be
  /// re-attached to.
  finished: bool,
  /// The outcome, for the acquisition waiting for it: the description now holding the lock.
  outcome: Option<std::io::Result<File>>,
}

pub struct FileLock {
  dir: Arc<LockDir>,
  /// The lock file's main description; `None` once the handle is closed (`RawLock::close`), so
  /// that `close()` lets go of it at once instead of at garbage collection. Shared (`Arc`) with
  /// whatever uses it at that moment, which keeps it open until that use ends.
  lock_file: Mutex<Option<Arc<LockFile>>>,
  path: PathBuf,
  mode: Mode,
  uuid: [u8; 16],
  pid: u32,
  /// The description holding the lock now: the main one (`lock_file.file`, after a successful
  /// try) or a request's own.
  holding: Mutex<Option<(Holding, Record)>>,
  /// The request this handle waits on (or last waited on), for `interrupt`.
  request: Mutex<Option<Arc<Request>>>,
  /// A description used only to ask what others hold (never holds anything on Linux); made on
  /// first use, dropped by `close`.
  probe_file: Mutex<Option<Arc<File>>>,
}

enum Holding {
  Main(Arc<LockFile>),
  Own(File),
}

impl FileLock {
  pub fn open(name: &str, dir: Option<&Path>, mode: Mode) -> Result<FileLock> {
    let name = LockName::new(name)?;
    let shared = LockDir::shared(dir)?;
    let (shared, lock_file) = match LockFile::open(&shared, &name) {
      Ok(lock_file) => (shared, lock_file),
      // The cached directory may have been deleted or moved, its notice still on the way: if
      // so, the cache drops it and the path is opened afresh, once.
      Err(_) if shared.check().is_err() => {
        let fresh = LockDir::shared(dir)?;
        let lock_file = LockFile::open(&fresh, &name)?;
        (fresh, lock_file)
      }
      Err(e) => return Err(e),
    };
    Ok(FileLock::with(shared, lock_file, mode))
  }

  /// Open the lock of `name` if its lock file exists; creates nothing (not even the directory).
  pub fn open_existing(name: &str, dir: Option<&Path>, mode: Mode) -> Result<Option<FileLock>> {
    let name = LockName::new(name)?;
    let Some(dir) = LockDir::shared_existing(dir)? else {
      return Ok(None);
    };
    Ok(LockFile::open_existing(&dir, &name)?.map(|lock_file| FileLock::with(dir, lock_file, mode)))
  }

  fn with(dir: Arc<LockDir>, lock_file: LockFile, mode: Mode) -> FileLock {
    FileLock {
      dir,
      path: lock_file.path.clone(),
      lock_file: Mutex::new(Some(Arc::new(lock_file))),
      mode,
      uuid: *uuid::Uuid::new_v4().as_bytes(),
      pid: crate::process_info::current_pid(),
      holding: Mutex::new(None),
      request: Mutex::new(None),
      probe_file: Mutex::new(None),
    }
  }

  fn io_error(&self, what: &str, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", self.path.display()), e)
  }

  /// The main description, unless the handle is closed.
  fn lf(&self) -> Result<Arc<LockFile>> {
    guard(&self.lock_file)
      .clone()
      .ok_or_else(|| Error::new(ErrorKind::Closed, "the lock handle is closed"))
  }

  fn file_of(holding: &Holding) -> &File {
    match holding {
      Holding::Main(lf) => &lf.file,
      Holding::Own(f) => f,
    }
  }

  /// The kernel has just granted us the lock on `holding`: record the hold (exclusive) and
  /// report it. On failure the lock is given back.
  fn granted(&self, holding: Holding, description: &[u8]) -> Result<Acquired> {
    let acquired = match self.mode {
      Mode::Exclusive => self.lf().and_then(|lf| self.record_hold(&lf, description)),
      Mode::Shared => Ok((
        Acquired {
          token: 0,
          owner_died: false,
        },
        Record::default(),
      )),
    };
    match acquired {
      Ok((a, record)) => {
        *guard(&self.holding) = Some((holding, record));
        Ok(a)
      }
      Err(e) => {
        let _ = os::unlock(Self::file_of(&holding));
        Err(e)
      }
    }
  }

  /// The exclusive half of `granted`: read the previous record, write ours.
  fn record_hold(&self, lock_file: &LockFile, description: &[u8]) -> Result<(Acquired, Record)> {
    // A death anywhere below is a death holding the kernel lock, which the kernel ends. The
    // record then still says what the previous holder left ("free", or "held" by a holder
    // that died), so the next holder's `owner_died` describes the last holder that got to
    // run under the lock, not this one, which never did.
    lock_file.read_record().and_then(|previous| {
      reached(Step::FileKernelLocked);
      // A recorded token of u64::MAX has no larger successor (2^64 acquisitions: only a
      // damaged or forged file gets there): refused, rather than wrapped to 0 and reused
      // (found by the fuzzing in `tests/garbage_lock_files.rs`).
      let token = previous.token.checked_add(1).ok_or_else(|| {
        crate::error::corrupt(format!(
          "the fencing token recorded in {} is exhausted, which only a damaged lock file can do; remove it when no \
           process uses it",
          lock_file.path.display()
        ))
      })?;
      let record = Record {
        held: true,
        pid: self.pid,
        since_ms: crate::clock::epoch_ms(),
        token,
        uuid: self.uuid,
        description: description.to_vec(),
      };
      lock_file.write_record(&record)?;
      reached(Step::FileRecordWritten);
      Ok((
        Acquired {
          token: record.token,
          owner_died: previous.held,
        },
        record,
      ))
    })
  }

  /// Start a blocking request on a description of its own, or adopt a parked one.
  fn request(&self) -> Result<Arc<Request>> {
    // Keyed by the file's identity too: after the lock file was deleted and re-created, a
    // request parked on the old file must never be adopted by a wait on the new one.
    let key = (self.path.clone(), file_id(&self.lf()?.file), self.mode);
    let mut parked = guard(parked_requests());
    let adopted = parked.get(&key).and_then(|queued| {
      queued.iter().find(|r| {
        let mut st = guard(&r.state);
        let free = !st.finished && !st.wanted;
        st.wanted |= free;
        free
      })
    });
    let request = match adopted {
      Some(r) => r.clone(),
      None => {
        let file = self.lf()?.reopen(&self.dir)?;
        let request = Arc::new(Request {
          state: Mutex::new(RequestState {
            wanted: true,
            finished: false,
            outcome: None,
          }),
          done: Condvar::new(),
        });
        parked.entry(key.clone()).or_default().push(request.clone());
        let (asker, mode, thread_key) = (request.clone(), self.mode, key.clone());
        let started = waiter_pool::run(Box::new(move || {
          let outcome = os::lock(&file, mode);
          {
            let mut st = guard(&asker.state);
            st.finished = true;
            if st.wanted {
              st.outcome = Some(outcome.map(|()| file));
              asker.done.notify_all();
            } else if outcome.is_ok() {
              // Granted to nobody: give it back (closing `file` would too; unlock says so).
              let _ = os::unlock(&file);
            }
          }
          let mut parked = guard(parked_requests());
          if let Some(queued) = parked.get_mut(&thread_key) {
            queued.retain(|r| !Arc::ptr_eq(r, &asker));
            if queued.is_empty() {
              parked.remove(&thread_key);
            }
          }
        }));
        if let Err(e) = started {
          // No thread for the kernel request: it was never made. Forget it and say so.
          if let Some(queued) = parked.get_mut(&key) {
            queued.retain(|r| !Arc::ptr_eq(r, &request));
            if queued.is_empty() {
              parked.remove(&key);
            }
          }
          return Err(e);
        }
        request
      }
    };
    drop(parked);
    *guard(&self.request) = Some(request.clone());
    Ok(request)
  }
}

type Parked = HashMap<(PathBuf, u64, Mode), Vec<Arc<Request>>>;

/// The inode of an open file (0 where there is none to ask).
fn file_id(file: &File) -> u64 {
  #[cfg(unix)]
  {
    use std::os::unix::fs::MetadataExt;
    file.metadata().map_or(0, |m| m.ino())
  }
  #[cfg(not(unix))]
  {
    let _ = file;
    0
  }
}

/// Every blocking request of this process still in the kernel, by lock file and mode, so that
/// a wait can adopt one that was given up on (by any handle on the same lock) instead of
/// queueing another. The number of threads and descriptors stuck in the kernel on one lock is
/// then at most the number of waits this process ever had *at once* on it, however many
/// timeouts, aborts and closed handles came and went.
fn parked_requests() -> &'static Mutex<Parked> {
  static PARKED: OnceLock<Mutex<Parked>> = OnceLock::new();
  PARKED.get_or_init(Default::default)
}

impl RawLock for FileLock {
  fn try_lock(&self, description: &[u8], _probe: bool) -> Result<Option<Acquired>> {
    // The kernel knows whether the holder is alive: there is nothing to probe.
    let lf = self.lf()?;
    match os::try_lock(&lf.file, self.mode) {
      Ok(true) => self.granted(Holding::Main(lf), description).map(Some),
      // A failed try is a slow path: where no watch reports losses, look here.
      Ok(false) if !self.dir.watched() => self.check_not_lost().map(|()| None),
      Ok(false) => Ok(None),
      Err(e) => Err(self.io_error("locking", e)),
    }
  }

  fn lock(
    &self,
    description: &[u8],
    deadline: Option<Instant>,
    cancelled: &dyn Fn() -> bool,
  ) -> Result<std::result::Result<Acquired, Stop>> {
    if let Some(a) = self.try_lock(description, false)? {
      return Ok(Ok(a));
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
      return Ok(Err(Stop::TimedOut));
    }
    // Before queueing behind a holder: a wait in a lost directory would wait on files nobody
    // new will ever use (the watch may not have reported it yet, or there may be no watch).
    self.check_not_lost()?;
    // Opening the request's description fails if the file was deleted since that check: that
    // is a loss, not an I/O error.
    let request = self.request().map_err(|e| self.check_not_lost().err().unwrap_or(e))?;
    let mut st = guard(&request.state);
    loop {
      if let Some(outcome) = st.outcome.take() {
        drop(st);
        let file = outcome.map_err(|e| self.io_error("waiting for the lock on", e))?;
        // Won after waiting: the loss may have come meanwhile (see `ShmLock::lock`). Not yet
        // recorded, so letting go leaves the record as the previous holder left it.
        if let Err(e) = self.check_not_lost() {
          let _ = os::unlock(&file);
          return Err(e);
        }
        return self.granted(Holding::Own(file), description).map(Ok);
      }
      let stop = if cancelled() {
        Some(Stop::Cancelled)
      } else if deadline.is_some_and(|d| Instant::now() >= d) {
        Some(Stop::TimedOut)
      } else {
        None
      };
      if let Some(stop) = stop {
        // Park the request: it stays queued, and gives the lock back if granted unwanted.
        st.wanted = false;
        return Ok(Err(stop));
      }
      st = match deadline {
        Some(d) => {
          let left = d.saturating_duration_since(Instant::now());
          request.done.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0
        }
        None => request.done.wait(st).unwrap_or_else(|p| p.into_inner()),
      };
    }
  }

  /// A synchronous wait with no deadline can neither time out nor be cancelled, so it needs no
  /// helper thread: it waits in the kernel on the handle's own description, and is woken by the
  /// kernel directly (one wake-up for a hand-off instead of two).
  fn lock_uncancellable(&self, description: &[u8], deadline: Option<Instant>) -> Result<std::result::Result<Acquired, Stop>> {
    if deadline.is_some() {
      return self.lock(description, deadline, &|| false);
    }
    self.check_not_lost()?;
    let lf = self.lf()?;
    os::lock(&lf.file, self.mode).map_err(|e| self.io_error("waiting for the lock on", e))?;
    if let Err(e) = self.check_not_lost() {
      let _ = os::unlock(&lf.file);
      return Err(e);
    }
    self.granted(Holding::Main(lf), description).map(Ok)
  }

  fn unlock(&self) -> Result<()> {
    let Some((holding, mut record)) = guard(&self.holding).take() else {
      return Err(Error::new(ErrorKind::NotHeld, "this handle does not hold the lock"));
    };
    // Say "released cleanly" before letting go, so the next holder does not see ownerDied.
    // The record is the one we wrote (nobody else writes while we hold), token included: the
    // next holder continues from it. If the write fails, the lock is still let go (a lock
    // nobody can release would be worse); the next holder then sees ownerDied.
    let recorded = match self.mode {
      Mode::Exclusive => {
        record.held = false;
        self.lf().and_then(|lf| lf.write_record(&record))
      }
      Mode::Shared => Ok(()),
    };
    // A death here, between "free" and letting go, is a clean release: the kernel lets go.
    reached(Step::FileRecordFreed);
    os::unlock(Self::file_of(&holding)).map_err(|e| self.io_error("unlocking", e))?;
    recorded
  }

  fn abandon(&self) -> Result<()> {
    // Let go without writing "free": the next holder sees ownerDied, as after a crash.
    let Some((holding, _)) = guard(&self.holding).take() else {
      return Err(Error::new(ErrorKind::NotHeld, "this handle does not hold the lock"));
    };
    os::unlock(Self::file_of(&holding)).map_err(|e| self.io_error("unlocking", e))
  }

  /// Wakes this handle's request and every other request of this process on the same lock and
  /// mode: the shared wait (`shared_wait.rs`) may be waiting on another handle's request when
  /// this handle's acquisition is cancelled.
  fn interrupt(&self) {
    let own = guard(&self.request).clone();
    // A closed handle has no file left, and no request of its own to wake either.
    let key = self.lf().ok().map(|lf| (self.path.clone(), file_id(&lf.file), self.mode));
    let others = key
      .and_then(|key| guard(parked_requests()).get(&key).cloned())
      .unwrap_or_default();
    for request in own.iter().chain(others.iter()) {
      // Taking the request's mutex orders this wake-up after the waiter's check of
      // `cancelled()`, so it cannot be lost.
      let _st = guard(&request.state);
      request.done.notify_all();
    }
  }

  fn uuid(&self) -> [u8; 16] {
    self.uuid
  }

  fn wait_key(&self) -> String {
    format!("file {:?} {}", self.mode, self.path.display())
  }

  /// Drops the main and the probe descriptions. A request this handle gave up on stays parked
  /// in the kernel, on a description of its own, until it is granted (and given back at once)
  /// or adopted by the next wait of this process on the same lock and mode: at most one per
  /// lock and mode, however many handles come and go.
  fn close(&self) {
    drop(guard(&self.lock_file).take());
    drop(guard(&self.probe_file).take());
    drop(guard(&self.request).take());
  }

  /// The description that holds the kernel lock (the main one, or the wait request's own). The
  /// lock belongs to the description, not to a descriptor or a process: a child that inherits
  /// a duplicate keeps it held after we die, and the kernel ends it when the last duplicate
  /// closes (then the record still says "held", so the next holder is told `owner_died`). An
  /// explicit unlock here still ends it at once for everyone, children included.
  #[cfg(unix)]
  fn hold_descriptor(&self) -> Option<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    guard(&self.holding).as_ref().map(|(holding, _)| Self::file_of(holding).as_raw_fd())
  }
}

impl InspectLock for FileLock {
  fn is_locked(&self) -> Result<bool> {
    Ok(self.probe()?.is_some())
  }

  fn owner(&self) -> Result<Option<OwnerInfo>> {
    seen(&*self.lf()?, &*self.probe_file()?).map(|s| s.owner)
  }
}

impl Losable for FileLock {
  fn lock_dir(&self) -> Option<&LockDir> {
    Some(&self.dir)
  }

  /// Our lock file's name, deleted or renamed away or over: split if the name no longer leads
  /// to the file we have open (a new lock file published under it is someone else's lock).
  fn splits_with(&self, entry: &str, _replaced: bool) -> bool {
    // A closed handle has no file left to split.
    self.file_name() == entry && self.lf().is_ok_and(|lf| !self.dir.names(entry, &lf.file))
  }

  fn files_gone(&self) -> Option<String> {
    let name = self.file_name();
    let lf = self.lf().ok()?;
    (!self.dir.names(name, &lf.file)).then(|| format!("{} was deleted or moved while in use", self.path.display()))
  }
}

impl CannotForce for FileLock {
  /// A kernel file lock cannot be taken from a live process: the kernel ends it only when the
  /// holder's description closes. So a forced release frees nothing a live holder has; it
  /// refuses, naming the holder, rather than pretending. A dead holder's lock is already free
  /// (the next acquirer takes over and sees `ownerDied`), so there is nothing to end either.
  fn why_not_forced(&self) -> Result<Option<Error>> {
    Ok(match self.probe()? {
      None => None,
      Some(Mode::Shared) => Some(Error::new(
        ErrorKind::Permission,
        format!(
          "{} is held by readers; a kernel file lock cannot be taken from a live process",
          self.path.display()
        ),
      )),
      Some(Mode::Exclusive) => {
        let pid = self.lf()?.read_record().map(|r| r.pid).unwrap_or(0);
        Some(Error::new(
          ErrorKind::Permission,
          format!(
            "the file lock {} is held by a live process (pid {pid}); the kernel does not let anyone take a file lock from \
             its holder: stop that process to free it",
            self.path.display()
          ),
        ))
      }
    })
  }
}

impl FileLock {
  fn file_name(&self) -> &str {
    self.path.file_name().and_then(|f| f.to_str()).unwrap_or_default()
  }

  /// The slow-path loss check: the directory (`LockDir::check`), then our lock file's name.
  fn check_not_lost(&self) -> Result<()> {
    self.dir.check()?;
    if let Some(why) = self.files_gone() {
      self.dir.lose_entry(self.file_name(), false);
      return Err(crate::error::lost(&why));
    }
    Ok(())
  }
}

impl FileLock {
  /// The description this handle asks through (never the one it holds with).
  fn probe_file(&self) -> Result<Arc<File>> {
    let lf = self.lf()?;
    let mut probe = guard(&self.probe_file);
    if let Some(f) = probe.as_ref() {
      return Ok(f.clone());
    }
    let f = Arc::new(lf.reopen(&self.dir)?);
    *probe = Some(f.clone());
    Ok(f)
  }

  fn probe(&self) -> Result<Option<Mode>> {
    os::probe(&*self.probe_file()?).map_err(|e| self.io_error("probing", e))
  }
}

/// Whether `lock_file` is held, and by whom, asked through `probe`, a description that holds
/// nothing.
fn seen(lock_file: &LockFile, probe: &File) -> Result<Seen> {
  let held_by = os::probe(probe).map_err(|e| Error::io(format!("probing {}", lock_file.path.display()), e))?;
  let record = lock_file.read_record()?;
  let info = |alive: bool| OwnerInfo {
    pid: record.pid,
    uuid: format_uuid(&record.uuid),
    description: crate::description::description_text(&record.description),
    since_ms: record.since_ms,
    token: record.token,
    alive,
  };
  let owner = match (held_by, record.held) {
    // Held exclusively, and the holder has recorded itself.
    (Some(Mode::Exclusive), true) => Some(info(true)),
    // Held exclusively, by a holder between the grant and its record write (or between its
    // "free" write and the unlock): who it is cannot be told yet.
    (Some(Mode::Exclusive), false) => Some(OwnerInfo::unknown(record.token, true)),
    // Free, but the last exclusive holder died holding: the next acquirer sees ownerDied.
    (None, true) => Some(info(false)),
    // Free, or held by readers only (who have no owner record).
    _ => None,
  };
  Ok(Seen {
    locked: held_by.is_some(),
    owner,
  })
}

// The file backend's entries in the table of backends (`inspect.rs`): look, list, and why a
// forced release is refused.

/// The holder of file lock `name` (alive or not), without creating anything.
pub fn look(name: &LockName, dir: Option<&Path>) -> Result<Seen> {
  let Some(dir) = LockDir::shared_existing(dir)? else {
    return Ok(Seen::default());
  };
  match LockFile::open_existing(&dir, name)? {
    Some(lf) => seen(&lf, &lf.file),
    None => Ok(Seen::default()),
  }
}

/// Why a forced release of file lock `name` is refused (see [`CannotForce`]); `None` if it is
/// not held or does not exist (nothing is created).
pub fn why_not_forced(name: &str, dir: Option<&Path>) -> Result<Option<Error>> {
  match FileLock::open_existing(name, dir, Mode::Exclusive)? {
    Some(lock) => lock.why_not_forced(),
    None => Ok(None),
  }
}

/// Every file lock in the directory: its readable name and holder, and the entries named like
/// lock files that were left out, with why. Files whose names are not lock-file names are not
/// looked at (their names say nothing proclock could report).
///
/// One stray entry must not hide every other lock, so an entry that cannot be a lock file of
/// ours is skipped and reported, never fatal: a directory, FIFO, socket or symlink (told from
/// the directory entry's type, before anything is opened: opening a FIFO could block, and a
/// symlink is never followed), or a file that opening refuses (another owner, mode bits for
/// others, more than one hard link: `lock_dir/mod.rs`). A file whose header is not a lock file's
/// is not ours and is left out silently, as before. What still fails the listing: a lock file
/// of ours (its header names the lock) whose record is damaged, which is a broken lock, not a
/// stray entry, and must be noticed (`inspect` of that lock fails the same way); and failures
/// that are not about the entry (out of descriptors, I/O errors), since a partial list
/// presented as complete would mislead.
pub fn list(dir: Option<&Path>) -> Result<Listing> {
  let Some(dir) = LockDir::shared_existing(dir)? else {
    return Ok(Default::default());
  };
  let entries = std::fs::read_dir(dir.path()).map_err(|e| Error::io(format!("listing {}", dir.path().display()), e))?;
  let (mut out, mut skipped) = (Vec::new(), Vec::new());
  for entry in entries {
    let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.path().display()), e))?;
    let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
      continue;
    };
    if !(file_name.starts_with("file-") && file_name.ends_with(".lock")) {
      continue;
    }
    // `DirEntry::file_type` does not follow symlinks (it is the entry's own type).
    match entry.file_type() {
      Ok(t) if t.is_file() => {}
      Ok(t) => {
        let what = if t.is_dir() {
          "a directory"
        } else if t.is_symlink() {
          "a symlink"
        } else {
          "not a regular file"
        };
        skipped.push(Skipped::new(&file_name, format!("{what}, not a lock file")));
        continue;
      }
      // Removed since it was read: nothing to report.
      Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
      Err(e) => return Err(Error::io(format!("listing {}", dir.path().display()), e)),
    }
    let found = LockFile::open_found(&dir, &file_name).and_then(|found| match found {
      Some((name, lf)) => seen(&lf, &lf.file).map(|s| Some((name, s))),
      None => Ok(None),
    });
    match found {
      Ok(Some(lock)) => out.push(lock),
      Ok(None) => {}
      Err(e) if e.kind() == ErrorKind::Permission => {
        skipped.push(Skipped::new(&file_name, e.message().to_owned()));
      }
      Err(e) => return Err(e),
    }
  }
  Ok((out, skipped))
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::time::Duration;

  use crate::lock_dir::scratch_dir as scratch;

  fn open(dir: &Path, mode: Mode) -> FileLock {
    FileLock::open("jobs", Some(dir), mode).unwrap()
  }

  #[test]
  fn handles_exclude_and_tokens_grow() {
    let dir = scratch("excl");
    let (a, b) = (open(&dir, Mode::Exclusive), open(&dir, Mode::Exclusive));
    let first = a.try_lock(b"a", true).unwrap().unwrap();
    assert!(b.try_lock(b"b", true).unwrap().is_none());
    let owner = b.owner().unwrap().unwrap();
    assert_eq!(
      (owner.pid, owner.description.as_str(), owner.alive),
      (std::process::id(), "a", true)
    );
    assert!(b.is_locked().unwrap());
    let never = || false;
    let t0 = Instant::now();
    let waited = b.lock(b"b", Some(Instant::now() + Duration::from_millis(50)), &never).unwrap();
    assert!(matches!(waited, Err(Stop::TimedOut)));
    assert!(t0.elapsed() >= Duration::from_millis(50));
    a.unlock().unwrap();
    // b's timed-out request is parked; the next wait adopts it and wins.
    let second = b
      .lock(b"b", Some(Instant::now() + Duration::from_secs(5)), &never)
      .unwrap()
      .unwrap();
    assert!(second.token > first.token);
    assert!(!second.owner_died);
    // Abandoning leaves "held" in the record: the next holder is told.
    b.abandon().unwrap();
    assert!(!a.is_locked().unwrap());
    assert!(!a.owner().unwrap().unwrap().alive);
    let third = a.try_lock(b"a", true).unwrap().unwrap();
    assert!(third.owner_died && third.token > second.token);
    a.unlock().unwrap();
    assert!(a.owner().unwrap().is_none());
    assert_eq!(a.unlock().unwrap_err().kind(), ErrorKind::NotHeld);
    let _ = std::fs::remove_dir_all(&dir);
  }

  #[test]
  fn a_waiter_is_woken_by_release_and_by_cancel() {
    let dir = scratch("wake");
    let a = open(&dir, Mode::Exclusive);
    let b = Arc::new(open(&dir, Mode::Exclusive));
    a.try_lock(b"", true).unwrap().unwrap();
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (b2, c2) = (b.clone(), cancel.clone());
    let waiter = std::thread::spawn(move || b2.lock(b"", None, &|| c2.load(std::sync::atomic::Ordering::SeqCst)).unwrap());
    std::thread::sleep(Duration::from_millis(30));
    cancel.store(true, std::sync::atomic::Ordering::SeqCst);
    b.interrupt();
    assert!(matches!(waiter.join().unwrap(), Err(Stop::Cancelled)));
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || b2.lock(b"", None, &|| false).unwrap());
    std::thread::sleep(Duration::from_millis(30));
    let t0 = Instant::now();
    a.unlock().unwrap();
    assert!(waiter.join().unwrap().is_ok());
    assert!(t0.elapsed() < Duration::from_secs(1));
    b.unlock().unwrap();
    // A synchronous wait without a deadline waits in the kernel on its own description.
    a.try_lock(b"", true).unwrap().unwrap();
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || b2.lock_uncancellable(b"", None).unwrap());
    std::thread::sleep(Duration::from_millis(30));
    assert!(!waiter.is_finished());
    a.unlock().unwrap();
    let got = waiter.join().unwrap().unwrap();
    assert!(!got.owner_died);
    assert!(a.try_lock(b"", true).unwrap().is_none(), "b holds it");
    b.unlock().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
  }

  #[test]
  fn waits_given_up_on_do_not_pile_up_in_the_kernel() {
    let dir = scratch("pile");
    let holder = open(&dir, Mode::Exclusive);
    holder.try_lock(b"", true).unwrap().unwrap();
    // 20 handles in turn each wait 5 ms, give up, and are dropped.
    for _ in 0..20 {
      let waiter = open(&dir, Mode::Exclusive);
      let soon = Some(Instant::now() + Duration::from_millis(5));
      assert!(matches!(waiter.lock(b"", soon, &|| false).unwrap(), Err(Stop::TimedOut)));
    }
    let key = (holder.path.clone(), file_id(&holder.lf().unwrap().file), Mode::Exclusive);
    let queued = || guard(parked_requests()).get(&key).map_or(0, Vec::len);
    assert_eq!(queued(), 1, "each wait adopted the request the previous one gave up on");
    holder.unlock().unwrap();
    // Granted to nobody, the parked request gives the lock back and leaves the table.
    let t0 = Instant::now();
    while queued() > 0 && t0.elapsed() < Duration::from_secs(5) {
      std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(queued(), 0);
    assert!(holder.try_lock(b"", true).unwrap().is_some());
    holder.unlock().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
  }

  #[test]
  fn readers_share_and_writers_exclude() {
    let dir = scratch("rw");
    let (r1, r2, w) = (open(&dir, Mode::Shared), open(&dir, Mode::Shared), open(&dir, Mode::Exclusive));
    r1.try_lock(b"", true).unwrap().unwrap();
    r2.try_lock(b"", true).unwrap().unwrap();
    assert!(w.try_lock(b"", true).unwrap().is_none());
    assert!(w.is_locked().unwrap());
    r1.unlock().unwrap();
    r2.unlock().unwrap();
    w.try_lock(b"", true).unwrap().unwrap();
    assert!(r1.try_lock(b"", true).unwrap().is_none());
    w.unlock().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
  }

  /// Unix only: it plants a FIFO and a symlink, and relies on Unix modes.
  #[cfg(unix)]
  #[test]
  fn stray_entries_named_like_lock_files_are_skipped_and_reported() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("stray");
    let lock = open(&dir, Mode::Exclusive);
    let real = dir.join(LockName::new("jobs").unwrap().file_name());
    let stray = |c: char| dir.join(format!("file-{}.lock", c.to_string().repeat(32)));
    std::fs::create_dir(stray('1')).unwrap();
    let fifo = std::ffi::CString::new(stray('2').to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink(&real, stray('3')).unwrap();
    std::fs::copy(&real, stray('4')).unwrap();
    std::fs::set_permissions(stray('4'), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (locks, skipped) = list(Some(&dir)).unwrap();
    assert_eq!(locks.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["jobs"]);
    let mut why: Vec<_> = skipped.iter().map(|s| (s.entry.chars().nth(5).unwrap(), s.why.as_str())).collect();
    why.sort();
    assert!(why[0].1.contains("directory"), "{why:?}");
    assert!(why[1].1.contains("not a regular file"), "{why:?}");
    assert!(why[2].1.contains("symlink"), "{why:?}");
    assert!(why[3].1.contains("mode 644"), "{why:?}");
    assert_eq!(why.len(), 4);
    drop(lock);
    let _ = std::fs::remove_dir_all(&dir);
  }

  #[test]
  fn a_foreign_file_is_corrupt_not_reset() {
    let dir = scratch("garbage");
    drop(open(&dir, Mode::Exclusive));
    let file = dir.join(LockName::new("jobs").unwrap().file_name());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let l = open(&dir, Mode::Exclusive);
    assert_eq!(l.try_lock(b"", true).unwrap_err().kind(), ErrorKind::Corrupt);
    // The failed acquisition gave the kernel lock back.
    assert!(!l.is_locked().unwrap());
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    std::fs::write(&file, b"not a lock file").unwrap();
    assert_eq!(
      FileLock::open("jobs", Some(&dir), Mode::Exclusive).err().unwrap().kind(),
      ErrorKind::Corrupt
    );
    let _ = std::fs::remove_dir_all(&dir);
  }
}
