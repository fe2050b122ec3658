//! Model check of `Handle`'s state machine (`src/handle.rs`) with loom: the waiter thread that
//! finishes an asynchronous acquisition, racing the owner's close, abandon and cancel and the
//! directory watch's `lose`, in every interleaving, under the C11 memory model, running the real
//! handle code (its atomics come from `src/sync.rs`, which is loom's here; its waiter threads
//! are loom threads: under loom, `shared_wait::enqueue` runs each wait as a queue of one on a
//! model thread of its own, so the queue's registry and sweep are not part of this model).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p proclock-core --test loom_handle --release` (the
//! test command does this). In a normal build this file is empty.
//!
//! The raw lock is a fake in the handle's own process (one word: free, held, ABANDONED): what
//! is modelled is the handle, not a backend (`loom_lock_word.rs` models the shm protocol).
//!
//! Checked, in every interleaving: a hold the raw lock granted is ended exactly once (never
//! leaked, never ended twice), whoever wins the race; a hold nobody was given goes back as the
//! acquisition found it (ABANDONED if it was taken over from a dead holder); a lost hold goes
//! back ABANDONED; an acquisition's callback runs exactly once; a cancelled wait leaves the
//! handle usable.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use loom::sync::{Arc, Mutex};
use loom::thread;
use proclock_core::raw_lock::{Acquired, Losable, RawLock, Stop};
use proclock_core::{waiter_pool, ErrorKind, Handle, Result};

const FREE: u64 = 0;
const HELD: u64 = 1;
const ABANDONED: u64 = 2;

/// The raw lock: one word, and counts of what the handle asked of it.
struct Fake {
  word: Arc<AtomicU64>,
  grants: Arc<AtomicU32>,
  ends: Arc<AtomicU32>,
}

impl Losable for Fake {}

impl Fake {
  fn try_once(&self) -> Option<Acquired> {
    for from in [FREE, ABANDONED] {
      if self.word.compare_exchange(from, HELD, SeqCst, SeqCst).is_ok() {
        self.grants.fetch_add(1, SeqCst);
        return Some(Acquired {
          token: 1,
          owner_died: from == ABANDONED,
        });
      }
    }
    None
  }

  fn end(&self, to: u64) -> Result<()> {
    assert!(
      self.word.compare_exchange(HELD, to, SeqCst, SeqCst).is_ok(),
      "a hold ended that was not held (ended twice?)"
    );
    self.ends.fetch_add(1, SeqCst);
    Ok(())
  }
}

impl RawLock for Fake {
  fn try_lock(&self, _description: &[u8], _probe: bool) -> Result<Option<Acquired>> {
    Ok(self.try_once())
  }
  fn lock(
    &self,
    _description: &[u8],
    _deadline: Option<std::time::Instant>,
    cancelled: &dyn Fn() -> bool,
  ) -> Result<std::result::Result<Acquired, Stop>> {
    loop {
      if cancelled() {
        return Ok(Err(Stop::Cancelled));
      }
      if let Some(a) = self.try_once() {
        return Ok(Ok(a));
      }
      thread::yield_now();
    }
  }
  fn unlock(&self) -> Result<()> {
    self.end(FREE)
  }
  fn abandon(&self) -> Result<()> {
    self.end(ABANDONED)
  }
  fn interrupt(&self) {}
  fn uuid(&self) -> [u8; 16] {
    [0; 16]
  }
  fn wait_key(&self) -> String {
    format!("fake {:p}", self)
  }
}

/// One model run's world: the handle, its raw lock's word and counts, and the outcomes of the
/// acquisitions' callbacks.
struct World {
  handle: std::sync::Arc<Handle<Fake>>,
  word: Arc<AtomicU64>,
  grants: Arc<AtomicU32>,
  ends: Arc<AtomicU32>,
  outcomes: Arc<Mutex<Vec<std::result::Result<(), ErrorKind>>>>,
}

impl World {
  fn new(word: u64, reentrant: bool) -> World {
    let (word, grants, ends) = (Arc::new(AtomicU64::new(word)), Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let fake = Fake {
      word: word.clone(),
      grants: grants.clone(),
      ends: ends.clone(),
    };
    World {
      handle: std::sync::Arc::new(Handle::new(fake, reentrant, String::new()).unwrap()),
      word,
      grants,
      ends,
      outcomes: Arc::new(Mutex::new(Vec::new())),
    }
  }

  /// Start an asynchronous acquisition (its waiter is a loom thread).
  fn acquire_async(&self) {
    let outcomes = self.outcomes.clone();
    self
      .handle
      .acquire_async(None, None, move |r| outcomes.lock().unwrap().push(r.map_err(|e| e.kind())))
      .unwrap();
  }

  fn outcome(&self) -> std::result::Result<(), ErrorKind> {
    let outcomes = self.outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 1, "an acquisition's callback runs exactly once");
    outcomes[0]
  }

  fn word(&self) -> u64 {
    self.word.load(SeqCst)
  }

  /// Every hold the raw lock granted was ended exactly once.
  fn all_ended(&self) {
    assert_eq!(self.ends.load(SeqCst), self.grants.load(SeqCst), "a grant leaked or was ended twice");
    assert_ne!(self.word(), HELD);
  }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
  let mut b = loom::model::Builder::new();
  b.preemption_bound = Some(std::env::var("LOOM_MAX_PREEMPTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3));
  b.check(f);
}

/// close() or abandon() while the waiter is winning the lock (free, or ABANDONED by a holder
/// that died): the hold is either delivered and then ended by the close, or given back
/// undelivered as it was found.
#[test]
fn close_or_abandon_racing_the_grant() {
  for taken_over in [false, true] {
    for abandon in [false, true] {
      model(move || {
        let w = World::new(if taken_over { ABANDONED } else { FREE }, false);
        w.acquire_async();
        if abandon {
          w.handle.abandon();
        } else {
          w.handle.close();
        }
        waiter_pool::join();
        w.all_ended();
        assert!(w.handle.closed() && !w.handle.held());
        let granted = w.grants.load(SeqCst) == 1;
        match w.outcome() {
          // Delivered, then ended by the close: released, or ABANDONED by abandon().
          Ok(()) => assert_eq!(w.word(), if abandon { ABANDONED } else { FREE }),
          // Not delivered: as the acquisition found it (or untouched if never granted).
          Err(kind) => {
            assert_eq!(kind, ErrorKind::Closed);
            assert_eq!(w.word(), if taken_over { ABANDONED } else { FREE }, "granted: {granted}");
          }
        }
      });
    }
  }
}

/// The directory watch loses the handle while its waiter wins and its owner closes it.
#[test]
fn a_loss_racing_the_waiter_and_the_close() {
  model(|| {
    let w = World::new(FREE, false);
    w.acquire_async();
    let h = w.handle.clone();
    let loser = thread::spawn(move || h.lose("gone"));
    w.handle.close();
    loser.join().unwrap();
    waiter_pool::join();
    w.all_ended();
    assert!(w.handle.is_lost() && w.handle.closed());
    match w.outcome() {
      // Delivered before the loss and the close: the close found it held, and lost or not
      // (whichever came first), gave it back.
      Ok(()) => assert!(w.word() == FREE || w.word() == ABANDONED),
      Err(kind) => assert!(matches!(kind, ErrorKind::Closed | ErrorKind::Lost), "{kind:?}"),
    }
  });
}

/// The owner releases (a plain store of IDLE) while the watch loses the handle (a CAS): the
/// release either completes before the loss (the lock is free) or fails `Lost`, and then the
/// close gives the hold back ABANDONED. Never both, never neither.
#[test]
fn a_release_racing_the_loss() {
  for reentrant in [false, true] {
    model(move || {
      let w = World::new(FREE, reentrant);
      assert!(w.handle.try_acquire(None).unwrap());
      if reentrant {
        assert!(w.handle.try_acquire(None).unwrap());
        w.handle.release().unwrap();
      }
      let h = w.handle.clone();
      let loser = thread::spawn(move || h.lose("gone"));
      let released = w.handle.release();
      loser.join().unwrap();
      assert!(w.handle.is_lost() && !w.handle.held());
      match &released {
        Ok(()) => assert_eq!(w.word(), FREE),
        Err(e) => {
          assert_eq!(e.kind(), ErrorKind::Lost);
          assert_eq!(w.word(), HELD, "the lost hold keeps excluding until the close");
        }
      }
      w.handle.close();
      w.all_ended();
      if released.is_err() {
        assert_eq!(w.word(), ABANDONED, "a lost hold goes back ABANDONED");
      }
    });
  }
}

/// cancel() while another holder releases and the waiter may win: the wait either succeeds
/// (the handle holds) or is cancelled (the handle is idle and usable); never a hold nobody has.
#[test]
fn a_cancel_racing_the_grant() {
  model(|| {
    let w = World::new(HELD, false);
    w.acquire_async();
    let word = w.word.clone();
    let other = thread::spawn(move || word.store(FREE, SeqCst));
    w.handle.cancel();
    other.join().unwrap();
    waiter_pool::join();
    match w.outcome() {
      Ok(()) => {
        assert!(w.handle.held());
        assert_eq!(w.word(), HELD);
        w.handle.release().unwrap();
      }
      Err(kind) => {
        assert_eq!(kind, ErrorKind::Cancelled);
        assert!(!w.handle.busy());
        assert_eq!(w.grants.load(SeqCst), 0);
        assert!(w.handle.try_acquire(None).unwrap(), "a cancelled handle is usable");
        w.handle.release().unwrap();
      }
    }
    w.all_ended();
  });
}

