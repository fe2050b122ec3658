//! Fuzzing what the shm backend reads from shared memory: the entries of the process table
//! (`shm-procs.seg`, `shm/liveness.rs`) and of the lock table (`shm-locks-0.seg`, `shm/slot_table.rs`),
//! behind valid headers.
//!
//! Each case builds a fresh lock directory whose tables have valid headers and fuzzed entries:
//! the slot of the lock under test (claimed, claimed without a name, or unclaimed) with a
//! random lock word, fencing-token counter, wake counter and holder record; foreign slots
//! before it in its probe window; more garbage slots after it and anywhere in the table (random
//! keys, name lengths, names, duplicates of the lock's own name); and process entries with
//! random next/base seqs, pids and start identities, including our own slot's counter near
//! exhaustion. Lock words are drawn from: free, abandoned, a holder in a process slot that
//! cannot exist, a stale or a never-issued id of our own process slot, a dead holder in another
//! slot, a holder that is provably alive by pid and start identity (through the process table
//! or through its holder record), and plain random words.
//!
//! Then, through the public API only (`ShmLock::open`, `try_lock`, `lock` with a short
//! deadline, `unlock`, `owner`, `is_locked`, `inspect`, `list`, `force_release`), the
//! properties:
//! - nothing panics or hangs (every case runs under a watchdog), and errors are only `Corrupt`;
//! - a process-slot counter near exhaustion (`next_seq` beyond 2^47 - 2^32) is `Corrupt`,
//!   never an overflowed id;
//! - free and abandoned words are taken (abandoned ones with `owner_died`); a holder that is
//!   dead or impossible is taken over with `owner_died` (or its hold ended by a forced release,
//!   after which the next holder is still told); a holder that is provably alive is never
//!   taken (a single try fails, a wait times out);
//! - a fencing-token counter above `TOKEN_LIMIT` (near `u64::MAX`, where the next token would
//!   wrap to 0) makes opening the lock `Corrupt`; below it, an acquisition's token is the
//!   counter it found + 1;
//! - the handle then behaves as a lock: excludes a second handle, releases, hands over;
//! - `owner()`, `inspect()` and `list()` agree, and `list()` only reports locks that `inspect()`
//!   finds in the same state (a garbage slot is not reported as a lock).
//!
//! The byte offsets below are the `#[repr(C)]` layouts of `Slot`, `HolderRecord` and
//! `ProcEntry`; `the_fuzzed_offsets_are_where_proclock_writes` checks them against what
//! proclock itself writes, so the fuzzing cannot drift off the real fields.
//!
//! Cases are costly (a directory, two tables, a process registration and a mapping each, kept
//! for the life of the test process), so the default is 128 cases, a few seconds;
//! `PROPTEST_CASES=N` runs N.

// Unix only: the helpers make private files and directories with Unix modes, and the layouts
// read back through Unix positional I/O. The properties are the same elsewhere.
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{bytes, config, within, Bytes, Scratch, CASE_LIMIT};
use proclock_core::backend::Backend;
use proclock_core::inspect::{self, Seen};
use proclock_core::shm::liveness::{PROCS_FILE, PROCS_LAYOUT, PROC_SLOTS};
use proclock_core::lock_dir::LockDir;
use proclock_core::lock_word::{handle_id, ABANDONED, SEQ_BITS, WAITERS};
use proclock_core::name::LockName;
use proclock_core::process_info;
use proclock_core::raw_lock::Stop;
use proclock_core::shm::segment::{Segment, HEADER_SIZE};
use proclock_core::shm::TOKEN_LIMIT;
use proclock_core::shm::slot_table::{LOCKS_LAYOUT, SLOTS_PER_SEGMENT};
use proclock_core::{ErrorKind, InspectLock, RawLock, ShmLock};
use proptest::collection::vec;
use proptest::prelude::*;

// `Slot` (640 bytes): key, then the `LockCell` (word, token, wake, reserved), the
// `HolderRecord` (320 bytes), name_len and the name.
const SLOT_SIZE: usize = 640;
const KEY: usize = 0;
const WORD: usize = 8;
const TOKEN: usize = 16;
const WAKE: usize = 24;
const RECORD: usize = 32;
const NAME_LEN: usize = 352;
const NAME: usize = 360;
// `HolderRecord`, from its start: seq u32, desc_len u32, holder, uuid (16), pid, identity,
// since_ms, token, description (256).
const REC_SIZE: usize = 320;
const REC_SEQ: usize = 0;
const REC_DESC_LEN: usize = 4;
const REC_HOLDER: usize = 8;
const REC_PID: usize = 32;
const REC_IDENTITY: usize = 40;
const REC_TOKEN: usize = 56;
const REC_DESC: usize = 64;
// `ProcEntry` (64 bytes): next_seq, base_seq, pid, identity, reserved.
const PROC_SIZE: usize = 64;
/// A name's slot is searched in this many consecutive slots from `(key >> 20) % 4096`
/// (`shm/slot_table.rs`, `WINDOW`).
const WINDOW: usize = 64;
/// `Liveness::register` refuses a process slot whose counter is at or past this.
const SEQ_LIMIT: u64 = (1 << SEQ_BITS) - (1 << 32);

const NAME_UNDER_TEST: &str = "fuzzed/lock";

fn me() -> (u32, u64) {
  let pid = process_info::current_pid();
  (pid, process_info::start_identity(pid).expect("own start identity"))
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
  buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
  buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
  u64::from_le_bytes(buf[at..at + 8].try_into().unwrap())
}

/// The lock word of the slot under test.
#[derive(Debug, Clone)]
enum Word {
  Free {
    w: bool,
  },
  Abandoned {
    w: bool,
  },
  /// A process slot past the table (`0xffff` is only ever `ABANDONED`).
  Impossible {
    pslot: u16,
    seq: u64,
    w: bool,
  },
  /// An id our process slot issued before we got it: its process is gone.
  OwnStale {
    back: u64,
    w: bool,
  },
  /// An id our process slot has not issued (and will not in this case).
  OwnFuture {
    ahead: u64,
    w: bool,
  },
  /// A holder in another process slot whose process is not running. `current`: the holder is
  /// the slot's current occupant (its seq is at or past the slot's base).
  OtherDead {
    pslot: u16,
    seq: u64,
    current: bool,
    pid: u32,
    identity: u64,
    w: bool,
  },
  /// A holder in another process slot whose pid and start identity are this very (running)
  /// process: alive, whatever its liveness file says. `via_record`: only its holder record says
  /// so (it is no longer its slot's current occupant).
  OtherAlive {
    pslot: u16,
    seq: u64,
    via_record: bool,
    w: bool,
  },
  Random(u64),
}

/// What must happen to the lock under test.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
  Free,
  Abandoned,
  /// Held by a dead or impossible holder: taken over, `owner_died`.
  Dead,
  /// Held by a live holder: never taken.
  Alive,
  /// A random word: either, consistently.
  Either,
}

fn seq() -> impl Strategy<Value = u64> {
  prop_oneof![1u64..1000, 1u64..(1 << SEQ_BITS)]
}

fn other_pslot() -> impl Strategy<Value = u16> {
  1u16..PROC_SLOTS as u16
}

fn word() -> impl Strategy<Value = Word> {
  let w = any::<bool>;
  prop_oneof![
    w().prop_map(|w| Word::Free { w }),
    w().prop_map(|w| Word::Abandoned { w }),
    (PROC_SLOTS as u16..=u16::MAX, seq(), w()).prop_map(|(pslot, seq, w)| Word::Impossible { pslot, seq, w }),
    (1u64..1 << 20, w()).prop_map(|(back, w)| Word::OwnStale { back, w }),
    (0u64..1 << 20, w()).prop_map(|(ahead, w)| Word::OwnFuture { ahead, w }),
    (
      other_pslot(),
      seq(),
      any::<bool>(),
      any::<u32>(),
      prop_oneof![Just(0u64), any::<u64>()],
      w()
    )
      .prop_map(|(pslot, seq, current, pid, identity, w)| Word::OtherDead {
        pslot,
        seq,
        current,
        pid,
        identity,
        w
      }),
    (other_pslot(), seq(), any::<bool>(), w()).prop_map(|(pslot, seq, via_record, w)| Word::OtherAlive { pslot, seq, via_record, w }),
    any::<u64>().prop_map(Word::Random),
  ]
}

/// How the slot under test is keyed and named.
#[derive(Debug, Clone, Copy)]
enum Target {
  /// Key and name of the lock: found as it is.
  Claimed,
  /// Key of the lock, no name (a claimer died before writing it): adopted.
  Unnamed,
  /// Key 0, garbage elsewhere: claimed.
  Unclaimed,
}

/// A garbage slot.
#[derive(Debug, Clone)]
struct Garbage {
  bytes: Bytes,
  key: GarbageKey,
  name: GarbageName,
}

#[derive(Debug, Clone)]
enum GarbageKey {
  Random,
  /// The key of the lock under test.
  Ours,
}

#[derive(Debug, Clone)]
enum GarbageName {
  /// Whatever the bytes say.
  Random,
  /// A readable name of `len` bytes.
  Ascii(usize),
  /// The name of the lock under test.
  Ours,
  /// An empty name (length 0).
  Empty,
}

fn garbage() -> impl Strategy<Value = Garbage> {
  (
    bytes(SLOT_SIZE),
    prop_oneof![3 => Just(GarbageKey::Random), 1 => Just(GarbageKey::Ours)],
    prop_oneof![
      Just(GarbageName::Random),
      (1usize..=255).prop_map(GarbageName::Ascii),
      Just(GarbageName::Ours),
      Just(GarbageName::Empty)
    ],
  )
    .prop_map(|(bytes, key, name)| Garbage { bytes, key, name })
}

impl Garbage {
  fn render(&self, lock: &LockName) -> Vec<u8> {
    let mut b = self.bytes.0.clone();
    let key = match self.key {
      GarbageKey::Random => get_u64(&b, KEY) | 1,
      GarbageKey::Ours => lock.key(),
    };
    put_u64(&mut b, KEY, key);
    match self.name {
      GarbageName::Random => {}
      GarbageName::Ascii(len) => {
        put_u64(&mut b, NAME_LEN, len as u64);
        for (i, byte) in b[NAME..NAME + len].iter_mut().enumerate() {
          *byte = b'a' + (*byte ^ i as u8) % 26;
        }
      }
      GarbageName::Ours => write_name(&mut b, lock.as_str()),
      GarbageName::Empty => put_u64(&mut b, NAME_LEN, 0),
    }
    b
  }
}

fn write_name(slot: &mut [u8], name: &str) {
  put_u64(slot, NAME_LEN, name.len() as u64);
  slot[NAME..NAME + name.len()].copy_from_slice(name.as_bytes());
}

/// A foreign slot in the lock's window before its own: a nonzero key that is not the lock's,
/// or the lock's key with another (nonempty) name. Lookups must pass over it.
#[derive(Debug, Clone)]
struct Foreign {
  bytes: Bytes,
  same_key: bool,
}

fn foreign() -> impl Strategy<Value = Foreign> {
  (bytes(SLOT_SIZE), prop_oneof![3 => Just(false), 1 => Just(true)]).prop_map(|(bytes, same_key)| Foreign { bytes, same_key })
}

impl Foreign {
  fn render(&self, lock: &LockName) -> Vec<u8> {
    let mut b = self.bytes.0.clone();
    if self.same_key {
      put_u64(&mut b, KEY, lock.key());
      // Another name, never empty (an empty name under our key would be ours to adopt).
      write_name(&mut b, "someone/else");
    } else {
      let mut key = get_u64(&b, KEY) | 1;
      if key == lock.key() {
        key ^= 2;
      }
      put_u64(&mut b, KEY, key);
    }
    b
  }
}

#[derive(Debug, Clone)]
struct Case {
  /// Our process slot's (slot 0) counter; the rest of the entry is garbage that registration
  /// overwrites.
  own_next_seq: u64,
  own_entry: Bytes,
  word: Word,
  token: u64,
  wake: u32,
  /// The slot under test's bytes (key, word, token, wake, name are then set as described).
  slot: Bytes,
  record_seq_odd: bool,
  target: Target,
  before: Vec<Foreign>,
  after: Vec<Garbage>,
  /// Garbage slots outside the window: (distance past the window, slot).
  elsewhere: Vec<(usize, Garbage)>,
  /// Garbage process entries in other slots.
  procs: Vec<(u16, Bytes)>,
  /// An operator's forced release comes first (skipped for live holders: it would wait a
  /// second for them to settle).
  forced: bool,
}

fn case() -> impl Strategy<Value = Case> {
  (
    (
      prop_oneof![
        8 => 0u64..1 << 40,
        1 => SEQ_LIMIT - 3..SEQ_LIMIT + 3,
        1 => any::<u64>(),
      ],
      bytes(PROC_SIZE),
      word(),
      prop_oneof![
        3 => any::<u64>(),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        1 => TOKEN_LIMIT - 2..TOKEN_LIMIT + 2,
        1 => 0u64..4
      ],
      any::<u32>(),
      bytes(SLOT_SIZE),
      any::<bool>(),
    ),
    (
      prop_oneof![Just(Target::Claimed), Just(Target::Unnamed), Just(Target::Unclaimed)],
      vec(foreign(), 0..3),
      vec(garbage(), 0..3),
      vec((0usize..SLOTS_PER_SEGMENT - WINDOW, garbage()), 0..4),
      vec((other_pslot(), bytes(PROC_SIZE)), 0..4),
      any::<bool>(),
    ),
  )
    .prop_map(
      |((own_next_seq, own_entry, word, token, wake, slot, record_seq_odd), (target, before, after, elsewhere, procs, forced))| Case {
        own_next_seq,
        own_entry,
        word,
        token,
        wake,
        slot,
        record_seq_odd,
        target,
        before,
        after,
        elsewhere,
        procs,
        forced,
      },
    )
}

/// What a case's tables say, once planted.
struct Planted {
  expect: Expect,
  /// Registration must refuse our process slot's exhausted counter.
  exhausted: bool,
  /// The fencing-token counter the lock under test starts from.
  token: u64,
  /// The slot is claimed or adopted by this test's open, which raises its counter to the
  /// time-based start (`clock::token_start`) if it is below it.
  claimed_now: bool,
}

fn plant(dir: &Path, case: &Case) -> Planted {
  let lock_dir = LockDir::open(dir).unwrap();
  drop(Segment::open(&lock_dir, PROCS_FILE, PROCS_LAYOUT, 0).unwrap());
  drop(Segment::open(&lock_dir, "shm-locks-0.seg", LOCKS_LAYOUT, 0).unwrap());
  let procs = fs::OpenOptions::new().write(true).open(dir.join(PROCS_FILE)).unwrap();
  let locks = fs::OpenOptions::new().write(true).open(dir.join("shm-locks-0.seg")).unwrap();
  let put_proc = |pslot: u16, entry: &[u8]| {
    procs
      .write_all_at(entry, (HEADER_SIZE + usize::from(pslot) * PROC_SIZE) as u64)
      .unwrap()
  };
  let put_slot = |index: usize, slot: &[u8]| locks.write_all_at(slot, (HEADER_SIZE + index * SLOT_SIZE) as u64).unwrap();
  let (my_pid, my_identity) = me();
  let lock = LockName::new(NAME_UNDER_TEST).unwrap();

  for (pslot, entry) in &case.procs {
    put_proc(*pslot, entry);
  }
  // Our process will register in slot 0 (the first free one of a fresh directory); its first
  // handle gets seq `base`.
  let mut own_next_seq = case.own_next_seq;
  if matches!(case.word, Word::OwnStale { .. }) {
    own_next_seq = own_next_seq.max(2);
  }
  let mut own = case.own_entry.0.clone();
  put_u64(&mut own, 0, own_next_seq);
  put_proc(0, &own);
  let base = own_next_seq.max(1);
  if base >= SEQ_LIMIT {
    // Registration must refuse this; what the slot holds does not matter.
    return Planted {
      expect: Expect::Either,
      exhausted: true,
      token: case.token,
      claimed_now: false,
    };
  }

  let mut record = case.slot[RECORD..RECORD + REC_SIZE].to_vec();
  let seq_word = u32::from_le_bytes(record[REC_SEQ..REC_SEQ + 4].try_into().unwrap());
  put_u32(&mut record, REC_SEQ, (seq_word & !1) | u32::from(case.record_seq_odd));
  // A garbage record must not claim this process by accident (that would make the holder
  // alive, which only `OtherAlive` is meant to do).
  if get_u64(&record, REC_IDENTITY) == my_identity {
    put_u64(&mut record, REC_IDENTITY, my_identity ^ 0x10);
  }

  let waiters = |w: bool| if w { WAITERS } else { 0 };
  let (word, expect) = match case.word {
    Word::Free { w } => (waiters(w), Expect::Free),
    Word::Abandoned { w } => (ABANDONED | waiters(w), Expect::Abandoned),
    Word::Impossible { pslot, seq, w } => {
      let id = (u64::from(pslot) << 48) | (seq << 1);
      if id == ABANDONED {
        (ABANDONED | waiters(w), Expect::Abandoned)
      } else {
        (id | waiters(w), Expect::Dead)
      }
    }
    Word::OwnStale { back, w } => (handle_id(0, base - 1 - back % (base - 1)) | waiters(w), Expect::Dead),
    Word::OwnFuture { ahead, w } => (handle_id(0, base + 1000 + ahead) | waiters(w), Expect::Alive),
    Word::OtherDead {
      pslot,
      seq,
      current,
      pid,
      identity,
      w,
    } => {
      let mut entry = vec![0u8; PROC_SIZE];
      let identity = if identity == my_identity { identity ^ 0x10 } else { identity };
      put_u64(&mut entry, 0, seq + 1);
      put_u64(&mut entry, 8, if current { seq } else { seq + 1 });
      put_u64(&mut entry, 16, u64::from(pid));
      put_u64(&mut entry, 24, identity);
      put_proc(pslot, &entry);
      (handle_id(pslot, seq) | waiters(w), Expect::Dead)
    }
    Word::OtherAlive { pslot, seq, via_record, w } => {
      let id = handle_id(pslot, seq);
      let mut entry = vec![0u8; PROC_SIZE];
      put_u64(&mut entry, 0, seq + 1);
      if via_record {
        // A former occupant of the slot; only its record, which names it, can say who it was.
        put_u64(&mut entry, 8, seq + 1);
        put_u64(&mut entry, 16, 1);
        put_u64(&mut entry, 24, 0);
        put_u32(&mut record, REC_SEQ, 2);
        put_u64(&mut record, REC_HOLDER, id);
        put_u64(&mut record, REC_PID, u64::from(my_pid));
        put_u64(&mut record, REC_IDENTITY, my_identity);
      } else {
        put_u64(&mut entry, 8, seq);
        put_u64(&mut entry, 16, u64::from(my_pid));
        put_u64(&mut entry, 24, my_identity);
      }
      put_proc(pslot, &entry);
      (id | waiters(w), Expect::Alive)
    }
    Word::Random(v) => (v, Expect::Either),
  };

  let mut slot = case.slot.0.clone();
  put_u64(&mut slot, WORD, word);
  put_u64(&mut slot, TOKEN, case.token);
  put_u32(&mut slot, WAKE, case.wake);
  slot[RECORD..RECORD + REC_SIZE].copy_from_slice(&record);
  match case.target {
    Target::Claimed => {
      put_u64(&mut slot, KEY, lock.key());
      write_name(&mut slot, lock.as_str());
    }
    Target::Unnamed => {
      put_u64(&mut slot, KEY, lock.key());
      put_u64(&mut slot, NAME_LEN, 0);
    }
    Target::Unclaimed => put_u64(&mut slot, KEY, 0),
  }

  let start = (lock.key() >> 20) as usize % SLOTS_PER_SEGMENT;
  let at = |i: usize| (start + i) % SLOTS_PER_SEGMENT;
  for (i, f) in case.before.iter().enumerate() {
    put_slot(at(i), &f.render(&lock));
  }
  put_slot(at(case.before.len()), &slot);
  for (i, g) in case.after.iter().enumerate() {
    put_slot(at(case.before.len() + 1 + i), &g.render(&lock));
  }
  for (distance, g) in &case.elsewhere {
    put_slot(at(WINDOW + distance), &g.render(&lock));
  }

  Planted {
    expect,
    exhausted: false,
    token: case.token,
    claimed_now: !matches!(case.target, Target::Claimed),
  }
}

/// `list()` and `inspect()` agree on every shm lock listed, and the lock under test is listed
/// exactly once, as `expected`.
fn check_listing(dir: &Path, expected: &Seen) {
  let listed = inspect::list(Some(dir)).unwrap_or_else(|e| panic!("list: {e}"));
  let mut ours = 0;
  for state in listed.iter().filter(|s| s.backend == Backend::Shm) {
    let looked = inspect::inspect(Backend::Shm, &state.name, Some(dir)).unwrap_or_else(|e| panic!("inspect {:?}: {e}", state.name));
    assert_eq!(
      looked.seen, state.seen,
      "list() reports {:?} as {:?}, inspect() as {:?}",
      state.name, state.seen, looked.seen
    );
    if state.name == NAME_UNDER_TEST {
      ours += 1;
      assert_eq!(&state.seen, expected, "the lock under test as listed");
    }
  }
  assert_eq!(ours, 1, "the lock under test is listed exactly once");
}

fn run_case(case: Case) {
  let scratch = Scratch::new("shm");
  let dir = scratch.path();
  let planted = plant(dir, &case);
  let (my_pid, _) = me();

  let start_before = proclock_core::clock::token_start();
  let a = ShmLock::open(NAME_UNDER_TEST, Some(dir));
  let start_after = proclock_core::clock::token_start();
  if planted.exhausted {
    // Registration refuses the exhausted counter, whoever asks.
    assert_eq!(a.err().map(|e| e.kind()), Some(ErrorKind::Corrupt), "an exhausted seq counter");
    // Looking registers nothing (it must write nothing), so it never issues a seq and the
    // exhausted counter is not its concern: the name (never planted in this case) is free.
    let looked = inspect::inspect(Backend::Shm, NAME_UNDER_TEST, Some(dir));
    assert_eq!(
      looked.map(|s| s.seen).map_err(|e| e.kind()),
      Ok(Seen::default()),
      "inspect with an exhausted counter"
    );
    let listed = inspect::list(Some(dir)).unwrap_or_else(|e| panic!("list with an exhausted counter: {e}"));
    assert!(
      listed.iter().all(|s| s.backend != Backend::Shm),
      "list with an exhausted counter: {listed:?}"
    );
    return;
  }
  if planted.token > TOKEN_LIMIT {
    // A counter this near its end is refused before any token can wrap.
    assert_eq!(
      a.err().map(|e| e.kind()),
      Some(ErrorKind::Corrupt),
      "a token counter of {}",
      planted.token
    );
    return;
  }
  let a = a.unwrap_or_else(|e| panic!("open: {e}"));

  // Before anyone acquires: what the word says, consistently through every way of looking.
  let owner = a.owner().unwrap();
  let locked = a.is_locked().unwrap();
  let seen = Seen {
    locked,
    owner: owner.clone(),
  };
  assert_eq!(inspect::inspect(Backend::Shm, NAME_UNDER_TEST, Some(dir)).unwrap().seen, seen);
  check_listing(dir, &seen);
  match planted.expect {
    Expect::Free | Expect::Abandoned => assert_eq!(seen, Seen::default(), "a free lock has no owner"),
    Expect::Dead => assert!(!locked && owner.as_ref().is_some_and(|o| !o.alive), "a dead holder: {owner:?}"),
    Expect::Alive => assert!(locked && owner.as_ref().is_some_and(|o| o.alive), "a live holder: {owner:?}"),
    Expect::Either => assert_eq!(locked, owner.as_ref().is_some_and(|o| o.alive)),
  }

  if case.forced && matches!(planted.expect, Expect::Free | Expect::Abandoned | Expect::Dead) {
    // A forced release ends a dead or impossible holder's hold (as ABANDONED, so the next
    // holder is still told), and finds nothing to end in a free or abandoned lock.
    let forced = inspect::force_release(Backend::Shm, NAME_UNDER_TEST, Some(dir)).unwrap_or_else(|e| panic!("force_release: {e}"));
    assert_eq!(
      forced,
      planted.expect == Expect::Dead,
      "force_release of a {:?} lock",
      planted.expect
    );
    assert!(!a.is_locked().unwrap());
    assert_eq!(a.owner().unwrap(), None, "nothing is held after a forced release");
  }

  let got = a.try_lock(b"fuzz", true).unwrap_or_else(|e| panic!("try_lock: {e}"));
  match planted.expect {
    Expect::Free => assert_eq!(got.map(|g| g.owner_died), Some(false), "a free lock is taken"),
    Expect::Abandoned | Expect::Dead => assert_eq!(got.map(|g| g.owner_died), Some(true), "taken over with owner_died"),
    Expect::Alive => assert_eq!(got, None, "a live holder is never robbed"),
    Expect::Either => assert_eq!(got.is_none(), locked, "a single try follows liveness"),
  }

  let Some(got) = got else {
    // Held by a live holder: a wait times out, and nothing is held.
    let t0 = Instant::now();
    let waited = a.lock(b"fuzz", Some(t0 + Duration::from_millis(20)), &|| false).unwrap();
    assert_eq!(waited.err(), Some(Stop::TimedOut));
    assert!(t0.elapsed() >= Duration::from_millis(20));
    assert_eq!(a.unlock().unwrap_err().kind(), ErrorKind::NotHeld);
    assert!(a.is_locked().unwrap());
    check_listing(dir, &seen);
    return;
  };

  // Acquired: the token grew past the counter found (and past the time-based start, for a
  // slot claimed now), and the lock now works as a lock.
  if planted.claimed_now && planted.token < start_before {
    assert!(
      got.token > start_before && got.token <= start_after + 1,
      "fencing token {} of a slot claimed now, after a counter of {}",
      got.token,
      planted.token
    );
  } else {
    assert_eq!(
      Some(got.token),
      planted.token.checked_add(1),
      "fencing token after a counter of {}",
      planted.token
    );
  }
  let mine = a.owner().unwrap().expect("held");
  assert_eq!(
    (mine.pid, mine.token, mine.alive, mine.description.as_str()),
    (my_pid, got.token, true, "fuzz")
  );
  assert!(a.is_locked().unwrap());
  let held = Seen {
    locked: true,
    owner: Some(mine),
  };
  check_listing(dir, &held);
  let b = ShmLock::open(NAME_UNDER_TEST, Some(dir));
  if got.token > TOKEN_LIMIT {
    // The counter has just passed the limit: handles already open go on working, new ones are
    // refused.
    assert_eq!(b.err().map(|e| e.kind()), Some(ErrorKind::Corrupt));
    a.unlock().unwrap();
    assert!(!a.is_locked().unwrap());
    return;
  }
  let b = b.unwrap();
  assert_eq!(b.try_lock(b"b", true).unwrap(), None, "a second handle is excluded");
  let t0 = Instant::now();
  assert_eq!(
    b.lock(b"b", Some(t0 + Duration::from_millis(10)), &|| false).unwrap().err(),
    Some(Stop::TimedOut)
  );
  assert_eq!(b.unlock().unwrap_err().kind(), ErrorKind::NotHeld);
  a.unlock().unwrap();
  assert_eq!(a.unlock().unwrap_err().kind(), ErrorKind::NotHeld);
  assert!(!a.is_locked().unwrap());
  let next = b.try_lock(b"b", true).unwrap().expect("free after the release");
  assert!(!next.owner_died);
  assert!(next.token > got.token);
  b.unlock().unwrap();
  check_listing(dir, &Seen::default());
}

proptest! {
  #![proptest_config(config(128))]

  #[test]
  fn fuzzed_table_entries_never_panic_hang_or_rob_a_live_holder(case in case()) {
    within(CASE_LIMIT, move || run_case(case));
  }
}

/// The offsets the fuzzing writes to are where proclock keeps those fields: a real hold, read
/// back from the files at those offsets.
#[test]
fn the_fuzzed_offsets_are_where_proclock_writes() {
  let scratch = Scratch::new("shm-layout");
  let dir = scratch.path();
  let lock = LockName::new(NAME_UNDER_TEST).unwrap();
  let a = ShmLock::open(NAME_UNDER_TEST, Some(dir)).unwrap();
  let got = a.try_lock(b"layout check", true).unwrap().unwrap();
  let (my_pid, my_identity) = me();

  let locks = fs::read(dir.join("shm-locks-0.seg")).unwrap();
  let start = (lock.key() >> 20) as usize % SLOTS_PER_SEGMENT;
  let slot = &locks[HEADER_SIZE + start * SLOT_SIZE..][..SLOT_SIZE];
  assert_eq!(get_u64(slot, KEY), lock.key());
  assert_eq!(get_u64(slot, WORD), a.id());
  assert_eq!(get_u64(slot, TOKEN), got.token);
  assert_eq!(get_u64(slot, NAME_LEN), NAME_UNDER_TEST.len() as u64);
  assert_eq!(&slot[NAME..NAME + NAME_UNDER_TEST.len()], NAME_UNDER_TEST.as_bytes());
  let record = &slot[RECORD..RECORD + REC_SIZE];
  assert_eq!(u32::from_le_bytes(record[REC_SEQ..REC_SEQ + 4].try_into().unwrap()) % 2, 0);
  assert_eq!(u32::from_le_bytes(record[REC_DESC_LEN..REC_DESC_LEN + 4].try_into().unwrap()), 12);
  assert_eq!(get_u64(record, REC_HOLDER), a.id());
  assert_eq!(get_u64(record, REC_PID), u64::from(my_pid));
  assert_eq!(get_u64(record, REC_IDENTITY), my_identity);
  assert_eq!(get_u64(record, REC_TOKEN), got.token);
  assert_eq!(&record[REC_DESC..REC_DESC + 12], b"layout check");

  let procs = fs::read(dir.join(PROCS_FILE)).unwrap();
  let entry = &procs[HEADER_SIZE..][..PROC_SIZE];
  assert_eq!(get_u64(entry, 0), 2, "next_seq: one handle issued");
  assert_eq!(get_u64(entry, 8), 1, "base_seq");
  assert_eq!(get_u64(entry, 16), u64::from(my_pid));
  assert_eq!(get_u64(entry, 24), my_identity);
  assert_eq!(a.id(), handle_id(0, 1), "a fresh directory's first process slot is 0");
  a.unlock().unwrap();
}

/// The process-slot counter right below and at the limit: one more handle id is fine, the
/// limit is `Corrupt` (never a wrapped or reused id).
#[test]
fn a_process_slot_counter_at_its_limit_is_corrupt() {
  for (next_seq, ok) in [(SEQ_LIMIT - 1, true), (SEQ_LIMIT, false), (u64::MAX, false)] {
    let scratch = Scratch::new("shm-limit");
    let dir = scratch.path();
    let lock_dir = LockDir::open(dir).unwrap();
    drop(Segment::open(&lock_dir, PROCS_FILE, PROCS_LAYOUT, 0).unwrap());
    let procs = fs::OpenOptions::new().write(true).open(dir.join(PROCS_FILE)).unwrap();
    procs.write_all_at(&next_seq.to_le_bytes(), HEADER_SIZE as u64).unwrap();
    let opened = ShmLock::open("limit", Some(dir));
    if ok {
      let a = opened.unwrap();
      assert_eq!(a.id(), handle_id(0, next_seq));
      assert!(a.try_lock(b"", true).unwrap().is_some());
      a.unlock().unwrap();
    } else {
      assert_eq!(opened.err().map(|e| e.kind()), Some(ErrorKind::Corrupt), "next_seq {next_seq}");
    }
  }
}

/// A case without random bytes: everything zero but what the test sets.
fn quiet(word: Word, token: u64) -> Case {
  Case {
    own_next_seq: 0,
    own_entry: Bytes(vec![0; PROC_SIZE]),
    word,
    token,
    wake: 0,
    slot: Bytes(vec![0; SLOT_SIZE]),
    record_seq_odd: false,
    target: Target::Claimed,
    before: vec![],
    after: vec![],
    elsewhere: vec![],
    procs: vec![],
    forced: false,
  }
}

/// Found by the fuzzing: `list()` reported garbage slots as locks that `inspect()` of the same
/// name does not see: another name stored under this lock's key in its window (the first
/// failure: "someone/else" listed as held by a dead holder, free for `inspect`), a copy of this
/// lock's name behind its real slot (listed twice), and a name outside its window.
#[test]
fn regression_list_reported_garbage_slots_as_locks() {
  let mut held = vec![0u8; SLOT_SIZE];
  put_u64(&mut held, WORD, 0xfffe_0000_0000_0010);
  let mut case = quiet(Word::Free { w: false }, 0);
  case.before = vec![Foreign {
    bytes: Bytes(held.clone()),
    same_key: true,
  }];
  case.after = vec![Garbage {
    bytes: Bytes(held.clone()),
    key: GarbageKey::Ours,
    name: GarbageName::Ours,
  }];
  case.elsewhere = vec![(
    100,
    Garbage {
      bytes: Bytes(held),
      key: GarbageKey::Random,
      name: GarbageName::Ascii(9),
    },
  )];
  run_case(case);
}

/// Found by the fuzzing: a fencing-token counter at `u64::MAX - 1` handed out `u64::MAX` and
/// then 0 (smaller than every earlier token); at `u64::MAX` it handed out 0 at once. Now a
/// counter above `TOKEN_LIMIT` is refused when the lock is opened; one at the limit still works.
#[test]
fn regression_a_token_counter_at_its_end_wrapped_to_0() {
  for word in [
    Word::Free { w: false },
    Word::Abandoned { w: true },
    Word::Impossible {
      pslot: 0xfffe,
      seq: 8,
      w: false,
    },
  ] {
    for token in [TOKEN_LIMIT, TOKEN_LIMIT + 1, u64::MAX - 1, u64::MAX] {
      run_case(quiet(word.clone(), token));
    }
  }
}
