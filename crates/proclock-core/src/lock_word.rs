//! The lock-word protocol: the whole of mutual exclusion, hand-off and takeover for one lock.
//!
//! Every lock is one 64-bit word in shared memory, changed only by compare-and-swap, a 64-bit
//! fencing-token counter, and a 32-bit wake counter that sleepers sleep on. Everything else (the
//! holder record, the name) is diagnostics; exclusion depends on this file alone.
//!
//! # The word
//!
//! ```text
//!  63            48 47                                   1  0
//! +----------------+--------------------------------------+---+
//! |     pslot      |              handle seq               | W |
//! +----------------+--------------------------------------+---+
//! ```
//!
//! - `0` means FREE.
//! - `ABANDONED` (pslot `0xffff`, seq 1) means FREE, *and* the last holder died holding it (its
//!   environment was torn down, e.g. a terminated worker thread). Whoever takes it next is told
//!   `owner_died`.
//! - Any other value means HELD by the handle whose id is the word without `W`. A handle id is
//!   the process slot of the holder's process (see `shm/liveness.rs`) and a sequence number that is
//!   never issued twice, so a word names one handle for all time: there is no ABA on holder ids.
//! - `W` (bit 0) means "someone may be asleep". It is set by a contender before it sleeps and
//!   cleared only by the release that then wakes a sleeper.
//!
//! # Transitions, and who may make them
//!
//! | from                | to                 | by                                              |
//! |---------------------|--------------------|-------------------------------------------------|
//! | FREE / ABANDONED    | `me` (+W)          | any contender (acquire)                         |
//! | HELD `h` (+W)       | HELD `h` + W       | a contender about to sleep                      |
//! | HELD `me` (+W)      | FREE               | the holder (release); wakes one sleeper if W    |
//! | HELD `me` (+W)      | ABANDONED          | the holder's environment teardown; wakes if W   |
//! | HELD `h` (+W)       | `me` (+W kept)     | a contender that proved `h`'s process dead      |
//! | HELD `h` (+W)       | `me`, then ABANDONED | an operator's forced release ([`force_release`]) |
//!
//! Only the holder ever clears its own id, so a live holder is never stolen from; the takeover
//! edge is guarded by the liveness check, which must never call a live process dead. The one
//! exception is explicit: a forced release, which someone asked for by name.
//!
//! # Sleeping, and why no wake-up is lost
//!
//! Sleepers sleep on the wake counter (an eventcount), not on the lock word. Anyone with a
//! reason to wake sleepers first bumps the counter, then wakes: the release that clears `W`,
//! a cancelled waiter's own handle (abort, close), a waiter that gives up after sleeping, and
//! the death watch when a holder's process exits (`shm/death_watch.rs`). A contender about to sleep:
//!
//! 1. sets `W` in the word it saw (CAS; if the word moved, it starts over),
//! 2. reads the counter `c`,
//! 3. re-reads the word; if it is no longer exactly what it saw with `W`, it starts over,
//! 4. sleeps only while the counter still equals `c`.
//!
//! A release that happens after step 3 bumps the counter after the sleeper read it in step 2
//! (steps 2 and 3 and the release's CAS and bump are sequentially consistent), so the kernel
//! either sees a changed counter and does not put the sleeper to sleep, or has queued it before
//! the wake. A release before step 3 is seen in step 3. The same argument covers every other
//! waker, which is what makes an abort prompt: it cannot fall into the gap between a waiter's
//! last check and its sleep. The woken sleeper re-acquires *with* `W` (it cannot know whether
//! others still sleep), which keeps the chain going; the cost is one spare wake at the end of a
//! queue. A sleeper that gives up after sleeping passes one wake on, in case it consumed the
//! wake meant for someone who will now take the lock.
//!
//! # Holder death
//!
//! A process killed while holding never clears its word and wakes nobody. Contenders ask
//! [`WaitEnv::holder_is_dead`] once a sleep slice has passed without the word changing hands,
//! before giving up at their deadline, and whenever they are woken. Before sleeping they call
//! [`WaitEnv::watch`], which can arrange for the holder's death to bump the counter (so no
//! polling is needed) and says how long the next sleep slice may be. The takeover is a CAS from
//! the dead holder's exact word to ours, so of several contenders that prove the same death,
//! exactly one wins.
//!
//! # Fencing tokens
//!
//! Each successful acquisition, takeover included, sets `token = counter + 1` right after
//! winning the word. Only the holder writes the counter, and every acquisition happens-after
//! the previous release or takeover of the same word (acquire/release ordering on the word), so
//! each holder sees its predecessor's token and hands out a larger one. A plain load and store
//! suffice; no read-modify-write is needed on the hot path.

use std::time::{Duration, Instant};

use crate::crash_points::{reached, Step};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Bit 0: someone may be asleep.
pub const WAITERS: u64 = 1;
/// Free, and the previous holder died holding it.
pub const ABANDONED: u64 = 0xffff_0000_0000_0002;
/// The process slot value reserved for `ABANDONED`.
pub const RESERVED_PSLOT: u16 = 0xffff;
/// Sequence numbers are 47 bits wide.
pub const SEQ_BITS: u32 = 47;

/// The part of a lock that the protocol owns. Lives in shared memory; `#[repr(C)]` because
/// every process must agree on where each field is.
#[repr(C)]
pub struct LockCell {
  /// The lock word described above.
  pub word: AtomicU64,
  /// The last fencing token handed out.
  pub token: AtomicU64,
  /// The wake counter sleepers sleep on.
  pub wake: AtomicU32,
  _reserved: AtomicU32,
}

impl LockCell {
  /// A fresh, free lock (used by the model check; shared cells start as zeroed memory).
  pub fn new() -> Self {
    LockCell {
      word: AtomicU64::new(0),
      token: AtomicU64::new(0),
      wake: AtomicU32::new(0),
      _reserved: AtomicU32::new(0),
    }
  }
}

impl Default for LockCell {
  fn default() -> Self {
    Self::new()
  }
}

/// The handle id for `seq` issued in process slot `pslot`. Never 0, never `ABANDONED`, `W` clear.
pub fn handle_id(pslot: u16, seq: u64) -> u64 {
  debug_assert!(pslot != RESERVED_PSLOT && seq != 0 && seq < (1 << SEQ_BITS));
  (u64::from(pslot) << 48) | (seq << 1)
}

/// The process slot of a handle id.
pub fn pslot_of(id: u64) -> u16 {
  (id >> 48) as u16
}

/// The sequence number of a handle id.
pub fn seq_of(id: u64) -> u64 {
  (id >> 1) & ((1 << SEQ_BITS) - 1)
}

/// The holder id in a word, if the word is HELD.
pub fn holder_of(word: u64) -> Option<u64> {
  match word & !WAITERS {
    0 | ABANDONED => None,
    id => Some(id),
  }
}

/// A successful acquisition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
  pub token: u64,
  /// The previous holder died holding the lock.
  pub owner_died: bool,
}

/// Why a blocking acquisition stopped without the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
  TimedOut,
  Cancelled,
}

/// The release was refused: the word does not hold the caller's id (never held, or forced out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHeld;

/// What the protocol needs from the world around it: liveness, sleeping and waking.
pub trait WaitEnv {
  /// Is the process behind `holder` (a handle id) certainly dead? Must never say `true` for a
  /// live holder; may say `false` for a dead one (it will be asked again later).
  fn holder_is_dead(&self, holder: u64) -> bool;
  /// About to sleep while `holder` holds: arrange, if possible, for its death to bump the wake
  /// counter, and say how long to sleep before asking `holder_is_dead` again.
  fn watch(&self, holder: u64) -> Duration;
  /// Sleep while `counter` equals `expected`, at most `timeout`; may wake early.
  fn wait(&self, counter: &AtomicU32, expected: u32, timeout: Option<Duration>);
  /// Wake up to `count` sleepers of `counter`.
  fn wake(&self, counter: &AtomicU32, count: i32);
  /// A sleeper was woken and `holder` still holds: could the wake-up have been `holder`'s
  /// death? `true` makes the sleeper probe liveness at once. An environment that knows which
  /// wake-up would announce `holder`'s death (its death watch) and that this one has not come
  /// may say `false`: the sleeper then goes back to sleep without the probe's system calls.
  /// That matters under contention, where a holder that releases and at once re-acquires wakes
  /// a sleeper that finds the same holder again, many times a second. Saying `false` wrongly
  /// would delay a takeover until the next probe slice, so the default, and any doubt, is
  /// `true`.
  fn wake_may_mean_death(&self, _holder: u64) -> bool {
    true
  }
}

fn cas(word: &AtomicU64, current: u64, new: u64, success: Ordering) -> Result<u64, u64> {
  word.compare_exchange(current, new, success, Ordering::Relaxed)
}

/// Called with the lock just taken: hand out the next fencing token (we are the only writer).
fn granted(cell: &LockCell, owner_died: bool) -> Acquired {
  reached(Step::WordWon);
  let token = cell.token.load(Ordering::Relaxed).wrapping_add(1);
  cell.token.store(token, Ordering::Relaxed);
  reached(Step::TokenStored);
  Acquired { token, owner_died }
}

/// Bump the wake counter and wake up to `count` sleepers.
pub fn wake<E: WaitEnv>(cell: &LockCell, env: &E, count: i32) {
  cell.wake.fetch_add(1, Ordering::SeqCst);
  env.wake(&cell.wake, count);
}

/// The uncontended path: one CAS from FREE, nothing else. Never enters the kernel.
#[inline]
pub fn try_fast(cell: &LockCell, me: u64) -> Option<Acquired> {
  cas(&cell.word, 0, me, Ordering::Acquire).ok().map(|_| granted(cell, false))
}

/// One attempt that never sleeps: FREE, ABANDONED, or a holder proven dead (when `probe`).
pub fn try_once<E: WaitEnv>(cell: &LockCell, me: u64, env: &E, probe: bool) -> Option<Acquired> {
  loop {
    let cur = cell.word.load(Ordering::Relaxed);
    let keep_w = cur & WAITERS;
    let (died, proven) = match holder_of(cur) {
      None => (cur & !WAITERS == ABANDONED, true),
      Some(h) => (true, probe && env.holder_is_dead(h)),
    };
    if !proven {
      return None;
    }
    match cas(&cell.word, cur, me | keep_w, Ordering::Acquire) {
      Ok(_) => return Some(granted(cell, died)),
      // The word moved under us (a release, a waiter setting W, another taker): look again.
      Err(_) => continue,
    }
  }
}

/// Wait for the lock until `deadline` (none: forever) or until `cancelled()` says stop.
/// Whoever sets what `cancelled` reads must then call [`wake`] so a sleeper notices at once.
pub fn acquire<E: WaitEnv>(
  cell: &LockCell,
  me: u64,
  env: &E,
  deadline: Option<Instant>,
  cancelled: &dyn Fn() -> bool,
) -> Result<Acquired, Stop> {
  // After sleeping once we cannot know whether others still sleep, so we take the lock with W
  // set and our release will wake one of them.
  let mut slept = false;
  // Liveness is not probed at first contention: almost always the holder is alive and lets go
  // soon, and a probe costs system calls. It is probed once a sleep slice has passed without
  // the lock changing hands, after a wake-up (which may be the death watch), and always before
  // giving up at the deadline, so even a zero timeout takes over from a dead holder.
  let mut probe_due: Option<Instant> = None;
  // The holder we last slept on, and whether the wake counter moved while we slept. A wake-up
  // with the same holder still holding is worth a probe if it may be the death watch (the
  // environment says); with a new holder it is not (whoever just took the lock is alive).
  let mut slept_on: Option<u64> = None;
  let mut woken = false;
  loop {
    let cur = cell.word.load(Ordering::SeqCst);
    let Some(holder) = holder_of(cur) else {
      let w = if slept { WAITERS } else { cur & WAITERS };
      if cas(&cell.word, cur, me | w, Ordering::Acquire).is_ok() {
        return Ok(granted(cell, cur & !WAITERS == ABANDONED));
      }
      continue;
    };
    if slept_on != Some(holder) {
      slept_on = None;
      probe_due = None;
      woken = false;
    }

    let now = Instant::now();
    let out_of_time = deadline.is_some_and(|d| now >= d);
    if (woken && env.wake_may_mean_death(holder)) || out_of_time || probe_due.is_some_and(|t| now >= t) {
      woken = false;
      probe_due = None;
      if env.holder_is_dead(holder) {
        let w = if slept { WAITERS } else { cur & WAITERS };
        if cas(&cell.word, cur, me | w, Ordering::Acquire).is_ok() {
          return Ok(granted(cell, true));
        }
        continue;
      }
    }

    if cancelled() {
      leave(cell, env, slept);
      return Err(Stop::Cancelled);
    }
    if out_of_time {
      leave(cell, env, slept);
      return Err(Stop::TimedOut);
    }

    // Steps 1-4 of "Sleeping" above.
    if cur & WAITERS == 0 && cas(&cell.word, cur, cur | WAITERS, Ordering::SeqCst).is_err() {
      continue;
    }
    let seen = cell.wake.load(Ordering::SeqCst);
    if cell.word.load(Ordering::SeqCst) != cur | WAITERS {
      continue;
    }
    reached(Step::WaitersBitSet);
    let slice = env.watch(holder);
    slept_on = Some(holder);
    let probe_at = *probe_due.get_or_insert(now + slice);
    let wake_by = deadline.map_or(probe_at, |d| d.min(probe_at));
    slept = true;
    env.wait(&cell.wake, seen, Some(wake_by.saturating_duration_since(now)));
    reached(Step::Woken);
    // Acquire: whatever a waker wrote before bumping the counter (the death watch marks its
    // subscription fired first) is visible to `wake_may_mean_death` below.
    woken = cell.wake.load(Ordering::Acquire) != seen;
  }
}

/// Leaving without the lock after having slept: pass on the wake-up we may have consumed.
fn leave<E: WaitEnv>(cell: &LockCell, env: &E, slept: bool) {
  if slept {
    wake(cell, env, 1);
  }
}

/// Release a lock held by `me`; wakes one sleeper if any announced itself.
pub fn release<E: WaitEnv>(cell: &LockCell, me: u64, env: &E) -> Result<(), NotHeld> {
  free_word(cell, me, 0, env)
}

/// Release a lock held by `me` as ABANDONED: its next holder is told the owner died.
pub fn abandon<E: WaitEnv>(cell: &LockCell, me: u64, env: &E) -> Result<(), NotHeld> {
  free_word(cell, me, ABANDONED, env)
}

/// Set `me`'s word to `free_value` (0 or ABANDONED), keeping nobody's W, and wake a sleeper
/// if one announced itself.
fn free_word<E: WaitEnv>(cell: &LockCell, me: u64, free_value: u64, env: &E) -> Result<(), NotHeld> {
  // The common case first: our word without W, nobody waiting, nothing to wake.
  let Err(mut cur) = cas(&cell.word, me, free_value, Ordering::SeqCst) else {
    reached(Step::WordFreed);
    return Ok(());
  };
  loop {
    if cur & !WAITERS != me {
      return Err(NotHeld);
    }
    match cas(&cell.word, cur, free_value, Ordering::SeqCst) {
      Ok(_) => break,
      // Only a waiter setting W can change our own word under us; retry with it.
      Err(actual) => cur = actual,
    }
  }
  // A death here owes the sleepers a wake-up nobody will send; the death watch on this
  // process (`shm/death_watch.rs`) sends it instead, since they were all watching us.
  reached(Step::WordFreed);
  if cur & WAITERS != 0 {
    wake(cell, env, 1);
  }
  Ok(())
}

/// Wake every sleeper of this lock, so that a cancelled waiter notices now (the others check
/// the word again and go back to sleep).
pub fn wake_all<E: WaitEnv>(cell: &LockCell, env: &E) {
  wake(cell, env, i32::MAX);
}

/// End whatever hold the lock has, on an operator's explicit request (`forceRelease`,
/// `proclock release --force`). `me` is the forcing handle's own id (a live handle that does
/// not hold the lock). `settle(h)` waits until holder `h` has finished its acquisition, i.e.
/// has stored its fencing token (or can never store it: its process is dead), or until a
/// bound the caller chooses. Returns false if nothing was held (FREE, or ABANDONED, which is
/// already free), true once the hold was ended; the word is then ABANDONED.
///
/// This is a fifth edge in the transition table, `HELD h (+W) -> me (+W kept) -> ABANDONED`,
/// the only one that takes a lock from a holder not proven dead. Why each step is safe:
///
/// 1. **Take the word, don't free it.** A CAS from the holder's exact word to our own id (W
///    kept, so sleepers are still woken later). From here on the lock is held by a live handle
///    (ours): no contender can take it, and the old holder's release fails its CAS and reports
///    `NotHeld`, exactly as after a takeover. Ids are never reissued, so the old holder can
///    never mistake a later word for its own.
/// 2. **Wait until the old holder's token is written.** A holder stores its token with a plain
///    load and store right after winning the word (see "Fencing tokens"). Were the lock freed
///    while that store is still to come, the next holder could read the old counter and get
///    the same token as the forced-out holder, or the late store could move the counter back.
///    While we hold the word nobody else writes the counter, so once the holder's store has
///    happened the counter is final, and every later token is larger than the forced-out
///    holder's.
/// 3. **Free it as ABANDONED, always**, through the same path as any hold that ends without a
///    release (it wakes one sleeper if W is set). The next holder is told `owner_died`: the
///    forced-out holder may have left its work half-done, just as a crashed one would. The word
///    is never given back to the old holder, even if `settle` gave up: between its last look
///    and a give-back, the holder could finish acquiring and try to release (failing, since we
///    hold the word), and would then never release the lock it was given back (the loom model
///    finds that interleaving). The price of giving up is only the token of a holder stopped
///    between winning the word and storing its token for longer than `settle` waits.
///
/// The token counter itself is never written here: the next acquisition hands out counter + 1.
pub fn force_release<E: WaitEnv>(cell: &LockCell, me: u64, env: &E, settle: impl FnOnce(u64)) -> bool {
  let holder = loop {
    let cur = cell.word.load(Ordering::SeqCst);
    let Some(holder) = holder_of(cur) else {
      return false;
    };
    if cas(&cell.word, cur, me | (cur & WAITERS), Ordering::Acquire).is_ok() {
      break holder;
    }
    // A release, a takeover or a sleeper setting W moved the word: look again.
  };
  // A forcer that dies here holds the word under its own id: the next contender proves it
  // dead and takes over, as from any dead holder.
  reached(Step::ForceTookWord);
  settle(holder);
  // Cannot fail: only W can have changed in a word we hold.
  free_word(cell, me, ABANDONED, env).is_ok()
}

#[cfg(all(test, not(loom)))]
mod tests {
  use super::*;
  use std::cell::Cell;

  /// An environment with no real sleeping: good for single-threaded state checks.
  struct NoSleep {
    dead: Cell<Option<u64>>,
    wakes: Cell<u32>,
  }
  impl WaitEnv for NoSleep {
    fn holder_is_dead(&self, holder: u64) -> bool {
      self.dead.get() == Some(holder)
    }
    fn watch(&self, _: u64) -> Duration {
      Duration::from_millis(1)
    }
    fn wait(&self, _: &AtomicU32, _: u32, timeout: Option<Duration>) {
      std::thread::sleep(timeout.unwrap_or(Duration::from_millis(1)));
    }
    fn wake(&self, _: &AtomicU32, _: i32) {
      self.wakes.set(self.wakes.get() + 1);
    }
  }
  fn env() -> NoSleep {
    NoSleep {
      dead: Cell::new(None),
      wakes: Cell::new(0),
    }
  }

  #[test]
  fn ids_round_trip() {
    let id = handle_id(7, 12345);
    assert_eq!(pslot_of(id), 7);
    assert_eq!(seq_of(id), 12345);
    assert_eq!(id & WAITERS, 0);
    assert_eq!(holder_of(id | WAITERS), Some(id));
    assert_eq!(holder_of(ABANDONED), None);
    assert_eq!(holder_of(ABANDONED | WAITERS), None);
    assert_eq!(holder_of(0), None);
  }

  #[test]
  fn exclusion_and_tokens() {
    let cell = LockCell::new();
    let (a, b) = (handle_id(1, 1), handle_id(2, 1));
    let e = env();
    let first = try_fast(&cell, a).unwrap();
    assert_eq!(
      first,
      Acquired {
        token: 1,
        owner_died: false
      }
    );
    assert!(try_fast(&cell, b).is_none());
    assert!(try_once(&cell, b, &e, true).is_none());
    assert_eq!(release(&cell, b, &e), Err(NotHeld));
    release(&cell, a, &e).unwrap();
    assert_eq!(release(&cell, a, &e), Err(NotHeld));
    assert_eq!(try_once(&cell, b, &e, true).unwrap().token, 2);
  }

  #[test]
  fn takeover_only_from_a_dead_holder() {
    let cell = LockCell::new();
    let e = env();
    let (dead, me) = (handle_id(1, 9), handle_id(2, 1));
    try_fast(&cell, dead).unwrap();
    assert!(try_once(&cell, me, &e, true).is_none());
    let start = Instant::now();
    assert_eq!(
      acquire(&cell, me, &e, Some(start + Duration::from_millis(20)), &|| false),
      Err(Stop::TimedOut)
    );
    e.dead.set(Some(dead));
    // Even a zero timeout takes over from a dead holder.
    let got = acquire(&cell, me, &e, Some(Instant::now()), &|| false).unwrap();
    assert!(got.owner_died);
    assert_eq!(got.token, 2);
    assert_eq!(release(&cell, dead, &e), Err(NotHeld), "the dead holder's id no longer matches");
  }

  #[test]
  fn abandoned_reports_owner_died_once() {
    let cell = LockCell::new();
    let e = env();
    let (a, b) = (handle_id(1, 1), handle_id(1, 2));
    try_fast(&cell, a).unwrap();
    abandon(&cell, a, &e).unwrap();
    assert!(try_fast(&cell, b).is_none(), "the fast path only takes FREE");
    let got = acquire(&cell, b, &e, None, &|| false).unwrap();
    assert!(got.owner_died);
    release(&cell, b, &e).unwrap();
    assert!(!try_fast(&cell, a).unwrap().owner_died);
  }

  #[test]
  fn waiter_bit_makes_release_bump_and_wake() {
    let cell = LockCell::new();
    let e = env();
    let (a, b) = (handle_id(1, 1), handle_id(2, 1));
    try_fast(&cell, a).unwrap();
    // b times out after sleeping: it set W and passes one wake on when leaving.
    let r = acquire(&cell, b, &e, Some(Instant::now() + Duration::from_millis(5)), &|| false);
    assert_eq!(r, Err(Stop::TimedOut));
    assert_eq!(cell.word.load(Ordering::Relaxed), a | WAITERS);
    let (wakes, counter) = (e.wakes.get(), cell.wake.load(Ordering::Relaxed));
    release(&cell, a, &e).unwrap();
    assert_eq!(e.wakes.get(), wakes + 1);
    assert_eq!(cell.wake.load(Ordering::Relaxed), counter + 1, "the counter moves before the wake");
    assert_eq!(cell.word.load(Ordering::Relaxed), 0);
    // Without W a release touches neither.
    try_fast(&cell, a).unwrap();
    release(&cell, a, &e).unwrap();
    assert_eq!(e.wakes.get(), wakes + 1);
  }

  /// Every sleep is cut short by a wake-up (as when the holder releases and at once re-takes
  /// the lock), and the environment says whether such a wake-up may mean death.
  struct Rewoken {
    may_mean_death: bool,
    probes: Cell<u32>,
  }
  impl WaitEnv for Rewoken {
    fn holder_is_dead(&self, _: u64) -> bool {
      self.probes.set(self.probes.get() + 1);
      false
    }
    fn watch(&self, _: u64) -> Duration {
      Duration::from_secs(1)
    }
    fn wait(&self, counter: &AtomicU32, _: u32, _: Option<Duration>) {
      counter.fetch_add(1, Ordering::SeqCst);
    }
    fn wake(&self, _: &AtomicU32, _: i32) {}
    fn wake_may_mean_death(&self, _: u64) -> bool {
      self.may_mean_death
    }
  }

  #[test]
  fn a_wake_that_cannot_mean_death_is_not_probed() {
    for may_mean_death in [true, false] {
      let cell = LockCell::new();
      try_fast(&cell, handle_id(1, 1)).unwrap();
      let e = Rewoken {
        may_mean_death,
        probes: Cell::new(0),
      };
      let deadline = Instant::now() + Duration::from_millis(5);
      assert_eq!(acquire(&cell, handle_id(2, 1), &e, Some(deadline), &|| false), Err(Stop::TimedOut));
      let woken = cell.wake.load(Ordering::Relaxed);
      if may_mean_death {
        assert!(
          e.probes.get() + 1 >= woken,
          "every wake-up is probed: {} of {woken}",
          e.probes.get()
        );
      } else {
        // Only the probe before giving up at the deadline.
        assert_eq!(e.probes.get(), 1, "{woken} wake-ups");
      }
    }
  }

  #[test]
  fn cancel_stops_a_wait() {
    let cell = LockCell::new();
    let e = env();
    try_fast(&cell, handle_id(1, 1)).unwrap();
    let n = Cell::new(0);
    let r = acquire(&cell, handle_id(2, 1), &e, None, &|| {
      n.set(n.get() + 1);
      n.get() > 3
    });
    assert_eq!(r, Err(Stop::Cancelled));
  }

  #[test]
  fn forced_release_ends_a_live_hold_for_good() {
    let cell = LockCell::new();
    let e = env();
    let (a, b, forcer) = (handle_id(1, 1), handle_id(2, 1), handle_id(3, 1));
    assert!(!force_release(&cell, forcer, &e, |_| ()), "nothing to end");
    let first = try_fast(&cell, a).unwrap();
    let mut asked = None;
    assert!(force_release(&cell, forcer, &e, |h| {
      // While the forcer waits, it holds the word: nobody can take the lock, the holder cannot release it.
      assert_eq!(cell.word.load(Ordering::Relaxed), forcer);
      asked = Some(h);
    }));
    assert_eq!(asked, Some(a), "settle waits for the holder");
    assert_eq!(cell.word.load(Ordering::Relaxed), ABANDONED);
    assert_eq!(release(&cell, a, &e), Err(NotHeld), "the forced-out holder's release fails");
    assert!(!force_release(&cell, forcer, &e, |_| ()), "ABANDONED is already free");
    let next = acquire(&cell, b, &e, None, &|| false).unwrap();
    assert!(next.owner_died, "the next holder is told its predecessor did not release");
    assert!(next.token > first.token);
    release(&cell, b, &e).unwrap();
  }

  #[test]
  fn forced_release_wakes_a_sleeper() {
    let cell = LockCell::new();
    let e = env();
    let (a, b, forcer) = (handle_id(1, 1), handle_id(2, 1), handle_id(3, 1));
    try_fast(&cell, a).unwrap();
    let r = acquire(&cell, b, &e, Some(Instant::now() + Duration::from_millis(3)), &|| false);
    assert_eq!(r, Err(Stop::TimedOut));
    let wakes = e.wakes.get();
    assert!(force_release(&cell, forcer, &e, |_| ()));
    assert_eq!(e.wakes.get(), wakes + 1);
    assert_eq!(cell.word.load(Ordering::Relaxed), ABANDONED);
  }
}
