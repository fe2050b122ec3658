//! Model check of the lock-word protocol (`src/lock_word.rs`) with loom: every interleaving of
//! a few contenders, under the C11 memory model, running the real protocol code.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p proclock-core --test loom_lock_word --release`
//! (the test command does this). In a normal build this file is empty.
//!
//! The world is modelled as the real one behaves:
//! - sleeping is a futex: "sleep while the counter equals what I read", emulated with a loom
//!   mutex and condvar (the waker bumps the counter, then notifies under the mutex, so the
//!   compare-and-sleep is atomic as in the kernel);
//! - a contender that dies stops where it is; its hold stays in the word; the liveness check
//!   then says "dead" for it, and the death watch bumps and wakes the lock's counter, as the
//!   kernel and `shm/death_watch.rs` do when a process exits.
//!
//! Checked: at most one holder at a time; every live contender gets the lock (a lost wake-up
//! would leave one asleep forever, which loom reports as a deadlock); a takeover from a dead
//! holder reports `owner_died`; tokens strictly increase in the order holds are granted; a
//! forced release never hands a token out twice, makes the forced-out holder's release fail,
//! is reported as `owner_died` to the next holder, and strands nobody.
#![cfg(loom)]

use std::time::Duration;

use std::panic::AssertUnwindSafe;

use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use proclock_core::crash_points::{self, Died, Step};
use proclock_core::lock_word::{self, handle_id, Acquired, LockCell, WaitEnv};

struct World {
  cell: LockCell,
  futex: Mutex<()>,
  sleepers: Condvar,
  /// Bit per contender (by pslot): has died.
  dead: AtomicU64,
  /// Occupancy of the critical section.
  inside: AtomicUsize,
  /// Last token granted, to check they only grow.
  last_token: AtomicU64,
}

impl World {
  fn new() -> Arc<World> {
    Arc::new(World {
      cell: LockCell::new(),
      futex: Mutex::new(()),
      sleepers: Condvar::new(),
      dead: AtomicU64::new(0),
      inside: AtomicUsize::new(0),
      last_token: AtomicU64::new(0),
    })
  }

  fn enter(&self, got: Acquired) {
    assert_eq!(self.inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
    let before = self.last_token.swap(got.token, Ordering::SeqCst);
    assert!(got.token > before, "token {} after {}", got.token, before);
  }

  fn leave(&self) {
    self.inside.fetch_sub(1, Ordering::SeqCst);
  }

  /// Contender `pslot` dies where it stands (holding, if it holds; `inside` if it was in the
  /// critical section, which its death ends).
  fn die(&self, pslot: u16, inside: bool) {
    if inside {
      self.leave();
    }
    self.dead.fetch_or(1 << pslot, Ordering::SeqCst);
    // The death watch: bump, then wake.
    lock_word::wake_all(&self.cell, self);
  }
}

impl WaitEnv for World {
  fn holder_is_dead(&self, holder: u64) -> bool {
    self.dead.load(Ordering::SeqCst) & (1 << lock_word::pslot_of(holder)) != 0
  }
  fn watch(&self, holder: u64) -> Duration {
    // As `shm/death_watch.rs`: a holder already dead when the watch is made is reported at once
    // ("gone": sleep zero, then probe); otherwise only its death (a wake-up) makes the sleeper
    // probe. No timed polling in the model.
    if self.holder_is_dead(holder) {
      Duration::ZERO
    } else {
      Duration::from_secs(3600)
    }
  }
  fn wait(&self, counter: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    if timeout.is_some_and(|t| t.is_zero()) {
      return; // a zero timeout returns at once, as FUTEX_WAIT does
    }
    let guard = self.futex.lock().unwrap();
    if counter.load(Ordering::SeqCst) == expected {
      drop(self.sleepers.wait(guard).unwrap());
    }
  }
  fn wake(&self, _counter: &AtomicU32, count: i32) {
    let _guard = self.futex.lock().unwrap();
    if count == 1 {
      self.sleepers.notify_one();
    } else {
      self.sleepers.notify_all();
    }
  }
}

fn take(world: &World, me: u64) -> Acquired {
  match lock_word::try_fast(&world.cell, me) {
    Some(a) => a,
    None => lock_word::acquire(&world.cell, me, world, None, &|| false).expect("no deadline, no cancel"),
  }
}

/// One full turn of contender `me`: acquire (waiting if need be), the critical section, release.
fn turn(world: &World, me: u64) -> Acquired {
  let got = take(world, me);
  world.enter(got);
  world.leave();
  lock_word::release(&world.cell, me, world).unwrap();
  got
}

fn model(f: impl Fn() + Sync + Send + 'static) {
  let mut b = loom::model::Builder::new();
  b.preemption_bound = Some(std::env::var("LOOM_MAX_PREEMPTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3));
  b.check(f);
}

#[test]
fn two_contenders_exclude_and_hand_off() {
  model(|| {
    let world = World::new();
    let threads: Vec<_> = (1..=2u16)
      .map(|p| {
        let w = world.clone();
        thread::spawn(move || {
          for _ in 0..2 {
            assert!(!turn(&w, handle_id(p, 1)).owner_died);
          }
        })
      })
      .collect();
    for t in threads {
      t.join().unwrap();
    }
    assert_eq!(world.last_token.load(Ordering::SeqCst), 4);
    assert_eq!(world.cell.word.load(Ordering::SeqCst) & !lock_word::WAITERS, 0);
  });
}

#[test]
fn three_contenders_no_lost_wakeup() {
  model(|| {
    let world = World::new();
    let threads: Vec<_> = (1..=3u16)
      .map(|p| {
        let w = world.clone();
        thread::spawn(move || {
          turn(&w, handle_id(p, 1));
        })
      })
      .collect();
    for t in threads {
      t.join().unwrap();
    }
    assert_eq!(world.last_token.load(Ordering::SeqCst), 3);
  });
}

#[test]
fn a_holder_that_dies_is_taken_over_with_owner_died() {
  model(|| {
    let world = World::new();
    let crasher = {
      let w = world.clone();
      thread::spawn(move || {
        let me = handle_id(1, 1);
        let got = take(&w, me);
        w.enter(got);
        // Dies holding: never releases.
        w.die(1, true);
      })
    };
    let survivor = {
      let w = world.clone();
      thread::spawn(move || turn(&w, handle_id(2, 1)))
    };
    crasher.join().unwrap();
    let got = survivor.join().unwrap();
    // Either the survivor went first (no death to report) or it took over from the dead holder.
    assert_eq!(got.owner_died, got.token == 2);
  });
}

#[test]
fn a_waiter_that_dies_asleep_does_not_strand_the_others() {
  model(|| {
    let world = World::new();
    let holder_id = handle_id(1, 1);
    let got = take(&world, holder_id);
    world.enter(got);
    let sleeper = {
      let w = world.clone();
      thread::spawn(move || {
        // Contends, announces itself (W) as a sleeper does, and dies there; or, if the lock
        // was free, takes it and dies holding it.
        let me = handle_id(2, 1);
        let held = match lock_word::try_once(&w.cell, me, &*w, false) {
          Some(got) => {
            w.enter(got);
            true
          }
          None => {
            let cur = w.cell.word.load(Ordering::SeqCst);
            let _ = w
              .cell
              .word
              .compare_exchange(cur, cur | lock_word::WAITERS, Ordering::SeqCst, Ordering::SeqCst);
            false
          }
        };
        w.die(2, held);
      })
    };
    let other = {
      let w = world.clone();
      thread::spawn(move || {
        turn(&w, handle_id(3, 1));
      })
    };
    world.leave();
    lock_word::release(&world.cell, holder_id, &*world).unwrap();
    sleeper.join().unwrap();
    other.join().unwrap();
  });
}

#[test]
fn a_forced_release_hands_on_with_owner_died_and_larger_tokens() {
  model(|| {
    let world = World::new();
    // Each contender's token once it has recorded it (0 before): what `settled` looks at, as
    // the holder record is in the shm backend.
    let recorded = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let contenders: Vec<_> = (1..=2u16)
      .map(|p| {
        let (w, recorded) = (world.clone(), recorded.clone());
        thread::spawn(move || {
          let me = handle_id(p, 1);
          let got = take(&w, me);
          // Grants stay in token order, a forced release included: no token is handed out twice.
          let before = w.last_token.swap(got.token, Ordering::SeqCst);
          assert!(got.token > before, "token {} after {}", got.token, before);
          recorded[usize::from(p) - 1].store(got.token, Ordering::SeqCst);
          // A release fails only for a hold that was forced away.
          (got, lock_word::release(&w.cell, me, &*w).is_ok())
        })
      })
      .collect();
    let forcer = {
      let (w, recorded) = (world.clone(), recorded.clone());
      thread::spawn(move || {
        let mut asked = None;
        let ended = lock_word::force_release(&w.cell, handle_id(3, 1), &*w, |h| {
          asked = Some(h);
          // As the shm backend's settle: wait until the holder has recorded its token.
          while recorded[usize::from(lock_word::pslot_of(h)) - 1].load(Ordering::SeqCst) == 0 {
            thread::yield_now();
          }
        });
        (ended, asked)
      })
    };
    let ends: Vec<_> = contenders.into_iter().map(|t| t.join().unwrap()).collect();
    let (ended, asked) = forcer.join().unwrap();
    let word = world.cell.word.load(Ordering::SeqCst);
    if ended {
      // One hold was ended: its holder's release failed; the hold after it, if any, was told.
      let forced = usize::from(lock_word::pslot_of(asked.unwrap())) - 1;
      let (victim, other) = (&ends[forced], &ends[1 - forced]);
      assert!(!victim.1, "a forced-out holder's release fails");
      assert!(other.1);
      if other.0.token > victim.0.token {
        assert!(other.0.owner_died, "the hold after a forced release reports owner_died");
        assert_eq!(word, 0);
      } else {
        assert!(!other.0.owner_died);
        assert_eq!(word, lock_word::ABANDONED, "freed as ABANDONED, for whoever comes next");
      }
    } else {
      // Nothing was held: nothing changed.
      for (got, released) in &ends {
        assert!(released);
        assert!(!got.owner_died);
      }
      assert_eq!(word & !lock_word::WAITERS, 0);
    }
  });
}

/// Contender `p` runs `f`, armed to die the first time it reaches `step` (a crash point of
/// `lock_word.rs`, the same ones the process crash tests use). Returns `Some` if it got
/// through, `None` if it died there. Its death is what the world sees of a killed process:
/// its word stays as it left it, and the death is announced to sleepers.
fn or_die<T>(world: &World, p: u16, step: Step, f: impl FnOnce() -> T) -> Option<T> {
  crash_points::die_at(step, 1);
  match std::panic::catch_unwind(AssertUnwindSafe(f)) {
    Ok(v) => Some(v),
    Err(payload) => {
      assert!(payload.is::<Died>(), "a real panic, not a modelled death");
      // A death announces itself to every sleeper. For a dead *holder* that is the death
      // watch; for a dead waiter nothing in the real system does, and the others' timed
      // re-check (`WATCHED_PROBE_INTERVAL`) stands in for it, a delay the process crash test
      // (`woken`) measures.
      world.die(p, false);
      None
    }
  }
}

/// The modelled deaths print nothing; any other panic still does.
fn quiet_deaths() {
  let default = std::panic::take_hook();
  std::panic::set_hook(Box::new(move |info| {
    if !info.payload().is::<Died>() {
      default(info)
    }
  }));
}

#[test]
fn a_contender_that_dies_at_any_step_strands_nobody() {
  quiet_deaths();
  for step in [Step::WordWon, Step::TokenStored, Step::WaitersBitSet, Step::Woken, Step::WordFreed] {
    model(move || {
      let world = World::new();
      // The lock starts held, so both contenders must wait, sleep and be woken.
      let first = handle_id(3, 1);
      let got = take(&world, first);
      world.enter(got);
      let crasher_id = handle_id(1, 1);
      let crasher = {
        let w = world.clone();
        thread::spawn(move || or_die(&w, 1, step, || turn(&w, crasher_id)).is_none())
      };
      let survivor = {
        let w = world.clone();
        thread::spawn(move || turn(&w, handle_id(2, 1)))
      };
      world.leave();
      lock_word::release(&world.cell, first, &*world).unwrap();
      let died = crasher.join().unwrap();
      // The survivor always gets its turn: a death at any step strands nobody (loom reports a
      // survivor asleep for ever as a deadlock).
      let got = survivor.join().unwrap();
      let word = world.cell.word.load(Ordering::SeqCst) & !lock_word::WAITERS;
      if died && matches!(step, Step::WordWon | Step::TokenStored) {
        // It died holding the word: either after the survivor's turn (the word still names
        // it) or before, and then the survivor took over and was told.
        assert_eq!(got.owner_died, word == 0, "step {step:?}, word {word:#x}");
        assert!(word == 0 || word == crasher_id);
      } else {
        assert!(!got.owner_died, "step {step:?}: nobody died holding");
        assert_eq!(word, 0);
      }
    });
  }
}

#[test]
fn a_forcer_that_dies_holding_the_word_is_taken_over() {
  quiet_deaths();
  model(|| {
    let world = World::new();
    // Held, but not counted as inside the critical section: a forced release ends a hold
    // its holder still believes in, by design (that is what the token is for).
    let holder = handle_id(1, 1);
    take(&world, holder);
    let forcer = {
      let w = world.clone();
      thread::spawn(move || {
        or_die(&w, 3, Step::ForceTookWord, || {
          lock_word::force_release(&w.cell, handle_id(3, 1), &*w, |_| ())
        })
      })
    };
    let survivor = {
      let w = world.clone();
      thread::spawn(move || turn(&w, handle_id(2, 1)))
    };
    // The forcer always finds the lock held (ours or the survivor's), takes the word and dies.
    assert_eq!(forcer.join().unwrap(), None);
    let released = lock_word::release(&world.cell, holder, &*world).is_ok();
    let got = survivor.join().unwrap();
    if !released {
      // The word was taken from us: the survivor took over from the dead forcer, or from ABANDONED.
      assert!(got.owner_died);
    }
  });
}
