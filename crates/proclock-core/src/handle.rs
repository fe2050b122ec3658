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
//! - **Waiting on a thread of our own.** `acquire_async` queues the wait with the other pending
//!   waits of this process on the same lock (`shared_wait.rs`), served by one proclock waiter
//!   thread (`waiter_pool.rs`), never the caller's thread and never a shared pool that other
//!   work needs. When no thread can be started, it fails at once (`Io`), never waits on the
//!   caller's thread.
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

// From `sync.rs`: std atomics, or loom's in the model check of this state machine
// (`tests/loom_handle.rs`).
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
pub use crate::description::check_description;
use crate::raw_lock::{format_uuid, Acquired, InspectLock, OwnerInfo, RawLock, Stop};
use crate::shared_wait::{self, Waiter};

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

/// How a hold ends. Every hold a handle has ever had ends through `Handle::end_hold` with one
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
  #[cfg(not(loom))]
  pub fn shared(raw: R, reentrant: bool, description: String) -> Result<Arc<Handle<R>>> {
    let handle = Arc::new(Handle::new(raw, reentrant, description)?);
    handle.join_dir();
    Ok(handle)
  }

  /// Register with the lock directory (see [`Handle::shared`]). A loss swept just before we
  /// joined is caught by `files_gone` (the files we opened are no longer named) or by the
  /// directory's flag, which `join` checks under the registry's mutex.
  #[cfg(not(loom))]
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
    // The common case alone first, as one compare: a `match` over every state (and the `lost`
    // guards) compiles to a chain of compares that the uncontended pair pays on every call.
    let state = self.state.load(Acquire);
    if state == IDLE && !self.lost.load(Relaxed) {
      return Ok(Begin::Acquire);
    }
    self.begin_otherwise(state)
  }

  #[cold]
  fn begin_otherwise(&self, state: u8) -> Result<Begin> {
    match state {
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
        self.set_state(HELD);
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
        self.set_state(HELD);
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
    let waiter = Waiter {
      deadline,
      cancelled: Box::new({
        let me = self.clone();
        move || me.cancel.load(Acquire)
      }),
      attempt: Box::new({
        let me = self.clone();
        move |until, stop| {
          let desc = description.as_deref().unwrap_or(&me.description).as_bytes();
          me.raw.lock(desc, until, stop)
        }
      }),
      finish: Box::new({
        let me = self.clone();
        move |outcome| done(me.finish_wait(outcome, timeout))
      }),
    };
    if let Err(failed) = shared_wait::enqueue(self.raw.wait_key(), waiter, || self.raw.interrupt()) {
      // No thread could be started to wait on: the acquisition ends at once with that error,
      // through the same delivery as any other outcome (so the caller's promise settles now,
      // on this thread, and the state goes back to IDLE, or the handle's close is finished).
      let (e, waiter) = *failed;
      (waiter.finish)(Err(e));
    }
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
        self.raw.close();
        Err(self.ended())
      }
      other => {
        let was_waiting = self.state.compare_exchange(WAITING, IDLE, AcqRel, Acquire).is_ok();
        if !was_waiting {
          // Closed while waiting: `end` left the descriptors to us, the last user.
          self.raw.close();
        }
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
    // As in `begin`: the common case (held, not lost) as one compare, the rest out of line.
    let state = self.state.load(Acquire);
    if state != HELD || self.lost.load(Relaxed) {
      return Err(self.not_releasable(state));
    }
    if self.depth.load(Relaxed) > 1 {
      self.depth.fetch_sub(1, Relaxed);
      return Ok(());
    }
    self.depth.store(0, Relaxed);
    self.set_state(IDLE);
    self.end_hold(how)
  }

  /// Why a hold cannot be ended in `state` (anything but HELD and not lost).
  #[cold]
  fn not_releasable(&self, state: u8) -> Error {
    match state {
      CLOSED => closed(),
      IDLE | WAITING if !self.lost.load(Relaxed) => Error::new(ErrorKind::NotHeld, "this handle does not hold the lock"),
      _ => self.lost_error(),
    }
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
  /// if the handle was lost; a pending wait is cancelled; the raw lock lets go of its
  /// descriptors (`RawLock::close`) once nothing uses it any more.
  fn shut(&self, how: HoldEnd) {
    match self.state.swap(CLOSED, AcqRel) {
      HELD | LOST_HELD => {
        let how = if self.lost.load(Acquire) { HoldEnd::Lost } else { how };
        let _ = self.end_hold(how);
        self.raw.close();
      }
      // The waiting thread still uses the handle; `finish_wait` closes it when done.
      WAITING => {
        self.cancel.store(true, Release);
        self.raw.interrupt();
      }
      CLOSED => {}
      _ => self.raw.close(),
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
  /// The owner's plain store of the state (IDLE->HELD, HELD->IDLE; see the module comment for
  /// why not a CAS). Under `--cfg loom` it is a swap: loom can order a plain store before a
  /// concurrent read-modify-write of the same atomic that already read the value before it
  /// (loom issue 254, tokio-rs/loom), a history the memory model forbids, which made the model
  /// of `release` racing `lose` fail on a run that cannot happen. Every other write of the
  /// state is a read-modify-write, so a swap here allows the same outcomes a store does: it
  /// lands either before the watch's CAS (which then fails and retries) or after it.
  #[inline(always)]
  fn set_state(&self, to: u8) {
    #[cfg(not(loom))]
    self.state.store(to, Release);
    #[cfg(loom)]
    self.state.swap(to, AcqRel);
  }

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
    if matches!(self.state.load(Acquire), HELD | LOST_HELD) {
      let _ = self.end_hold(HoldEnd::Abandoned);
    }
  }
}

#[cfg(not(loom))]
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

/// `Handle` over a fake raw lock: the state machine alone, with the races it exists for made
/// to happen on purpose (a gate holds the waiter inside `lock` until the test lets it win).
/// The backends' own behaviour is tested against real processes elsewhere.
#[cfg(all(test, not(loom)))]
mod tests {
  use super::*;
  use crate::raw_lock::Losable;
  use std::sync::mpsc;
  use std::sync::{Condvar, Mutex};

  /// One in-process lock, as a backend would keep it, counting what the handle asked of it.
  /// Shared, so a test can look at it after the handle is gone.
  #[derive(Default, Clone)]
  struct Fake(Arc<Inner>);

  #[derive(Default)]
  struct Inner {
    state: Mutex<FakeState>,
    changed: Condvar,
  }

  impl std::ops::Deref for Fake {
    type Target = Inner;
    fn deref(&self) -> &Inner {
      &self.0
    }
  }

  #[derive(Default)]
  struct FakeState {
    held: bool,
    /// Left ABANDONED: the next holder is told `owner_died`.
    abandoned: bool,
    token: u64,
    unlocks: u32,
    abandons: u32,
    /// `Some(open)`: `lock` waits until the gate opens, then wins whatever else happened
    /// (cancel, close, loss): a grant racing its cancellation.
    gate: Option<bool>,
    /// A waiter is inside `lock`.
    waiting: bool,
  }

  impl Fake {
    fn with(f: impl FnOnce(&mut FakeState)) -> Fake {
      let fake = Fake::default();
      f(&mut fake.state.lock().unwrap());
      fake
    }
    fn grant(s: &mut FakeState) -> Acquired {
      s.held = true;
      s.token += 1;
      Acquired {
        token: s.token,
        owner_died: std::mem::take(&mut s.abandoned),
      }
    }
  }

  impl Losable for Fake {}

  impl RawLock for Fake {
    fn try_lock(&self, _description: &[u8], _probe: bool) -> Result<Option<Acquired>> {
      let mut s = self.state.lock().unwrap();
      Ok((!s.held).then(|| Fake::grant(&mut s)))
    }
    fn lock(
      &self,
      _description: &[u8],
      deadline: Option<Instant>,
      cancelled: &dyn Fn() -> bool,
    ) -> Result<std::result::Result<Acquired, Stop>> {
      let mut s = self.state.lock().unwrap();
      s.waiting = true;
      self.changed.notify_all();
      let outcome = loop {
        match s.gate {
          Some(true) => break Ok(Fake::grant(&mut s)),
          Some(false) => {}
          None if !s.held => break Ok(Fake::grant(&mut s)),
          None if cancelled() => break Err(Stop::Cancelled),
          None if deadline.is_some_and(|d| Instant::now() >= d) => break Err(Stop::TimedOut),
          None => {}
        }
        s = self.changed.wait_timeout(s, Duration::from_millis(5)).unwrap().0;
      };
      s.waiting = false;
      Ok(outcome)
    }
    fn unlock(&self) -> Result<()> {
      let mut s = self.state.lock().unwrap();
      assert!(s.held, "unlock of a lock not held");
      (s.held, s.unlocks) = (false, s.unlocks + 1);
      self.changed.notify_all();
      Ok(())
    }
    fn abandon(&self) -> Result<()> {
      let mut s = self.state.lock().unwrap();
      assert!(s.held, "abandon of a lock not held");
      (s.held, s.abandoned, s.abandons) = (false, true, s.abandons + 1);
      self.changed.notify_all();
      Ok(())
    }
    fn interrupt(&self) {
      let _s = self.state.lock().unwrap();
      self.changed.notify_all();
    }
    fn uuid(&self) -> [u8; 16] {
      [7; 16]
    }
    fn wait_key(&self) -> String {
      format!("fake {:p}", Arc::as_ptr(&self.0))
    }
  }

  fn handle(fake: Fake, reentrant: bool) -> Arc<Handle<Fake>> {
    Arc::new(Handle::new(fake, reentrant, String::new()).unwrap())
  }

  fn state(h: &Handle<Fake>) -> std::sync::MutexGuard<'_, FakeState> {
    h.raw.state.lock().unwrap()
  }

  /// Read the fake's state (one lock at a time: two `state` guards in one expression deadlock).
  fn look<T>(h: &Handle<Fake>, f: impl FnOnce(&FakeState) -> T) -> T {
    f(&state(h))
  }

  /// Start a wait; the receiver gets its outcome.
  fn wait(h: &Arc<Handle<Fake>>) -> mpsc::Receiver<Result<()>> {
    let (tx, rx) = mpsc::channel();
    h.acquire_async(None, None, move |r| tx.send(r).unwrap()).unwrap();
    // The waiter is inside the raw `lock` before the test races it.
    let mut s = state(h);
    while !s.waiting {
      s = h.raw.changed.wait(s).unwrap();
    }
    rx
  }

  fn open_gate(h: &Handle<Fake>) {
    state(h).gate = Some(true);
    h.raw.changed.notify_all();
  }

  fn outcome(rx: &mpsc::Receiver<Result<()>>) -> std::result::Result<(), ErrorKind> {
    rx.recv_timeout(Duration::from_secs(10)).expect("the wait ended").map_err(|e| e.kind())
  }

  #[test]
  fn reentrant_holds_are_counted_and_only_the_last_release_unlocks() {
    let h = handle(Fake::default(), true);
    for _ in 0..3 {
      assert!(h.try_acquire(None).unwrap());
    }
    let token = h.token();
    h.acquire_blocking(None, None).unwrap();
    let rx = {
      let (tx, rx) = mpsc::channel();
      h.acquire_async(None, None, move |r| tx.send(r).unwrap()).unwrap();
      rx
    };
    assert_eq!(outcome(&rx), Ok(()), "a reentrant async acquisition completes at once");
    assert_eq!(h.token(), token, "nested holds are the same hold");
    for _ in 0..4 {
      h.release().unwrap();
      assert!(h.held());
      assert_eq!(state(&h).unlocks, 0);
    }
    h.release().unwrap();
    assert!(!h.held());
    assert_eq!(look(&h, |s| (s.unlocks, s.held)), (1, false));
    assert_eq!(h.release().unwrap_err().kind(), ErrorKind::NotHeld);

    let once = handle(Fake::default(), false);
    assert!(once.try_acquire(None).unwrap());
    assert_eq!(once.try_acquire(None).unwrap_err().kind(), ErrorKind::Reentry);
    once.release().unwrap();
    assert_eq!(once.release().unwrap_err().kind(), ErrorKind::NotHeld);
  }

  #[test]
  fn a_close_racing_the_grant_gives_the_hold_back_as_it_was_found() {
    for taken_over in [false, true] {
      let h = handle(Fake::with(|s| (s.gate, s.abandoned) = (Some(false), taken_over)), false);
      let rx = wait(&h);
      assert_eq!(h.try_acquire(None).unwrap_err().kind(), ErrorKind::Reentry, "one acquisition at a time");
      h.close();
      open_gate(&h);
      assert_eq!(outcome(&rx), Err(ErrorKind::Closed));
      let s = state(&h);
      assert!(!s.held, "nobody was given the hold, so nobody keeps it");
      // Taken over from a dead holder: still ABANDONED, so the next holder is still told.
      assert_eq!((s.unlocks, s.abandons, s.abandoned), (u32::from(!taken_over), u32::from(taken_over), taken_over));
      drop(s);
      assert!(!h.held());
      assert_eq!(h.try_acquire(None).unwrap_err().kind(), ErrorKind::Closed);
    }
  }

  #[test]
  fn a_give_back_after_a_takeover_leaves_the_death_for_the_next_holder() {
    let h = handle(Fake::with(|s| s.abandoned = true), false);
    assert!(h.try_acquire(None).unwrap());
    assert!(h.owner_died());
    h.give_back().unwrap();
    assert!(state(&h).abandoned, "an undelivered takeover goes back ABANDONED");
    assert!(h.try_acquire(None).unwrap());
    assert!(h.owner_died(), "the next holder is still told");
    h.release().unwrap();
    assert!(!state(&h).abandoned, "a delivered hold released normally ends the death's news");

    // Without a takeover, a give-back is a release.
    assert!(h.try_acquire(None).unwrap());
    assert!(!h.owner_died());
    h.give_back().unwrap();
    assert_eq!(look(&h, |s| (s.abandoned, s.abandons, s.unlocks)), (false, 1, 2), "a release");

    // Abandon (the environment ends) and drop while holding leave it ABANDONED.
    assert!(h.try_acquire(None).unwrap());
    h.abandon();
    assert!(state(&h).abandoned);
    let fake = Fake::default();
    {
      let dropped = Handle::new(fake.clone(), false, String::new()).unwrap();
      assert!(dropped.try_acquire(None).unwrap());
    }
    let s = fake.state.lock().unwrap();
    assert_eq!((s.held, s.abandoned), (false, true), "a handle dropped holding died holding");
  }

  #[test]
  fn cancelling_a_wait_leaves_the_handle_idle_and_usable() {
    let h = handle(Fake::with(|s| s.held = true), false);
    let rx = wait(&h);
    assert!(h.busy() && !h.held());
    h.cancel();
    assert_eq!(outcome(&rx), Err(ErrorKind::Cancelled));
    assert!(!h.busy());
    // The lock is still someone else's; once it is free, the same handle takes it.
    assert!(!h.try_acquire(None).unwrap());
    state(&h).held = false;
    assert!(h.try_acquire(None).unwrap());
    h.release().unwrap();
    // A cancel with nothing pending does nothing.
    h.cancel();
    assert!(h.try_acquire(None).unwrap());

    // A cancel that loses the race with the grant: the wait succeeds and the hold is delivered.
    h.release().unwrap();
    state(&h).gate = Some(false);
    let rx = wait(&h);
    h.cancel();
    open_gate(&h);
    assert_eq!(outcome(&rx), Ok(()));
    assert!(h.held());
    h.release().unwrap();
    assert_eq!(state(&h).unlocks, 3);
  }

  #[test]
  fn a_lost_handle_reports_its_loss_and_gives_its_hold_back_abandoned_at_close() {
    let h = handle(Fake::default(), true);
    let told = Arc::new(AtomicU32::new(0));
    let t = told.clone();
    h.on_lost(Box::new(move || {
      t.fetch_add(1, SeqCst);
    }));
    assert!(h.try_acquire(None).unwrap());
    let token = h.token().unwrap();
    h.lose("gone");
    h.lose("gone again");
    assert_eq!(told.load(SeqCst), 1, "the holder is told once");
    assert!(h.is_lost() && !h.held() && !h.busy());
    assert_eq!(h.lost_token(), Some(token));
    assert_eq!(h.release().unwrap_err().kind(), ErrorKind::Lost);
    assert_eq!(h.try_acquire(None).unwrap_err().kind(), ErrorKind::Lost);
    assert!(h.lost_message().unwrap().starts_with("gone"));
    assert!(state(&h).held, "the raw hold keeps excluding processes on the old files");
    h.close();
    let s = state(&h);
    assert_eq!((s.held, s.abandoned, s.unlocks), (false, true, 0), "a lost hold goes back ABANDONED");
    drop(s);
    assert_eq!(h.lost_token(), None);

    // Lost while waiting: the wait is cancelled and fails Lost; a hold won anyway goes back.
    for gate in [None, Some(false)] {
      let h = handle(Fake::with(|s| (s.held, s.gate) = (gate.is_none(), gate)), false);
      let rx = wait(&h);
      h.lose("moved");
      if gate.is_some() {
        open_gate(&h);
      }
      assert_eq!(outcome(&rx), Err(ErrorKind::Lost));
      assert!(!h.held());
      if gate.is_some() {
        assert_eq!(look(&h, |s| (s.held, s.unlocks)), (false, 1), "a hold won after the loss goes back");
      }
      // A callback set after the loss runs at once.
      let ran = Arc::new(AtomicBool::new(false));
      let r = ran.clone();
      h.on_lost(Box::new(move || r.store(true, SeqCst)));
      assert!(ran.load(SeqCst));
    }
  }
}
