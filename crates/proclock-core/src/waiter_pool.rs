//! Threads of our own for waits that must not block their caller.
//!
//! An asynchronous acquisition that cannot be satisfied at once sleeps on one of these threads
//! (in `futex_wait`, not spinning). They are not the libuv pool: a lock wait can last forever,
//! and parking the four libuv threads would stall every `fs`, `dns` and `crypto` call of the
//! process (the fs-ext failure mode). The pool is elastic: a wait takes an idle thread or
//! starts a new one, so N concurrent waits get N threads and none waits for another; a thread
//! idle for `IDLE_EXIT` exits. Stacks are 256 KiB: a wait needs little, and the reserve is only
//! virtual memory, while an overflow would take the whole host process down.
//!
//! How many threads that is stays bounded by what uses it: the shared waits of `shared_wait.rs`
//! (one per lock that has waiters in this process) and the `file` backend's kernel requests
//! (one per lock and mode being waited on, plus requests parked by abandoned waits, which later
//! waits adopt), never one per pending `acquire()`.
//!
//! When no thread can be started (`RLIMIT_NPROC`/`ulimit -u`, a container's `pids.max`,
//! systemd's `TasksMax`), [`run`] says so and the job is not run. Running it on the caller's
//! thread instead, as this module once did, blocked the JavaScript thread for the whole wait
//! (forever, without a timeout); callers turn the error into a rejection at once.

#![cfg_attr(loom, allow(dead_code))]

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

type Job = Box<dyn FnOnce() + Send>;

const IDLE_EXIT: Duration = Duration::from_secs(30);
const STACK: usize = 256 * 1024;

struct Worker {
  job: Mutex<Option<Job>>,
  ready: Condvar,
}

fn idle() -> &'static Mutex<Vec<Arc<Worker>>> {
  static IDLE: OnceLock<Mutex<Vec<Arc<Worker>>>> = OnceLock::new();
  IDLE.get_or_init(Default::default)
}

/// Under `--cfg loom`: run `job` on a model thread, which [`join`] waits for (the model check of
/// the handle's state machine, `tests/loom_handle.rs`, races it against the owner's calls).
#[cfg(loom)]
pub fn run(job: Job) -> Result<()> {
  MODEL_WAITERS.with(|w| w.borrow_mut().push(loom::thread::spawn(job)));
  Ok(())
}

#[cfg(loom)]
std::thread_local! {
  static MODEL_WAITERS: std::cell::RefCell<Vec<loom::thread::JoinHandle<()>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Under `--cfg loom`: wait for every waiter this model thread started.
#[cfg(loom)]
pub fn join() {
  for w in MODEL_WAITERS.with(|w| std::mem::take(&mut *w.borrow_mut())) {
    w.join().unwrap();
  }
}

/// Run `job` on a waiter thread. Fails (and drops `job` unrun) when no thread can be started.
#[cfg(not(loom))]
pub fn run(job: Job) -> Result<()> {
  let worker = idle().lock().unwrap_or_else(|p| p.into_inner()).pop();
  match worker {
    Some(w) => {
      *w.job.lock().unwrap_or_else(|p| p.into_inner()) = Some(job);
      w.ready.notify_one();
    }
    None => {
      let w = Arc::new(Worker {
        job: Mutex::new(Some(job)),
        ready: Condvar::new(),
      });
      let spawned = std::thread::Builder::new().name("proclock-wait".into()).stack_size(STACK).spawn({
        let w = w.clone();
        move || serve(w)
      });
      if let Err(e) = spawned {
        drop(w.job.lock().unwrap_or_else(|p| p.into_inner()).take());
        return Err(no_thread(e));
      }
    }
  }
  Ok(())
}

/// The error for a thread that could not be started.
pub fn no_thread(e: std::io::Error) -> Error {
  Error::new(
    ErrorKind::Io,
    format!(
      "no thread could be started to wait for the lock ({e}); the process or its user has reached its limit on threads (RLIMIT_NPROC / ulimit -u, a container's pids.max, systemd's TasksMax)"
    ),
  )
}

fn serve(me: Arc<Worker>) {
  loop {
    let job = me.job.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(job) = job {
      job();
    }
    idle().lock().unwrap_or_else(|p| p.into_inner()).push(me.clone());
    let mut slot = me.job.lock().unwrap_or_else(|p| p.into_inner());
    loop {
      if slot.is_some() {
        break;
      }
      let (guard, timeout) = me.ready.wait_timeout(slot, IDLE_EXIT).unwrap_or_else(|p| p.into_inner());
      slot = guard;
      if timeout.timed_out() && slot.is_none() {
        drop(slot);
        let mut list = idle().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = list.iter().position(|w| Arc::ptr_eq(w, &me)) {
          list.remove(pos);
          return;
        }
        // Someone took us off the idle list and is handing us a job: wait for it.
        drop(list);
        slot = me.job.lock().unwrap_or_else(|p| p.into_inner());
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::sync::mpsc;

  #[test]
  fn concurrent_jobs_do_not_wait_for_each_other() {
    let (tx, rx) = mpsc::channel();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    // Eight jobs that all block until released: only possible if each has its own thread.
    for i in 0..8 {
      let (tx, gate) = (tx.clone(), gate.clone());
      run(Box::new(move || {
        tx.send(("started", i)).unwrap();
        let mut open = gate.0.lock().unwrap();
        while !*open {
          open = gate.1.wait(open).unwrap();
        }
        tx.send(("done", i)).unwrap();
      }))
      .unwrap();
    }
    for _ in 0..8 {
      assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, "started");
    }
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for _ in 0..8 {
      assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, "done");
    }
    // Idle threads are reused.
    let (tx2, rx2) = mpsc::channel();
    run(Box::new(move || {
      tx2.send(std::thread::current().name().map(str::to_owned)).unwrap()
    }))
    .unwrap();
    assert_eq!(rx2.recv_timeout(Duration::from_secs(5)).unwrap().as_deref(), Some("proclock-wait"));
  }
}
