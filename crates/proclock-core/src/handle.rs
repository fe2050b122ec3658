//! A lock handle: what a user holds. It layers, over any [`RawLock`] backend (a type parameter,
//! so the backend's hot path inlines into the handle's), the rules that are the same for every
//! backend:
//!
//! - **Reentrancy.** Acquiring again on a handle that holds fails with `Reentry`, unless the
//!   handle is reentrant; then holds are counted and the last `release()` releases.
//! - **One acquisition in flight.** Starting another while one waits fails with `Reentry`.
//! - **Close.** Releases a hold, cancels a pending wait; afterwards everything fails `Closed`.
//! - **Abandon.** The environment that owns the handle is going away (a worker thread being
//!   terminated): a hold is released as ABANDONED so its next holder sees `owner_died`.
//! - **Lost.** The lock directory, or the file the lock lives in, was deleted or moved while
//!   the handle used it (`lock_dir/mod.rs`, `lock_dir/watch.rs`): `lose()` makes the handle LOST, for
//!   good. A hold it had may no longer be exclusive (new processes take the same name in a new
//!   directory), so it is no longer reported as held, `release()` and every acquisition fail
//!   `Lost`, a pending wait is cancelled and fails `Lost`, and the `on_lost` callback (the
//!   holder's signal) runs once. The kernel or shared-memory hold itself is NOT given back at
//!   loss time: processes still on the old files keep being excluded by it until the user
//!   closes the handle, which gives it back as ABANDONED (the next holder there is told
//!   `owner_died`: the work done under the hold may have overlapped another holder's).
//! - **Waiting on a thread of our own.** `acquire_async` runs the wait on a proclock waiter
//!   thread (`waiter_pool.rs`), never on the caller's thread and never on a shared pool that
//!   other work needs.
//!
//! State machine (one atomic, so the waiter thread and the owning thread agree):
//!
//! ```text
//!   IDLE --try/acquire ok--> HELD --release (last)--> IDLE
//!   IDLE --acquire_async--> WAITING --waiter wins--> HELD
//!                           WAITING --timeout/cancel--> IDLE
//!   any --close/abandon--> CLOSED (terminal)
//!   IDLE/WAITING --lose--> LOST;  HELD --lose--> LOST_HELD;  LOST/LOST_HELD --close--> CLOSED
//! ```
//!
//! Only the waiter thread moves WAITING to HELD or IDLE; close/abandon move anything to CLOSED.
//! A waiter that wins the lock after its handle was closed (or lost) gives it straight back.
//!
//! `lose()` is the one transition made by a thread other than the owner's and the waiter's
//! (the directory watch). It CASes the state, but the owner's IDLE->HELD and HELD->IDLE are
//! plain stores (a CAS there would cost the uncontended acquire and release), which can
//! overwrite LOST in the instant between the owner's load and its store. So the loss is also a
//! sticky flag (`lost`, set first), which the owner reads beside the state in `begin` and
//! `release_as` (a plain load of the same cache line): an acquisition or release that raced the
//! loss completes as if it came just before it, and everything after it sees the loss.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
pub use crate::description::check_description;
use crate::raw_lock::{format_uuid, Acquired, InspectLock, OwnerInfo, RawLock, Stop};
use crate::waiter_pool;

const IDLE: u8 = 0;
const WAITING: u8 = 1;
const HELD: u8 = 2;
const CLOSED: u8 = 3;
/// Lost while idle or waiting.
const LOST: u8 = 4;
/// Lost while holding: the raw hold is still ours until close gives it back as ABANDONED.
const LOST_HELD: u8 = 5;

/// Called once when a handle is lost (the binding wakes the holder's JS signal with it).
pub type OnLost = Box<dyn FnOnce() + Send>;

/// How a hold ends. Every hold a handle has ever had ends through [`Handle::end_hold`] with one
/// of these, which decides what the next holder is told:
///
/// | way | when | the lock is left |
/// |-----|------|------------------|
/// | `Released` | `release()`, or `close()` of a held handle | free |
/// | `Undelivered` | a hold nobody was given: an abort or close that raced the grant, a wait won after a loss, `give_back()` | as the acquisition found it: free, or ABANDONED if it was taken over from a holder that died |
/// | `Abandoned` | the owning environment ends (`abandon()`, a handle dropped while holding) | ABANDONED |
/// | `Lost` | a lost handle that still had its hold is closed | ABANDONED |
///
/// ABANDONED means the next holder is told `owner_died`. An undelivered hold taken over from a
/// dead holder must stay ABANDONED: as far as anyone else can tell, that acquisition never
/// happened, and the dead holder's half-done work still needs repairing; a plain release there
/// would hide the death from everyone (the soak test found this). A lost hold is ABANDONED
/// because the work done under it may have overlapped another holder's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
  Released,
  Undelivered {
    /// The hold was taken over from a holder that died (`owner_died`).
    taken_over: bool,
  },
  Abandoned,
  Lost,
}

/// What the gatekeeping common to every acquisition decided (see `Handle::begin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Begin {
  /// Not holding: go ahead and acquire.
  Acquire,
  /// A reentrant re-acquisition of a hold this handle has: already counted, nothing to take.
  Reentered,
}

pub struct Handle<R: RawLock> {
  raw: R,
  reentrant: bool,
  description: String,
  state: AtomicU8,
  depth: AtomicU32,
  token: AtomicU64,
  owner_died: AtomicBool,
  cancel: AtomicBool,
  /// Sticky: the handle was lost (see the module comment for why a flag beside the state).
  lost: AtomicBool,
  lost_why: std::sync::OnceLock<String>,
  on_lost: std::sync::Mutex<Option<OnLost>>,
}

fn closed() -> Error {
  Error::new(ErrorKind::Closed, "the lock handle is closed")
}

impl<R: RawLock + 'static> Handle<R> {
  pub fn new(raw: R, reentrant: bool, description: String) -> Result<Handle<R>> {
    check_description(&description)?;
    Ok(Handle {
      raw,
      reentrant,
      description,
      state: AtomicU8::new(IDLE),
      depth: AtomicU32::new(0),
      token: AtomicU64::new(0),
      owner_died: AtomicBool::new(false),
      cancel: AtomicBool::new(false),
      lost: AtomicBool::new(false),
      lost_why: std::sync::OnceLock::new(),
      on_lost: std::sync::Mutex::new(None),
    })
  }

  /// [`Handle::new`], shared, and registered with its lock directory so that a loss of the
  /// directory (or of the lock's file) reaches it. Registering is off the hot path.
  pub fn shared(raw: R, reentrant: bool, description: String) -> Result<Arc<Handle<R>>> {
    let handle = Arc::new(Handle::new(raw, reentrant, description)?);
    handle.join_dir();
    Ok(handle)
  }

  /// Register with the lock directory (see [`Handle::shared`]). A loss swept just before we
  /// joined is caught by `files_gone` (the files we opened are no longer named) or by the
  /// directory's flag, which `join` checks under the registry's mutex.
  pub fn join_dir(self: &Arc<Self>) {
    if let Some(dir) = self.raw.lock_dir() {
      let member: Arc<dyn crate::lock_dir::Member> = self.clone();
      dir.join(&member);
      if let Some(why) = self.raw.files_gone() {
        self.lose(&why);
      }
    }
  }

  /// The directory this handle's lock lives in, or the lock's file, was deleted or moved: a
  /// hold may no longer be exclusive. Marks the handle LOST for good; cancels a pending wait
  /// (which then fails `Lost`); keeps the raw hold (see the module comment); runs `on_lost`.
  /// Idempotent; callable from any thread; never blocks on the lock.
  pub fn lose(&self, why: &str) {
    if let Some(notice) = self.mark_lost(why) {
      notice();
    }
  }

  /// [`Handle::lose`] without running `on_lost`, which is returned instead (for the directory's
  /// sweep, which marks every handle before telling anyone).
  fn mark_lost(&self, why: &str) -> Option<OnLost> {
    let _ = self.lost_why.set(why.to_owned());
    if self.lost.swap(true, SeqCst) {
      return None;
    }
    let mut s = self.state.load(Acquire);
    loop {
      let to = match s {
        IDLE | WAITING => LOST,
        HELD => LOST_HELD,
        _ => break,
      };
      match self.state.compare_exchange(s, to, AcqRel, Acquire) {
        Ok(_) => {
          if s == WAITING {
            self.cancel.store(true, Release);
            self.raw.interrupt();
          }
          break;
        }
        Err(now) => s = now,
      }
    }
    self.on_lost.lock().unwrap_or_else(|p| p.into_inner()).take()
  }

  /// Run `callback` once when the handle is lost (at once, on this thread, if it already is).
  /// Replaces a callback set earlier that has not run.
  pub fn on_lost(&self, callback: OnLost) {
    let mut slot = self.on_lost.lock().unwrap_or_else(|p| p.into_inner());
    if self.lost.load(SeqCst) {
      drop(slot);
      callback();
    } else {
      *slot = Some(callback);
    }
  }

  /// The handle was lost.
  pub fn is_lost(&self) -> bool {
    self.lost.load(Acquire)
  }

  /// The token of the hold that was lost, if the handle was holding when it was lost (and has
  /// not been closed since).
  pub fn lost_token(&self) -> Option<u64> {
    (self.is_lost() && matches!(self.state.load(Acquire), HELD | LOST_HELD)).then(|| self.token.load(Relaxed))
  }

  /// The message of this handle's `Lost` error, if it was lost.
  pub fn lost_message(&self) -> Option<String> {
    self.is_lost().then(|| self.lost_error().message().to_owned())
  }

  fn lost_error(&self) -> Error {
    crate::error::lost(self.lost_why.get().map_or("", String::as_str))
  }

  /// What a wait that ended without a hold reports when the handle was ended under it.
  fn ended(&self) -> Error {
    if self.is_lost() {
      self.lost_error()
    } else {
      closed()
    }
  }

  /// The description of a hold: the given one (checked) or the handle's default (checked once,
  /// in `new`).
  #[inline]
  fn desc<'a>(&'a self, description: Option<&'a str>) -> Result<&'a [u8]> {
    match description {
      None => Ok(self.description.as_bytes()),
      Some(d) => check_description(d).map(|()| d.as_bytes()),
    }
  }

  /// Gatekeeping common to every acquisition.
  #[inline]
  fn begin(&self) -> Result<Begin> {
    match self.state.load(Acquire) {
      IDLE if !self.lost.load(Relaxed) => Ok(Begin::Acquire),
      HELD if self.reentrant && !self.lost.load(Relaxed) => {
        self.depth.fetch_add(1, Relaxed);
        Ok(Begin::Reentered)
      }
      HELD if !self.lost.load(Relaxed) => Err(Error::new(
        ErrorKind::Reentry,
        "this handle already holds the lock (create it with reentrant: true to nest holds)",
      )),
      WAITING => Err(Error::new(ErrorKind::Reentry, "an acquisition is already pending on this handle")),
      CLOSED => Err(closed()),
      _ => Err(self.lost_error()),
    }
  }

  #[inline]
  fn now_held(&self, a: Acquired) {
    self.token.store(a.token, Relaxed);
    self.owner_died.store(a.owner_died, Relaxed);
    self.depth.store(1, Relaxed);
  }

  /// One try, never waits. `Ok(true)` if this handle now holds the lock. Takes over from a
  /// holder whose process is dead.
  #[inline]
  pub fn try_acquire(&self, description: Option<&str>) -> Result<bool> {
    self.try_acquire_with(description, true)
  }

  /// The synchronous first step of a waiting acquisition: takes the lock only if it is free (or
  /// abandoned), without the liveness probe, which the wait that follows does itself.
  #[inline]
  pub fn try_acquire_uncontended(&self, description: Option<&str>) -> Result<bool> {
    self.try_acquire_with(description, false)
  }

  #[inline]
  fn try_acquire_with(&self, description: Option<&str>, probe: bool) -> Result<bool> {
    if self.begin()? == Begin::Reentered {
      return Ok(true);
    }
    match self.raw.try_lock(self.desc(description)?, probe)? {
      Some(a) => {
        self.now_held(a);
        self.state.store(HELD, Release);
        Ok(true)
      }
      None => Ok(false),
    }
  }

  /// Wait on the calling thread. `timeout` `None` waits forever; zero is a single try.
  pub fn acquire_blocking(&self, timeout: Option<Duration>, description: Option<&str>) -> Result<()> {
    if self.begin()? == Begin::Reentered {
      return Ok(());
    }
    let desc = self.desc(description)?;
    let deadline = timeout.map(|t| Instant::now() + t);
    match self.raw.lock_uncancellable(desc, deadline)? {
      // Lost while this thread waited (nothing can interrupt a synchronous wait): the hold
      // was never delivered, so it goes back as the acquisition found it.
      Ok(a) if self.lost.load(Acquire) => {
        let _ = self.end_hold(HoldEnd::Undelivered {
          taken_over: a.owner_died,
        });
        Err(self.lost_error())
      }
      Ok(a) => {
        self.now_held(a);
        self.state.store(HELD, Release);
        Ok(())
      }
      Err(_) => Err(timed_out(timeout)),
    }
  }

  /// Start a wait on a proclock waiter thread; `done` is called (on that thread) with the
  /// outcome. Errors that can be known at once (closed, reentry, bad description) are returned
  /// here and `done` is not called. A reentrant re-acquisition completes before returning.
  pub fn acquire_async(
    self: &Arc<Self>,
    timeout: Option<Duration>,
    description: Option<String>,
    done: impl FnOnce(Result<()>) + Send + 'static,
  ) -> Result<()> {
    if self.begin()? == Begin::Reentered {
      done(Ok(()));
      return Ok(());
    }
    self.desc(description.as_deref())?;
    let deadline = timeout.map(|t| Instant::now() + t);
    if self.state.compare_exchange(IDLE, WAITING, AcqRel, Acquire).is_err() {
      return Err(closed());
    }
    self.cancel.store(false, Relaxed);
    let me = self.clone();
    waiter_pool::run(Box::new(move || {
      let desc = description.as_deref().unwrap_or(&me.description).as_bytes();
      let cancelled = || me.cancel.load(Acquire);
      let outcome = me.raw.lock(desc, deadline, &cancelled);
      done(me.finish_wait(outcome, timeout));
    }));
    Ok(())
  }

  /// The waiter thread's side of the state machine.
  fn finish_wait(&self, outcome: Result<std::result::Result<Acquired, Stop>>, timeout: Option<Duration>) -> Result<()> {
    match outcome {
      Ok(Ok(a)) => {
        self.now_held(a);
        if self.state.compare_exchange(WAITING, HELD, AcqRel, Acquire).is_ok() {
          return Ok(());
        }
        // Closed (or lost) while we were winning: nobody wants this hold.
        let _ = self.end_hold(HoldEnd::Undelivered {
          taken_over: a.owner_died,
        });
        Err(self.ended())
      }
      other => {
        let was_waiting = self.state.compare_exchange(WAITING, IDLE, AcqRel, Acquire).is_ok();
        match other {
          Ok(Err(Stop::TimedOut)) => Err(timed_out(timeout)),
          Ok(Err(Stop::Cancelled)) if was_waiting => Err(Error::new(ErrorKind::Cancelled, "the acquisition was cancelled")),
          Ok(Err(Stop::Cancelled)) => Err(self.ended()),
          Err(e) => Err(e),
          Ok(Ok(_)) => unreachable!("handled above"),
        }
      }
    }
  }

  /// Cancel a pending `acquire_async` (abort signal). No effect if none is pending.
  pub fn cancel(&self) {
    if self.state.load(Acquire) == WAITING {
      self.cancel.store(true, Release);
      self.raw.interrupt();
    }
  }

  #[inline]
  pub fn release(&self) -> Result<()> {
    self.release_as(HoldEnd::Released)
  }

  /// Give back a hold that was never delivered to its caller (an abort that raced the grant):
  /// [`HoldEnd::Undelivered`], as the acquisition found the lock.
  pub fn give_back(&self) -> Result<()> {
    self.release_as(HoldEnd::Undelivered {
      taken_over: self.owner_died.load(Relaxed),
    })
  }

  /// The owner's side of ending a hold: checks that this handle holds, counts reentrant holds
  /// down, and ends the last one `how`.
  #[inline]
  fn release_as(&self, how: HoldEnd) -> Result<()> {
    match self.state.load(Acquire) {
      HELD if !self.lost.load(Relaxed) => {}
      CLOSED => return Err(closed()),
      IDLE | WAITING if !self.lost.load(Relaxed) => {
        return Err(Error::new(ErrorKind::NotHeld, "this handle does not hold the lock"))
      }
      _ => return Err(self.lost_error()),
    }
    if self.depth.load(Relaxed) > 1 {
      self.depth.fetch_sub(1, Relaxed);
      return Ok(());
    }
    self.depth.store(0, Relaxed);
    self.state.store(IDLE, Release);
    self.end_hold(how)
  }

  /// Release any hold and cancel any wait; idempotent.
  pub fn close(&self) {
    self.shut(HoldEnd::Released);
  }

  /// The owning environment is going away: a hold becomes ABANDONED (its next holder sees
  /// `owner_died`), a pending wait is cancelled. Idempotent.
  pub fn abandon(&self) {
    self.shut(HoldEnd::Abandoned);
  }

  /// Close: the handle becomes CLOSED for good; a hold it had ends `how`, or [`HoldEnd::Lost`]
  /// if the handle was lost; a pending wait is cancelled.
  fn shut(&self, how: HoldEnd) {
    match self.state.swap(CLOSED, AcqRel) {
      HELD | LOST_HELD => {
        let how = if self.lost.load(Acquire) { HoldEnd::Lost } else { how };
        let _ = self.end_hold(how);
      }
      WAITING => {
        self.cancel.store(true, Release);
        self.raw.interrupt();
      }
      _ => {}
    }
    // Nobody is left to tell of a loss: let the notice (a JS function) go now.
    drop(self.on_lost.lock().unwrap_or_else(|p| p.into_inner()).take());
  }

  pub fn held(&self) -> bool {
    self.state.load(Acquire) == HELD && !self.lost.load(Relaxed)
  }

  pub fn closed(&self) -> bool {
    self.state.load(Acquire) == CLOSED
  }

  /// Holding, or waiting to.
  pub fn busy(&self) -> bool {
    matches!(self.state.load(Acquire), HELD | WAITING) && !self.lost.load(Relaxed)
  }

  /// Fencing token of the current hold.
  pub fn token(&self) -> Option<u64> {
    self.held().then(|| self.token.load(Relaxed))
  }

  /// The current hold was taken over from a holder that died holding it.
  pub fn owner_died(&self) -> bool {
    self.held() && self.owner_died.load(Relaxed)
  }

  /// The descriptor whose lifetime keeps this handle's current hold (see
  /// [`RawLock::hold_descriptor`]); `None` when it holds nothing. Valid until the hold ends.
  #[cfg(unix)]
  pub fn hold_descriptor(&self) -> Option<std::os::fd::RawFd> {
    if self.held() {
      self.raw.hold_descriptor()
    } else {
      None
    }
  }

  pub fn uuid(&self) -> String {
    format_uuid(&self.raw.uuid())
  }

}

/// Looking at the lock, for a backend that can ([`InspectLock`]).
impl<R: RawLock + InspectLock + 'static> Handle<R> {
  pub fn is_locked(&self) -> Result<bool> {
    if self.closed() {
      return Err(closed());
    }
    self.raw.is_locked()
  }

  pub fn owner(&self) -> Result<Option<OwnerInfo>> {
    if self.closed() {
      return Err(closed());
    }
    self.raw.owner()
  }
}

impl<R: RawLock> Handle<R> {
  /// The one place a hold of this handle ends (see [`HoldEnd`]). The caller has already moved
  /// the state machine off HELD, or the hold was never in it (undelivered).
  #[inline]
  fn end_hold(&self, how: HoldEnd) -> Result<()> {
    match how {
      HoldEnd::Released | HoldEnd::Undelivered { taken_over: false } => self.raw.unlock(),
      HoldEnd::Undelivered { taken_over: true } | HoldEnd::Abandoned | HoldEnd::Lost => self.raw.abandon(),
    }
  }
}

impl<R: RawLock> Drop for Handle<R> {
  /// A handle dropped while holding died holding (nobody can release it any more).
  fn drop(&mut self) {
    if matches!(*self.state.get_mut(), HELD | LOST_HELD) {
      let _ = self.end_hold(HoldEnd::Abandoned);
    }
  }
}

impl<R: RawLock + 'static> crate::lock_dir::Member for Handle<R> {
  fn splits_with(&self, entry: &str, replaced: bool) -> bool {
    self.raw.splits_with(entry, replaced)
  }
  fn files_gone(&self) -> Option<String> {
    self.raw.files_gone()
  }
  fn lose(&self, why: &str) -> Option<crate::lock_dir::Notice> {
    self.mark_lost(why)
  }
}

fn timed_out(timeout: Option<Duration>) -> Error {
  let ms = timeout.map_or(f64::INFINITY, |t| t.as_secs_f64() * 1000.0);
  Error::new(ErrorKind::Timeout, format!("timed out after {ms} ms waiting for the lock"))
}
