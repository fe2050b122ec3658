//! Pending asynchronous acquisitions of one lock, in one process, share one thread.
//!
//! Each `acquire()` that cannot be satisfied at once used to sleep on a thread of its own (and,
//! on the `file` backend, a second thread blocked in the kernel): 2000 pending `acquire()`s made
//! 4011 threads, and a process that runs out of threads cannot even wait. Here the waits of one
//! process on one lock (one lock *and mode* for the `file` backend: the backend's
//! [`RawLock::wait_key`](crate::raw_lock::RawLock::wait_key)) form a queue, served by one thread
//! from `waiter_pool.rs`:
//!
//! 1. **Sweep.** Every queued waiter whose acquisition was cancelled (abort, `close()`, its
//!    environment torn down) is told `Cancelled`; every one whose deadline has passed is told
//!    `TimedOut`, except a head that has not had its attempt yet (so even a zero timeout gets
//!    one try, which takes over from a dead holder).
//! 2. **Wait for the head.** The oldest waiter (the head) waits in the backend, exactly as a
//!    lone waiter would (`RawLock::lock`, with the handle's own id), but until the *earliest*
//!    deadline of the whole queue, and with a stop condition that is true as soon as any queued
//!    waiter is cancelled or the queue's generation moves.
//! 3. **Deliver.** A grant goes to the head, which leaves the queue; the thread goes on with the
//!    next. A stop (a deadline or a cancellation, anybody's) goes back to the sweep. An error
//!    goes to the head alone.
//! 4. **Leave.** The thread leaves when the queue is empty; it removes the queue from the
//!    registry under the registry's lock, so that a waiter arriving at that moment either joins
//!    the queue before the check (and is served) or starts a new queue and thread.
//!
//! Waking the thread: the backend's `interrupt` (called by `Handle::cancel` and `close`) wakes
//! whatever the head waits on; for `shm` that is the lock's wake counter, for `file` every
//! request of this process on the same lock and mode. A new waiter whose deadline is earlier
//! than every queued one bumps the generation and interrupts, so the head's wait is cut to the
//! new earliest deadline. Later deadlines need nothing: they are not the earliest.
//!
//! What it keeps: FIFO order within the process (across processes, the backend's own order);
//! timeouts on the monotonic clock; prompt cancellation; the handle's state machine and its
//! `give_back` rule (delivery is `Handle::finish_wait`, unchanged). What it costs: one waiter's
//! cancellation stops the head's wait, which restarts at once (a system call or two); a
//! cancellation check scans the queue (a few nanoseconds a waiter) on each wake-up of the head.
//!
//! **The bound.** Threads for asynchronous waits: one per lock (per lock and mode, `file`) that
//! has waiters in this process, however many waiters; the `file` backend adds its one kernel
//! request thread per such queue (`file/mod.rs`; waits given up on park their request for the
//! next to adopt). Plus the one death-watch thread of the process.

#![cfg_attr(loom, allow(dead_code))]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::raw_lock::{Acquired, Stop};
use crate::waiter_pool;

/// What a wait ends with, as `RawLock::lock` reports it.
pub type Outcome = Result<std::result::Result<Acquired, Stop>>;

/// Waits in the backend for one waiter until the deadline given or the stop condition holds.
pub type Attempt = Box<dyn FnMut(Option<Instant>, &dyn Fn() -> bool) -> Outcome + Send>;

/// One pending acquisition.
pub struct Waiter {
  /// When it gives up (monotonic); `None`: never.
  pub deadline: Option<Instant>,
  /// True once it is cancelled. Must be cheap: it is asked on every wake-up of the head.
  pub cancelled: Box<dyn Fn() -> bool + Send>,
  /// Wait in the backend for this waiter, until the given deadline or until the stop condition
  /// holds. Called on the queue's thread, possibly several times.
  pub attempt: Attempt,
  /// Deliver the outcome (called once, on the queue's thread).
  pub finish: Box<dyn FnOnce(Outcome) + Send>,
}

struct Entry {
  waiter: Waiter,
  /// Its attempt has run at least once (a passed deadline then expires it).
  tried: bool,
}

struct Queue {
  waiters: Mutex<VecDeque<Entry>>,
  /// Moves when the head's wait must stop and start over (an earlier deadline arrived).
  generation: AtomicU64,
}

type Queues = HashMap<String, Arc<Queue>>;

fn queues() -> MutexGuard<'static, Queues> {
  static QUEUES: OnceLock<Mutex<Queues>> = OnceLock::new();
  QUEUES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

fn guard(q: &Queue) -> MutexGuard<'_, VecDeque<Entry>> {
  q.waiters.lock().unwrap_or_else(|p| p.into_inner())
}

/// Under `--cfg loom`: a queue of one. The waiter waits on a model thread of its own, exactly as
/// the head of a queue does (its attempt until its deadline or its cancellation, then its
/// finish), so the model of the handle's state machine (`tests/loom_handle.rs`) races the real
/// handle code against it. The queue itself (its registry, sweep and generation) is not part of
/// that model.
#[cfg(loom)]
pub fn enqueue(_key: String, waiter: Waiter, _wake: impl FnOnce()) -> std::result::Result<(), Box<(Error, Waiter)>> {
  let started = waiter_pool::run(Box::new(move || {
    let Waiter {
      deadline,
      cancelled,
      mut attempt,
      finish,
    } = waiter;
    let outcome = attempt(deadline, &*cancelled);
    finish(outcome);
  }));
  started.map_err(|_| unreachable!("a loom model thread always starts"))
}

/// Queue `waiter` behind the other waits of this process on `key`, starting the queue's thread
/// if there is none. `wake` interrupts the wait in progress on `key` (the backend's
/// `interrupt`). Fails when a thread was needed and none could be started, and gives `waiter`
/// back, unfinished, for the caller to finish with the error (`Box`ed: a `Waiter` is large).
#[cfg(not(loom))]
pub fn enqueue(key: String, waiter: Waiter, wake: impl FnOnce()) -> std::result::Result<(), Box<(Error, Waiter)>> {
  // Lock order: the registry, then a queue. The queue's thread never holds its queue's lock
  // while it takes the registry's.
  let mut all = queues();
  if let Some(q) = all.get(&key).cloned() {
    let earliest = {
      let mut waiters = guard(&q);
      let earliest = waiter
        .deadline
        .is_some_and(|d| waiters.iter().all(|e| e.waiter.deadline.is_none_or(|other| d < other)));
      waiters.push_back(Entry { waiter, tried: false });
      earliest
    };
    drop(all);
    if earliest {
      q.generation.fetch_add(1, Ordering::SeqCst);
      wake();
    }
    return Ok(());
  }
  let q = Arc::new(Queue {
    waiters: Mutex::new(VecDeque::from([Entry { waiter, tried: false }])),
    generation: AtomicU64::new(0),
  });
  let started = waiter_pool::run(Box::new({
    let (q, key) = (q.clone(), key.clone());
    move || serve(&key, &q)
  }));
  if let Err(e) = started {
    // The job (and its reference to `q`) is gone: the waiter is ours to give back.
    let entry = guard(&q).pop_front();
    return match entry {
      Some(entry) => Err(Box::new((e, entry.waiter))),
      None => Ok(()),
    };
  }
  all.insert(key, q);
  Ok(())
}

/// The queue's thread: steps 1-4 at the top of this file.
fn serve(key: &str, q: &Arc<Queue>) {
  loop {
    let mut ended = Vec::new();
    let next = {
      let mut waiters = guard(q);
      let now = Instant::now();
      let mut i = 0;
      while i < waiters.len() {
        let e = &waiters[i];
        let stop = if (e.waiter.cancelled)() {
          Some(Stop::Cancelled)
        } else if e.waiter.deadline.is_some_and(|d| now >= d) && (e.tried || i > 0) {
          Some(Stop::TimedOut)
        } else {
          None
        };
        match stop.and_then(|s| waiters.remove(i).map(|e| (e, s))) {
          Some((e, s)) => ended.push((e.waiter.finish, s)),
          None => i += 1,
        }
      }
      let earliest = waiters.iter().filter_map(|e| e.waiter.deadline).min();
      waiters.front_mut().map(|head| {
        // Taken out while it runs; only this thread removes entries, so the head stays first.
        let attempt = std::mem::replace(&mut head.waiter.attempt, Box::new(|_, _| unreachable!("attempt in use")));
        (attempt, earliest, q.generation.load(Ordering::SeqCst))
      })
    };
    for (finish, stop) in ended {
      finish(Ok(Err(stop)));
    }
    let Some((mut attempt, earliest, generation)) = next else {
      // Step 4: leave only if still empty once nobody can join (the registry's lock).
      let mut all = queues();
      if !guard(q).is_empty() {
        continue;
      }
      if all.get(key).is_some_and(|mine| Arc::ptr_eq(mine, q)) {
        all.remove(key);
      }
      return;
    };
    let stop = || q.generation.load(Ordering::SeqCst) != generation || guard(q).iter().any(|e| (e.waiter.cancelled)());
    let outcome = attempt(earliest, &stop);
    let mut waiters = guard(q);
    match outcome {
      Ok(Err(_)) => {
        if let Some(head) = waiters.front_mut() {
          head.waiter.attempt = attempt;
          head.tried = true;
        }
      }
      outcome => {
        let head = waiters.pop_front();
        drop(waiters);
        if let Some(head) = head {
          (head.waiter.finish)(outcome);
        }
      }
    }
  }
}

/// How many waits of this process are queued on `key` (tests).
#[doc(hidden)]
pub fn queued(key: &str) -> usize {
  queues().get(key).map_or(0, |q| guard(q).len())
}

#[cfg(all(test, unix))]
mod tests {
  use std::sync::mpsc;
  use std::sync::Arc;
  use std::time::{Duration, Instant};

  use crate::error::ErrorKind;
  use crate::file::{FileLock, Mode};
  use crate::handle::Handle;
  use crate::raw_lock::RawLock;
  use crate::shm::ShmLock;

  /// Queued behind a head that waits, a waiter that is cancelled and one whose (earlier)
  /// deadline passes are each told so promptly, without the head losing its place; the head
  /// then gets the lock on release, and the queue goes away.
  fn queue_serves_head_and_stops_others<R: RawLock + 'static>(open: impl Fn() -> R) {
    let holder = Handle::new(open(), false, String::new()).unwrap();
    assert!(holder.try_acquire(None).unwrap());
    let (tx, rx) = mpsc::channel();
    let waiter = |label: &'static str, timeout: Option<Duration>| {
      let h = Arc::new(Handle::new(open(), false, String::new()).unwrap());
      let tx = tx.clone();
      let started = Instant::now();
      h.acquire_async(timeout, None, move |r| {
        tx.send((label, r.map_err(|e| e.kind()), started.elapsed())).unwrap()
      })
      .unwrap();
      h
    };
    let head = waiter("head", None);
    let cancelled = waiter("cancelled", None);
    let _soon = waiter("soon", Some(Duration::from_millis(50)));
    let key = open().wait_key();
    assert_eq!(super::queued(&key), 3);
    std::thread::sleep(Duration::from_millis(10));
    cancelled.cancel();
    let (label, outcome, _) = rx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!((label, outcome), ("cancelled", Err(ErrorKind::Cancelled)));
    let (label, outcome, took) = rx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!((label, outcome), ("soon", Err(ErrorKind::Timeout)));
    assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(1), "{took:?}");
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "the head still waits");
    holder.release().unwrap();
    let (label, outcome, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((label, outcome), ("head", Ok(())));
    assert!(head.held());
    head.release().unwrap();
    let t0 = Instant::now();
    while super::queued(&key) > 0 && t0.elapsed() < Duration::from_secs(2) {
      std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(super::queued(&key), 0);
  }

  #[test]
  fn shm_queue() {
    let dir = crate::lock_dir::scratch_dir("shared-wait-shm");
    queue_serves_head_and_stops_others(|| ShmLock::open("q", Some(&dir)).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
  }

  #[test]
  fn file_queue() {
    let dir = crate::lock_dir::scratch_dir("shared-wait-file");
    queue_serves_head_and_stops_others(|| FileLock::open("q", Some(&dir), Mode::Exclusive).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
  }
}
