//! The `shm` backend: a lock word in a shared slot (`lock_word.rs`), its holder record
//! (`shm/holder_record.rs`), liveness of holders (`shm/liveness.rs`, `shm/death_watch.rs`) and sleeping on
//! the lock's wake counter (`shm/os_wait.rs`), put together for one handle.
//!
//! The uncontended acquire is one CAS plus the fencing-token increment and a few stores into
//! the holder record; the uncontended release is one CAS. Neither enters the kernel. Only a
//! contended acquire sleeps (futex), and only a release that finds the waiters bit wakes.

pub mod death_watch;
pub mod holder_record;
pub mod liveness;
pub mod os_wait;
pub mod segment;
pub mod slot_table;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::clock::epoch_ms;

use death_watch::{Outcome, Watch};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::liveness::Liveness;
use crate::lock_dir::LockDir;
use crate::lock_word::{self, handle_id, holder_of, pslot_of, Acquired, Stop, WaitEnv};
use crate::name::LockName;
use crate::raw_lock::{format_uuid, ForceRelease, InspectLock, Listing, Losable, OwnerInfo, RawLock, Seen};
use crate::shm::slot_table::{Slot, SlotRef, SlotTable};
use crate::sync::AtomicU32;

/// How often a sleeping contender re-checks whether the holder died when nothing will wake it
/// on that death (no death watch: another OS, an old kernel, a holder in another pid
/// namespace). This bounds recovery latency there; it never delays hand-off on release, which
/// is a direct wake-up.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// The largest fencing-token counter a lock may be opened with. Tokens are the counter + 1 and
/// must only grow, so a counter at `u64::MAX` would hand out 0 next. Checking at every grant
/// would put a compare and a branch on the uncontended acquire, which measurably slowed it
/// (`docs/benchmarks/analysis.md`), so the counter is checked once, when a handle is opened: a counter above this limit can only come
/// from a damaged table (fuzzing planted one), and the 2^48 acquisitions of headroom above it
/// take months at full speed. (A table damaged while handles are open is beyond any check: the
/// damage could as well name a holder.) Counters start at wall-clock milliseconds << 20
/// (`clock::token_start`, about 2^60.7 today), which stays below this limit until the
/// year 2527.
pub const TOKEN_LIMIT: u64 = u64::MAX - (1 << 48);

/// The re-check interval while the death watch covers the holder: only a safety net.
pub const WATCHED_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Everything the shm backend keeps per lock directory in this process: the directory, our
/// process registration, and the slot table. Lives for the rest of the process once opened.
pub struct ShmSpace {
  dir: Arc<LockDir>,
  liveness: Liveness,
  table: SlotTable,
  /// A segment or our liveness file was deleted or moved (or the whole directory): every
  /// lock of this space may be split, and the process cache opens a new space instead.
  lost: std::sync::atomic::AtomicBool,
  lost_why: OnceLock<String>,
}

impl crate::lock_dir::Member for ShmSpace {
  /// The shared files every shm lock of this process depends on: the lock tables (a slot in
  /// any segment), the process table, and our own liveness file (whose deletion lets another
  /// process take our process slot, after which our live holds look dead). A file renamed over
  /// one of them is not counted: proclock does that only to publish a new segment, or to
  /// replace one that is provably unused (`shm/segment.rs`), and nothing here compares inodes.
  fn splits_with(&self, entry: &str, replaced: bool) -> bool {
    !replaced
      && ((entry.starts_with("shm-locks-") && entry.ends_with(".seg"))
        || entry == crate::shm::liveness::PROCS_FILE
        || entry == crate::shm::liveness::live_file_name(self.liveness.me().pslot))
  }
  fn files_gone(&self) -> Option<String> {
    None
  }
  fn lose(&self, why: &str) -> Option<crate::lock_dir::Notice> {
    let _ = self.lost_why.set(why.to_owned());
    self.lost.store(true, std::sync::atomic::Ordering::Release);
    None
  }
}

impl ShmSpace {
  fn is_lost(&self) -> bool {
    self.lost.load(std::sync::atomic::Ordering::Acquire)
  }

  fn lost_error(&self) -> Error {
    crate::error::lost(self.lost_why.get().map_or("", String::as_str))
  }
}

impl ShmSpace {
  /// The space of `dir` (or the default directory), opened once per process. Looked up first by
  /// the directory as asked for (no system call on the hot path of `new Lock()` for an absolute
  /// or default directory), then by its canonical path, so that two spellings of one directory
  /// share one space.
  pub fn get(dir: Option<&Path>) -> Result<Arc<ShmSpace>> {
    let request = LockDir::requested(dir)?;
    let pid = crate::process_info::current_pid();
    let mut spaces = spaces();
    // After a fork the child is a different process and must register on its own.
    // A lost space (its directory or one of its files deleted or moved) is never handed out
    // again: the next handle opens the directory afresh.
    if let Some(space) = spaces.by_request.get(&request).filter(|s| s.liveness.me().pid == pid && !s.is_lost()) {
      return Ok(space.clone());
    }
    let mut lock_dir = LockDir::shared(request.as_deref())?;
    // A new space is made on first use, or because the last one was lost; in the second case
    // the directory may be gone too, with its own notice still on the way. Look (two system
    // calls, once per space): a lost directory is dropped from the cache and opened afresh.
    if lock_dir.check().is_err() {
      lock_dir = LockDir::shared(request.as_deref())?;
    }
    let canonical = std::fs::canonicalize(lock_dir.path()).unwrap_or_else(|_| lock_dir.path().to_path_buf());
    let space = match spaces.by_canonical.get(&canonical).filter(|s| s.liveness.me().pid == pid && !s.is_lost()) {
      Some(space) => space.clone(),
      None => {
        let liveness = Liveness::register(&lock_dir)?;
        let space = Arc::new(ShmSpace {
          dir: lock_dir,
          liveness,
          table: SlotTable::new(),
          lost: Default::default(),
          lost_why: OnceLock::new(),
        });
        let member: Arc<dyn crate::lock_dir::Member> = space.clone();
        space.dir.join(&member);
        spaces.by_canonical.insert(canonical, space.clone());
        space
      }
    };
    spaces.by_request.insert(request, space.clone());
    Ok(space)
  }

  /// This process's registered space for the directory whose canonical path is `canonical`,
  /// if it has opened one (under any spelling); else its view for looking, if it has one.
  fn cached(spaces: &Spaces, canonical: &Path) -> Option<Arc<ShmSpace>> {
    let pid = crate::process_info::current_pid();
    // Neither a lost space nor a view of a lost directory: the path is looked at afresh.
    let mine = |s: &&Arc<ShmSpace>| s.liveness.me().pid == pid && !s.is_lost() && !s.dir.is_lost();
    spaces
      .by_canonical
      .get(canonical)
      .filter(mine)
      .or_else(|| spaces.views.get(canonical).filter(mine))
      .cloned()
  }

  /// The current holder of `slot`, as far as it can be told.
  fn owner_of(&self, slot: &Slot) -> Option<OwnerInfo> {
    let word = slot.cell.word.load(crate::sync::Ordering::Acquire);
    let holder = holder_of(word)?;
    let alive = !self.liveness.holder_is_dead(holder, &slot.record, &self.dir);
    let token = slot.cell.token.load(crate::sync::Ordering::Relaxed);
    Some(match slot.record.read().filter(|r| r.holder == holder) {
      Some(r) => OwnerInfo {
        pid: r.pid,
        uuid: format_uuid(&r.uuid),
        description: r.description,
        since_ms: r.since_ms,
        token: r.token,
        alive,
      },
      None => OwnerInfo::unknown(token, alive),
    })
  }
}

/// Every registered space of this process, by the directory as asked for and by canonical path.
#[derive(Default)]
struct Spaces {
  by_request: HashMap<Option<PathBuf>, Arc<ShmSpace>>,
  by_canonical: HashMap<PathBuf, Arc<ShmSpace>>,
  /// Views for looking only ([`ShmSpace::existing`]), by canonical path, kept so that repeated
  /// looks do not map the tables again each time. Never used to open a handle.
  views: HashMap<PathBuf, Arc<ShmSpace>>,
}

fn spaces() -> std::sync::MutexGuard<'static, Spaces> {
  static SPACES: OnceLock<Mutex<Spaces>> = OnceLock::new();
  SPACES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// What a waiter knows about the holder it is about to sleep on.
#[derive(Default)]
enum Watching {
  #[default]
  Nothing,
  /// Its process's death will bump the wake counter (until `watch` is dropped), and mark
  /// `watch` fired first.
  Subscribed { holder: u64, watch: Watch },
  /// Reported gone (so probed at once) once already.
  ToldGone(u64),
}

/// What the protocol needs, for one slot (and the handle asking, for its liveness cache).
/// Lives for one acquisition; holds its death-watch subscription, if any.
struct SlotEnv<'a> {
  space: &'a ShmSpace,
  slot: &'a Slot,
  handle: Option<&'a ShmLock>,
  watching: std::cell::RefCell<Watching>,
}

impl WaitEnv for SlotEnv<'_> {
  fn holder_is_dead(&self, holder: u64) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    if let Some(h) = self.handle {
      if h.alive_holder.load(Relaxed) == holder && mono_ns() < h.alive_until.load(Relaxed) {
        return false;
      }
    }
    let dead = self.space.liveness.holder_is_dead(holder, &self.slot.record, &self.space.dir);
    if let (false, Some(h)) = (dead, self.handle) {
      h.alive_until.store(mono_ns() + PROBE_INTERVAL.as_nanos() as u64, Relaxed);
      h.alive_holder.store(holder, Relaxed);
    }
    dead
  }
  fn watch(&self, holder: u64) -> Duration {
    let mut watching = self.watching.borrow_mut();
    match &*watching {
      Watching::Subscribed { holder: h, .. } if *h == holder => return WATCHED_PROBE_INTERVAL,
      // Told "gone" once and then found alive by the probe (a holder in another pid namespace,
      // or a liveness file deleted under a live holder): re-check on the timer, never spin.
      Watching::ToldGone(h) if *h == holder => return PROBE_INTERVAL,
      _ => *watching = Watching::Nothing,
    }
    let gone = |watching: &mut Watching| {
      *watching = Watching::ToldGone(holder);
      Duration::ZERO
    };
    let Some((pid, identity)) = self.space.liveness.holder_process(holder) else {
      // No longer its process slot's occupant: its process is gone. Probe now.
      return gone(&mut watching);
    };
    if pslot_of(holder) == self.space.liveness.me().pslot {
      // A holder in this process ends its holds itself (release, close, or abandon when its
      // environment goes away), and each of those wakes us.
      return WATCHED_PROBE_INTERVAL;
    }
    match death_watch::watch(pid, identity, &self.slot.cell.wake) {
      Outcome::Watching(w) => {
        *watching = Watching::Subscribed { holder, watch: w };
        WATCHED_PROBE_INTERVAL
      }
      Outcome::Gone => gone(&mut watching),
      Outcome::Unavailable => PROBE_INTERVAL,
    }
  }
  fn wait(&self, counter: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    os_wait::wait(counter, expected, timeout)
  }
  fn wake(&self, counter: &AtomicU32, count: i32) {
    os_wait::wake(counter, count)
  }
  fn wake_may_mean_death(&self, holder: u64) -> bool {
    // Subscribed to `holder`'s process: its death is announced by that subscription, so any
    // other wake-up (a release followed by the same handle re-acquiring, a cancelled
    // neighbour) needs no probe. Anything else (no watch possible, a holder in this process,
    // one already reported gone) keeps probing on every wake-up.
    match &*self.watching.borrow() {
      Watching::Subscribed { holder: h, watch } if *h == holder => watch.fired(),
      _ => true,
    }
  }
}

/// One handle on one shm lock.
///
/// `alive_holder`/`alive_until` remember the last holder this handle's `try_lock` proved alive,
/// for one `PROBE_INTERVAL`: a `tryAcquire` on a busy lock then costs a comparison instead of
/// two system calls. It can only ever answer "alive", so it can never cause a takeover; it
/// delays a single try's noticing a death by at most that interval. A blocking wait never
/// consults it: a wake-up from the death watch must be answered by a real probe.
pub struct ShmLock {
  space: Arc<ShmSpace>,
  /// Keeps the segment mapped; `slot` points into it.
  _slot_ref: SlotRef,
  slot: *const Slot,
  me: u64,
  uuid: [u8; 16],
  pid: u32,
  identity: u64,
  /// The segment file our slot lives in, and its identity when we opened the handle, for the
  /// slow-path loss check (a segment deleted, or renamed away or over, splits our lock).
  segment: (String, Option<(u64, u64)>),
  alive_holder: std::sync::atomic::AtomicU64,
  alive_until: std::sync::atomic::AtomicU64,
}

/// Monotonic nanoseconds since the first call in this process.
fn mono_ns() -> u64 {
  static START: OnceLock<Instant> = OnceLock::new();
  START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

// SAFETY: `slot` points into a shared mapping kept alive by `_slot_ref`, accessed only through
// atomics; everything else is Send + Sync.
unsafe impl Send for ShmLock {}
unsafe impl Sync for ShmLock {}

impl ShmLock {
  pub fn open(name: &str, dir: Option<&Path>) -> Result<ShmLock> {
    let name = LockName::new(name)?;
    let space = ShmSpace::get(dir)?;
    let slot_ref = space.table.claim(&space.dir, &name)?;
    let segment_name = crate::shm::slot_table::segment_file(slot_ref.location().0);
    let segment_id = space.dir.entry_id(&segment_name);
    let counter = slot_ref.slot().cell.token.load(crate::sync::Ordering::Relaxed);
    if counter > TOKEN_LIMIT {
      return Err(crate::error::corrupt(format!(
        "the fencing-token counter of shm lock {:?} is at {counter}, near its end, which only a damaged lock table can do; \
         use another lock directory",
        name.as_str()
      )));
    }
    let me = handle_id(space.liveness.me().pslot, space.liveness.next_seq()?);
    let (pid, identity) = (space.liveness.me().pid, space.liveness.me().identity);
    Ok(ShmLock {
      slot: slot_ref.slot_ptr(),
      _slot_ref: slot_ref,
      segment: (segment_name, segment_id),
      space,
      me,
      uuid: *uuid::Uuid::new_v4().as_bytes(),
      pid,
      identity,
      alive_holder: Default::default(),
      alive_until: Default::default(),
    })
  }

  #[inline]
  fn slot(&self) -> &Slot {
    // SAFETY: see the field: the mapping outlives `self`.
    unsafe { &*self.slot }
  }

  /// The protocol's environment; `cache` lets liveness answers come from the handle's cache
  /// (single tries only).
  fn env(&self, cache: bool) -> SlotEnv<'_> {
    SlotEnv {
      space: &self.space,
      slot: self.slot(),
      handle: cache.then_some(self),
      watching: Default::default(),
    }
  }

  /// Record ourselves as the holder (we just won the word).
  #[inline]
  fn granted(&self, acquired: Acquired, description: &[u8]) -> Acquired {
    self.slot().record.write_hold(
      self.me,
      &self.uuid,
      self.pid,
      self.identity,
      epoch_ms(),
      acquired.token,
      description,
    );
    acquired
  }

  /// The slow-path loss check: the space, then the directory (`LockDir::check`).
  fn check_not_lost(&self) -> Result<()> {
    if self.space.is_lost() {
      return Err(self.space.lost_error());
    }
    self.space.dir.check()?;
    if let (name, Some(id)) = &self.segment {
      if !self.space.dir.names_id(name, *id) {
        self.space.dir.lose_entry(name, false);
        return Err(self.space.lost_error());
      }
    }
    Ok(())
  }

  /// The handle id (for tests and diagnostics).
  pub fn id(&self) -> u64 {
    self.me
  }
}

impl RawLock for ShmLock {
  #[inline]
  fn try_lock(&self, description: &[u8], probe: bool) -> Result<Option<Acquired>> {
    let cell = &self.slot().cell;
    if let Some(a) = lock_word::try_fast(cell, self.me) {
      return Ok(Some(self.granted(a, description)));
    }
    match lock_word::try_once(cell, self.me, &self.env(true), probe) {
      Some(a) => Ok(Some(self.granted(a, description))),
      // A failed try is a slow path: where no watch reports losses, look here.
      None if !self.space.dir.watched() => self.check_not_lost().map(|()| None),
      None => Ok(None),
    }
  }

  fn lock(
    &self,
    description: &[u8],
    deadline: Option<Instant>,
    cancelled: &dyn Fn() -> bool,
  ) -> Result<std::result::Result<Acquired, Stop>> {
    let cell = &self.slot().cell;
    if let Some(a) = lock_word::try_fast(cell, self.me) {
      return Ok(Ok(self.granted(a, description)));
    }
    // Before sleeping behind a holder: a wait in a lost directory would wait on a table
    // nobody new will ever use (the watch may not have reported it yet, or there is none).
    self.check_not_lost()?;
    match lock_word::acquire(cell, self.me, &self.env(false), deadline, cancelled) {
      Ok(a) => {
        // Won after waiting: the loss may have come while we slept, and a holder that was
        // told of it (and then closed) may be whom we got the lock from, while our own notice
        // is still on the way. Look before handing the hold out; a hold nobody gets goes back
        // as it was found.
        if let Err(e) = self.check_not_lost() {
          let _ = if a.owner_died { self.abandon() } else { self.unlock() };
          return Err(e);
        }
        Ok(Ok(self.granted(a, description)))
      }
      Err(stop) => Ok(Err(stop)),
    }
  }

  fn unlock(&self) -> Result<()> {
    lock_word::release(&self.slot().cell, self.me, &self.env(false)).map_err(|_| not_held())
  }

  fn abandon(&self) -> Result<()> {
    lock_word::abandon(&self.slot().cell, self.me, &self.env(false)).map_err(|_| not_held())
  }

  fn interrupt(&self) {
    lock_word::wake_all(&self.slot().cell, &self.env(false));
  }

  fn uuid(&self) -> [u8; 16] {
    self.uuid
  }

  /// The slot's address: one per lock per process (a space maps each segment once).
  fn wait_key(&self) -> String {
    format!("shm {:p}", self.slot)
  }

  /// This process's liveness registration (`shm/liveness.rs`): a hold's word names our process
  /// slot, and the holder counts as alive exactly while that slot's liveness lock is held. A
  /// child that inherits this descriptor keeps it held after we die, so our holds stay alive
  /// until the child ends too; then the next contender's liveness check takes them over
  /// (`owner_died`). Every hold of this process shares the one descriptor.
  #[cfg(unix)]
  fn hold_descriptor(&self) -> Option<std::os::fd::RawFd> {
    self.space.liveness.me().descriptor()
  }
}

impl InspectLock for ShmLock {
  fn is_locked(&self) -> Result<bool> {
    Ok(self.space.owner_of(self.slot()).is_some_and(|o| o.alive))
  }

  fn owner(&self) -> Result<Option<OwnerInfo>> {
    Ok(self.space.owner_of(self.slot()))
  }
}

impl Losable for ShmLock {
  fn lock_dir(&self) -> Option<&LockDir> {
    Some(&self.space.dir)
  }

  fn splits_with(&self, entry: &str, replaced: bool) -> bool {
    crate::lock_dir::Member::splits_with(&*self.space, entry, replaced)
  }

  fn files_gone(&self) -> Option<String> {
    self.space.is_lost().then(|| self.space.lost_why.get().cloned().unwrap_or_default())
  }
}

impl ForceRelease for ShmLock {
  fn force_release(&self) -> Result<bool> {
    let slot = self.slot();
    Ok(lock_word::force_release(&slot.cell, self.me, &self.env(false), |holder| {
      self.space.settle(slot, holder);
    }))
  }
}

fn not_held() -> Error {
  Error::new(
    ErrorKind::NotHeld,
    "this handle does not hold the lock (it was released, or forcibly taken away)",
  )
}

/// How long a forced release waits for the holder it takes the lock from to finish acquiring
/// (see [`ShmSpace::settle`]) before freeing the lock all the same.
pub const FORCE_SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// How long the holder's record must stay unchanged before a forced release trusts it.
pub const FORCE_SETTLE_GRACE: Duration = Duration::from_millis(10);

impl ShmSpace {
  /// A space to look at the shm locks of an existing lock directory, `None` if it has none.
  /// Looking writes nothing: unless this process already uses the directory (its registered
  /// space is then used), the view registers nothing (no process slot, no liveness file), maps
  /// the tables read-only and repairs or creates nothing (a blank segment is read as "no locks
  /// there"). It must never be used to open a handle.
  pub fn existing(dir: Option<&Path>) -> Result<Option<Arc<ShmSpace>>> {
    let Some(lock_dir) = LockDir::shared_existing(dir)? else {
      return Ok(None);
    };
    let canonical = std::fs::canonicalize(lock_dir.path()).unwrap_or_else(|_| lock_dir.path().to_path_buf());
    if let Some(space) = ShmSpace::cached(&spaces(), &canonical) {
      return Ok(Some(space));
    }
    if !crate::shm::slot_table::has_segments(&lock_dir)? {
      return Ok(None);
    }
    let liveness = Liveness::observe(&lock_dir)?;
    // A view whose process table did not exist yet (read as zeros) is not kept: the table may
    // appear at any moment, and the next look should read it.
    let keep = liveness.has_process_table();
    let view = Arc::new(ShmSpace {
      dir: lock_dir,
      liveness,
      table: SlotTable::to_look(),
      lost: Default::default(),
      lost_why: OnceLock::new(),
    });
    if keep {
      spaces().views.insert(canonical, view.clone());
    }
    Ok(Some(view))
  }

  /// The holder of `name` (alive or not), without claiming a slot for it. `None`: free, or
  /// never used in this directory.
  pub fn inspect(&self, name: &LockName) -> Result<Option<OwnerInfo>> {
    Ok(self.table.find(&self.dir, name)?.and_then(|r| self.owner_of(r.slot())))
  }

  /// Every lock of this directory that has ever been opened, with its holder, in table order.
  pub fn list(&self) -> Result<Vec<(String, Option<OwnerInfo>)>> {
    Ok(
      self
        .table
        .all(&self.dir)?
        .into_iter()
        .map(|(name, r)| (name, self.owner_of(r.slot())))
        .collect(),
    )
  }

  /// Step 2 of a forced release (`lock_word::force_release`): the forcing handle now holds
  /// `slot`; wait until `holder`, whom it took the lock from, has finished acquiring (stored
  /// its token). Returns whether it was seen to (false: gave up after `FORCE_SETTLE_LIMIT`).
  ///
  /// A holder's record names it, with the token it was granted, once it has finished. But a
  /// holder that released and took the lock again through the fast path looks, until it
  /// stores its new token, exactly like one still holding its previous token: same word, same
  /// record, same counter. It is only ever a few instructions from storing it, so the answer
  /// is "finished" once the record names the holder with the counter's token and stays so for
  /// `FORCE_SETTLE_GRACE`. A holder whose process is dead will store nothing more. Waits at
  /// most `FORCE_SETTLE_LIMIT` (a holder stopped in the middle of acquiring).
  fn settle(&self, slot: &Slot, holder: u64) -> bool {
    use crate::sync::Ordering::Relaxed;
    let deadline = Instant::now() + FORCE_SETTLE_LIMIT;
    let mut seen = None;
    loop {
      if self.liveness.holder_is_dead(holder, &slot.record, &self.dir) {
        return true;
      }
      // The record first: a complete record (even seq, read with Acquire) makes the holder's
      // earlier counter store visible to the load that follows.
      let recorded = slot.record.read().filter(|r| r.holder == holder).map(|r| r.token);
      let now = recorded.filter(|&t| t == slot.cell.token.load(Relaxed));
      if now.is_some() && now == seen {
        return true;
      }
      seen = now;
      if Instant::now() >= deadline {
        return false;
      }
      std::thread::sleep(FORCE_SETTLE_GRACE);
    }
  }
}

impl ShmLock {
  /// A handle on `name` if the name already has a slot in an existing directory; `None`
  /// otherwise, with nothing created. For a forced release of a lock that may not exist.
  pub fn open_existing(name: &str, dir: Option<&Path>) -> Result<Option<ShmLock>> {
    let lock_name = LockName::new(name)?;
    let Some(space) = ShmSpace::existing(dir)? else {
      return Ok(None);
    };
    if space.table.find(&space.dir, &lock_name)?.is_none() {
      return Ok(None);
    }
    // The slot exists and slots are never freed, so this finds it rather than claiming one.
    ShmLock::open(name, dir).map(Some)
  }
}

// The shm backend's entries in the table of backends (`inspect.rs`): look, list, force.

/// The holder of shm lock `name` (alive or not), without creating anything.
pub fn look(name: &LockName, dir: Option<&Path>) -> Result<Seen> {
  match ShmSpace::existing(dir)? {
    Some(space) => space.inspect(name).map(Seen::from),
    None => Ok(Seen::default()),
  }
}

/// The shm locks of the directory. Unlike a stray file lock, an unusable shm lock table (a
/// damaged segment, or a foreign entry where a segment should be) fails the listing: it is not
/// one stray entry beside the locks but the table they all live in, every shm lock operation in
/// the directory fails on it too, and it must be noticed, not hidden.
pub fn list(dir: Option<&Path>) -> Result<Listing> {
  match ShmSpace::existing(dir)? {
    Some(space) => Ok((
      space.list()?.into_iter().map(|(name, owner)| (name, Seen::from(owner))).collect(),
      Vec::new(),
    )),
    None => Ok(Default::default()),
  }
}

/// End the current hold of shm lock `name`, whoever holds it (see [`ForceRelease`]). `Ok(false)`
/// if it was not held or never existed (nothing is created).
pub fn force_release(name: &str, dir: Option<&Path>) -> Result<bool> {
  match ShmLock::open_existing(name, dir)? {
    Some(lock) => lock.force_release(),
    None => Ok(false),
  }
}

#[cfg(all(test, unix))]
mod tests {
  use super::*;

  #[test]
  fn a_forced_release_waits_for_the_holder_to_finish_acquiring() {
    let p = crate::lock_dir::scratch_dir("force");
    let holder = ShmLock::open("mid", Some(&p)).unwrap();
    let forcer = ShmLock::open("mid", Some(&p)).unwrap();
    let slot = holder.slot();
    // The holder has won the word and stored its token, but not yet written its record: it is
    // in the middle of acquiring, as far as anyone can tell. The forced release waits for it,
    // up to the limit.
    let acquired = lock_word::try_fast(&slot.cell, holder.id()).unwrap();
    let started = Instant::now();
    assert!(!forcer.space.settle(slot, holder.id()));
    assert!(started.elapsed() >= FORCE_SETTLE_LIMIT);
    // Once it has finished acquiring, the record is trusted as soon as it stays put.
    holder.granted(acquired, b"");
    let started = Instant::now();
    assert!(forcer.space.settle(slot, holder.id()));
    let took = started.elapsed();
    assert!(took >= FORCE_SETTLE_GRACE && took < FORCE_SETTLE_LIMIT, "{took:?}");
    assert!(forcer.force_release().unwrap());
    assert_eq!(holder.unlock().unwrap_err().kind(), ErrorKind::NotHeld);
    let next = forcer.try_lock(b"", true).unwrap().unwrap();
    assert!(next.owner_died);
    assert!(next.token > acquired.token);
    std::fs::remove_dir_all(&p).unwrap();
  }
}
