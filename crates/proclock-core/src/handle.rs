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
//! ```
//!
//! Only the waiter thread moves WAITING to HELD or IDLE; close/abandon move anything to CLOSED.
//! A waiter that wins the lock after its handle was closed gives it straight back.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::holder_record::MAX_DESCRIPTION_BYTES;
use crate::raw_lock::{format_uuid, Acquired, OwnerInfo, RawLock, Stop};
use crate::shared_wait::{self, Waiter};

const IDLE: u8 = 0;
const WAITING: u8 = 1;
const HELD: u8 = 2;
const CLOSED: u8 = 3;

pub struct Handle<R: RawLock> {
  raw: R,
  reentrant: bool,
  description: String,
  state: AtomicU8,
  depth: AtomicU32,
  token: AtomicU64,
  owner_died: AtomicBool,
  cancel: AtomicBool,
}

/// Check a description's length (UTF-8 bytes).
pub fn check_description(description: &str) -> Result<()> {
  if description.len() > MAX_DESCRIPTION_BYTES {
    return Err(Error::new(
      ErrorKind::InvalidArgument,
      format!(
        "description is {} UTF-8 bytes; at most {MAX_DESCRIPTION_BYTES} are allowed",
        description.len()
      ),
    ));
  }
  Ok(())
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
    })
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

  /// Gatekeeping common to every acquisition. `Ok(true)`: a reentrant re-acquisition that
  /// has already been counted; `Ok(false)`: go ahead and acquire.
  #[inline]
  fn begin(&self) -> Result<bool> {
    match self.state.load(Acquire) {
      IDLE => Ok(false),
      HELD if self.reentrant => {
        self.depth.fetch_add(1, Relaxed);
        Ok(true)
      }
      HELD => Err(Error::new(
        ErrorKind::Reentry,
        "this handle already holds the lock (create it with reentrant: true to nest holds)",
      )),
      WAITING => Err(Error::new(ErrorKind::Reentry, "an acquisition is already pending on this handle")),
      _ => Err(closed()),
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
    if self.begin()? {
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
    if self.begin()? {
      return Ok(());
    }
    let desc = self.desc(description)?;
    let deadline = timeout.map(|t| Instant::now() + t);
    match self.raw.lock_uncancellable(desc, deadline)? {
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
    if self.begin()? {
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
        // Closed while we were winning: nobody wants this hold.
        let _ = self.hand_back(a.owner_died);
        self.raw.close();
        Err(closed())
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
          Ok(Err(Stop::Cancelled)) => Err(closed()),
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
    self.end_hold(false)
  }

  /// Give back a hold that was never delivered to its caller (an abort that raced the grant).
  /// As `release`, except that a hold taken over from a holder that died is given back as
  /// ABANDONED (the file backend: without writing "free"), so the next holder is still told
  /// `owner_died`: as far as anyone else can tell, this acquisition never happened, and the
  /// dead holder's half-done work still needs repairing. A plain release here would hide the
  /// death from everyone (the soak test found this).
  pub fn give_back(&self) -> Result<()> {
    self.end_hold(true)
  }

  #[inline]
  fn end_hold(&self, undelivered: bool) -> Result<()> {
    match self.state.load(Acquire) {
      HELD => {}
      CLOSED => return Err(closed()),
      _ => return Err(Error::new(ErrorKind::NotHeld, "this handle does not hold the lock")),
    }
    if self.depth.load(Relaxed) > 1 {
      self.depth.fetch_sub(1, Relaxed);
      return Ok(());
    }
    self.depth.store(0, Relaxed);
    self.state.store(IDLE, Release);
    if undelivered {
      self.hand_back(self.owner_died.load(Relaxed))
    } else {
      self.raw.unlock()
    }
  }

  /// End a hold nobody was given, as the acquisition found the lock: taken over from a holder
  /// that died, it goes back ABANDONED, so the next holder is still told (see `give_back`).
  fn hand_back(&self, owner_died: bool) -> Result<()> {
    if owner_died {
      self.raw.abandon()
    } else {
      self.raw.unlock()
    }
  }

  /// Release any hold and cancel any wait; idempotent.
  pub fn close(&self) {
    self.end(false);
  }

  /// The owning environment is going away: a hold becomes ABANDONED (its next holder sees
  /// `owner_died`), a pending wait is cancelled. Idempotent.
  pub fn abandon(&self) {
    self.end(true);
  }

  fn end(&self, abandon: bool) {
    match self.state.swap(CLOSED, AcqRel) {
      HELD => {
        let _ = if abandon { self.raw.abandon() } else { self.raw.unlock() };
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
  }

  pub fn held(&self) -> bool {
    self.state.load(Acquire) == HELD
  }

  pub fn closed(&self) -> bool {
    self.state.load(Acquire) == CLOSED
  }

  /// Holding, or waiting to.
  pub fn busy(&self) -> bool {
    matches!(self.state.load(Acquire), HELD | WAITING)
  }

  /// Fencing token of the current hold.
  pub fn token(&self) -> Option<u64> {
    self.held().then(|| self.token.load(Relaxed))
  }

  /// The current hold was taken over from a holder that died holding it.
  pub fn owner_died(&self) -> bool {
    self.held() && self.owner_died.load(Relaxed)
  }

  pub fn uuid(&self) -> String {
    format_uuid(&self.raw.uuid())
  }

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

impl<R: RawLock> Drop for Handle<R> {
  /// A handle dropped while holding died holding (nobody can release it any more).
  fn drop(&mut self) {
    if *self.state.get_mut() == HELD {
      let _ = self.raw.abandon();
    }
  }
}

fn timed_out(timeout: Option<Duration>) -> Error {
  let ms = timeout.map_or(f64::INFINITY, |t| t.as_secs_f64() * 1000.0);
  Error::new(ErrorKind::Timeout, format!("timed out after {ms} ms waiting for the lock"))
}
