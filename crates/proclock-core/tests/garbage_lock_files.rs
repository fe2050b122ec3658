//! Fuzzing the `file` backend's lock files (`file/format.rs`, `file/mod.rs`): what proclock does
//! with whatever it finds under a lock's file name.
//!
//! Inputs: random contents of random sizes (empty included); a valid file with bytes mutated
//! anywhere; a valid header with a garbage record; a valid header with any valid record
//! (every field, a token counter at its end, descriptions of invalid UTF-8); the valid file of
//! another name (a copied file, or a hash collision); valid files truncated or extended; no
//! file at all; and next to it, a garbage file under another `file-*.lock` name. Also
//! `parse_header` and `Record::decode` on arbitrary bytes.
//!
//! Properties (from the brief: "a corrupt or foreign lock file gives LockCorruptError, never
//! undefined behaviour, and never silently resets a lock someone may hold"):
//! - a file with a header that is not exactly this name's is `Corrupt` for `FileLock::open`,
//!   `open_existing` and `inspect`, and left out of `list` (which lists proclock's files only);
//! - with a good header but a record that is not one proclock wrote whole (or a file too short
//!   to hold one), every exclusive acquisition, `owner`, `inspect` and `list` are `Corrupt`,
//!   and the refusal leaves the kernel lock free: a second handle still probes it as free;
//! - whatever was refused, the file is left byte for byte unchanged (garbage is reported,
//!   never repaired);
//! - a valid file works as a lock: `ownerDied` is what its record says, the fencing token is
//!   larger than the recorded one (or the acquisition is `Corrupt` when the counter is at its
//!   end), only the record is rewritten, and `owner()` reports a description within its bound;
//! - no file at all is created, fully formed; nothing panics or hangs (watchdog per case).
//!
//! Readers (`Mode::Shared`) neither read nor write the record, so they only need a good header.
//!
//! Default: 256 end-to-end cases (a fresh lock directory each) and 512 per pure property, about
//! a second; `PROPTEST_CASES=N` runs N per property.

// Unix only: the helpers make private files and directories with Unix modes, and the layouts
// read back through Unix positional I/O. The properties are the same elsewhere.
#![cfg(unix)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{bytes, config, mutate, within, write_private, Bytes, Scratch, CASE_LIMIT};
use proclock_core::backend::Backend;
use proclock_core::file;
use proclock_core::description::MAX_DESCRIPTION_BYTES;
use proclock_core::inspect::{self, Seen};
use proclock_core::file::format::{parse_header, Record, FILE_SIZE};
use proclock_core::name::LockName;
use proclock_core::raw_lock::format_uuid;
use proclock_core::{ErrorKind, FileLock, InspectLock, Mode, OwnerInfo, RawLock};
use proptest::collection::vec;
use proptest::prelude::*;

const NAME_UNDER_TEST: &str = "fuzzed/file lock";
// The layout documented in `file/format.rs`: a 296-byte header (name and checksum), the record
// at 512..832.
const HEADER_LEN: usize = 296;
const RECORD_AT: usize = 512;
const RECORD_LEN: usize = 320;

/// The file proclock writes for `name` (with a fresh record).
fn fresh_file(name: &str) -> Vec<u8> {
  let scratch = Scratch::new("file-ref");
  drop(FileLock::open(name, Some(scratch.path()), Mode::Exclusive).unwrap());
  fs::read(scratch.join(&LockName::new(name).unwrap().file_name())).unwrap()
}

fn template() -> &'static [u8] {
  static T: OnceLock<Vec<u8>> = OnceLock::new();
  T.get_or_init(|| fresh_file(NAME_UNDER_TEST))
}

fn with_record(record: &Record) -> Vec<u8> {
  let mut b = template().to_vec();
  b[RECORD_AT..RECORD_AT + RECORD_LEN].copy_from_slice(&record.encode());
  b
}

fn record() -> impl Strategy<Value = Record> {
  (
    any::<bool>(),
    any::<u32>(),
    any::<u64>(),
    prop_oneof![3 => any::<u64>(), 1 => Just(u64::MAX), 1 => Just(u64::MAX - 1), 1 => 0u64..4],
    any::<[u8; 16]>(),
    prop_oneof![
      "[a-z ]{0,40}".prop_map(String::into_bytes),
      vec(any::<u8>(), 0..=MAX_DESCRIPTION_BYTES),
      Just(vec![0xff; MAX_DESCRIPTION_BYTES]),
    ],
  )
    .prop_map(|(held, pid, since_ms, token, uuid, description)| Record {
      held,
      pid,
      since_ms,
      token,
      uuid,
      description,
    })
}

#[derive(Debug, Clone)]
enum Input {
  Absent,
  Random(Bytes),
  /// A valid file (with `Record`) with bytes changed anywhere in its 4 KiB.
  Mutated(Record, Vec<(usize, u8)>),
  GarbageRecord(Bytes),
  ValidRecord(Record),
  /// The valid file of another lock under this lock's file name.
  OtherName(String, Record),
  Resized(Record, usize, u8),
}

fn input() -> impl Strategy<Value = Input> {
  prop_oneof![
    1 => Just(Input::Absent),
    2 => prop_oneof![bytes(0..5000), bytes(0..HEADER_LEN + 1)].prop_map(Input::Random),
    3 => (record(), vec((0usize..FILE_SIZE as usize, any::<u8>()), 1..5)).prop_map(|(r, m)| Input::Mutated(r, m)),
    2 => bytes(RECORD_LEN).prop_map(Input::GarbageRecord),
    3 => record().prop_map(Input::ValidRecord),
    1 => (prop_oneof![Just("someone/else".to_owned()), "[a-z/]{1,12}"], record()).prop_map(|(n, r)| Input::OtherName(n, r)),
    2 => (record(), prop_oneof![0usize..HEADER_LEN + 8, 0usize..RECORD_AT + RECORD_LEN + 8, 0usize..9000], any::<u8>())
      .prop_map(|(r, l, f)| Input::Resized(r, l, f)),
  ]
}

impl Input {
  fn bytes(&self) -> Option<Vec<u8>> {
    Some(match self {
      Input::Absent => return None,
      Input::Random(b) => b.0.clone(),
      Input::Mutated(r, m) => {
        let mut b = with_record(r);
        let len = b.len();
        mutate(&mut b, m, len);
        b
      }
      Input::GarbageRecord(g) => {
        let mut b = template().to_vec();
        b[RECORD_AT..RECORD_AT + RECORD_LEN].copy_from_slice(g);
        b
      }
      Input::ValidRecord(r) => with_record(r),
      Input::OtherName(n, r) => {
        let mut b = fresh_file(n);
        b[RECORD_AT..RECORD_AT + RECORD_LEN].copy_from_slice(&r.encode());
        b
      }
      Input::Resized(r, len, filler) => {
        let mut b = with_record(r);
        b.resize(*len, *filler);
        b
      }
    })
  }
}

/// What the file holds, judged from its bytes alone.
struct Judged {
  header_ok: bool,
  record: Option<Record>,
}

fn judge(bytes: &[u8]) -> Judged {
  let header_ok = bytes.len() >= HEADER_LEN && bytes[..HEADER_LEN] == template()[..HEADER_LEN];
  let record = (bytes.len() >= RECORD_AT + RECORD_LEN)
    .then(|| Record::decode(&bytes[RECORD_AT..RECORD_AT + RECORD_LEN]))
    .flatten();
  Judged { header_ok, record }
}

fn kind<T>(r: proclock_core::Result<T>) -> Option<ErrorKind> {
  r.err().map(|e| e.kind())
}

/// The owner a valid, unheld file's record shows: a holder that died holding it, or nobody.
fn recorded_owner(record: &Record) -> Option<OwnerInfo> {
  record.held.then(|| OwnerInfo {
    pid: record.pid,
    uuid: format_uuid(&record.uuid),
    description: String::from_utf8_lossy(&record.description).into_owned(),
    since_ms: record.since_ms,
    token: record.token,
    alive: false,
  })
}

fn same_owner(got: &Option<OwnerInfo>, want: &Option<OwnerInfo>) {
  match (got, want) {
    (None, None) => {}
    (Some(g), Some(w)) => {
      assert_eq!(
        (g.pid, &g.uuid, g.since_ms, g.token, g.alive),
        (w.pid, &w.uuid, w.since_ms, w.token, w.alive)
      );
      assert!(
        g.description.len() <= MAX_DESCRIPTION_BYTES,
        "a description of {} bytes",
        g.description.len()
      );
      assert!(
        w.description.starts_with(&g.description),
        "{:?} is not from {:?}",
        g.description,
        w.description
      );
    }
    _ => panic!("owner {got:?}, expected {want:?}"),
  }
}

fn listed(dir: &Path) -> proclock_core::Result<Vec<(String, Seen)>> {
  inspect::list(Some(dir)).map(|l| l.into_iter().map(|s| (s.name, s.seen)).collect())
}

fn run_case(input: Input, extra: Option<Bytes>) {
  let scratch = Scratch::new("file");
  let dir = scratch.path();
  let file_name = LockName::new(NAME_UNDER_TEST).unwrap().file_name();
  let path = scratch.join(&file_name);
  let original = input.bytes();
  if let Some(b) = &original {
    write_private(&path, b);
  }
  if let Some(extra) = &extra {
    // A garbage file under a name of the file backend's form: never anyone's lock file.
    write_private(&scratch.join("file-00000000000000000000000000000000.lock"), extra);
  }
  let unchanged = || {
    if let Some(b) = &original {
      assert!(fs::read(&path).unwrap() == *b, "the file was changed");
    }
  };

  let Some(bytes) = &original else {
    // No file: looking creates nothing, opening creates it fully formed.
    assert!(FileLock::open_existing(NAME_UNDER_TEST, Some(dir), Mode::Exclusive)
      .unwrap()
      .is_none());
    assert_eq!(
      file::look(&LockName::new(NAME_UNDER_TEST).unwrap(), Some(dir)).unwrap(),
      Seen::default()
    );
    assert!(listed(dir).unwrap().is_empty());
    assert!(!path.exists(), "looking created the lock file");
    let a = FileLock::open(NAME_UNDER_TEST, Some(dir), Mode::Exclusive).unwrap();
    // Fully formed: the template's bytes, but for the record's time-based token start.
    let created = fs::read(&path).unwrap();
    let start = Record::decode(&created[RECORD_AT..RECORD_AT + RECORD_LEN]).expect("a whole record");
    assert_eq!(created, with_record(&start), "created fully formed");
    assert_eq!(
      Record {
        token: 0,
        ..start.clone()
      },
      Record::default()
    );
    assert!(start.token >= Record::decode(&template()[RECORD_AT..RECORD_AT + RECORD_LEN]).unwrap().token);
    let got = a.try_lock(b"fuzz", true).unwrap().unwrap();
    assert_eq!((got.token, got.owner_died), (start.token + 1, false));
    a.unlock().unwrap();
    return;
  };
  let judged = judge(bytes);

  // Looking, before any handle exists.
  let existing = FileLock::open_existing(NAME_UNDER_TEST, Some(dir), Mode::Exclusive);
  let looked = inspect::inspect(Backend::File, NAME_UNDER_TEST, Some(dir));
  let list = listed(dir);
  let opened = FileLock::open(NAME_UNDER_TEST, Some(dir), Mode::Exclusive);
  let reader = FileLock::open(NAME_UNDER_TEST, Some(dir), Mode::Shared);
  if !judged.header_ok {
    assert_eq!(kind(existing), Some(ErrorKind::Corrupt), "open_existing with a bad header");
    assert_eq!(kind(looked), Some(ErrorKind::Corrupt), "inspect with a bad header");
    assert_eq!(kind(opened), Some(ErrorKind::Corrupt), "open with a bad header");
    assert_eq!(kind(reader), Some(ErrorKind::Corrupt), "open (shared) with a bad header");
    assert!(list.unwrap().is_empty(), "list shows only proclock's lock files");
    unchanged();
    return;
  }
  let a = opened.unwrap_or_else(|e| panic!("open with a good header: {e}"));
  let reader = reader.unwrap_or_else(|e| panic!("open (shared) with a good header: {e}"));
  existing.unwrap().expect("the file exists");

  let Some(record) = judged.record else {
    // A good header and no good record: every look at the record and every exclusive
    // acquisition is Corrupt, and leaves the kernel lock free.
    assert_eq!(kind(looked), Some(ErrorKind::Corrupt), "inspect with a bad record");
    assert_eq!(kind(list), Some(ErrorKind::Corrupt), "list with a bad record");
    assert_eq!(kind(a.owner()), Some(ErrorKind::Corrupt), "owner with a bad record");
    assert!(!a.is_locked().unwrap(), "the kernel lock is free");
    assert_eq!(
      kind(a.try_lock(b"fuzz", true)),
      Some(ErrorKind::Corrupt),
      "try_lock with a bad record"
    );
    let soon = Some(Instant::now() + Duration::from_millis(20));
    assert_eq!(
      kind(a.lock(b"fuzz", soon, &|| false)),
      Some(ErrorKind::Corrupt),
      "lock with a bad record"
    );
    assert_eq!(kind(a.unlock()), Some(ErrorKind::NotHeld));
    let b = FileLock::open(NAME_UNDER_TEST, Some(dir), Mode::Exclusive).unwrap();
    assert!(!b.is_locked().unwrap(), "a refused acquisition left the kernel lock held");
    assert_eq!(
      kind(b.try_lock(b"b", true)),
      Some(ErrorKind::Corrupt),
      "a second handle is refused the same way"
    );
    // Readers never look at the record.
    assert!(reader.try_lock(b"", true).unwrap().is_some(), "a reader needs only a good header");
    reader.unlock().unwrap();
    unchanged();
    return;
  };

  // A valid file: it works as a lock.
  let before = Seen {
    locked: false,
    owner: recorded_owner(&record),
  };
  let looked = looked.unwrap().seen;
  assert!(!looked.locked);
  same_owner(&looked.owner, &before.owner);
  let list = list.unwrap();
  assert_eq!(list.len(), 1, "{list:?}");
  assert_eq!(list[0].0, NAME_UNDER_TEST);
  same_owner(&list[0].1.owner, &before.owner);
  same_owner(&a.owner().unwrap(), &before.owner);
  assert!(!a.is_locked().unwrap());

  // Readers first: they take and give back the lock without touching the file.
  assert!(reader.try_lock(b"", true).unwrap().is_some());
  assert!(a.try_lock(b"fuzz", true).unwrap().is_none(), "a writer is excluded by a reader");
  reader.unlock().unwrap();
  unchanged();

  let got = match a.try_lock(b"fuzz", true) {
    Err(e) => {
      assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
      assert_eq!(record.token, u64::MAX, "refused with a token of {}: {e}", record.token);
      let b = FileLock::open(NAME_UNDER_TEST, Some(dir), Mode::Exclusive).unwrap();
      assert!(!b.is_locked().unwrap(), "a refused acquisition left the kernel lock held");
      unchanged();
      return;
    }
    Ok(got) => got.expect("a free lock is taken"),
  };
  assert_eq!(Some(got.token), record.token.checked_add(1), "the token after {}", record.token);
  assert_eq!(got.owner_died, record.held, "ownerDied is what the record says");
  let mine = a.owner().unwrap().expect("held");
  assert_eq!(
    (mine.pid, mine.token, mine.alive, mine.description.as_str()),
    (std::process::id(), got.token, true, "fuzz")
  );
  let after = fs::read(&path).unwrap();
  assert_eq!(after.len(), bytes.len());
  assert!(
    after[..RECORD_AT] == bytes[..RECORD_AT] && after[RECORD_AT + RECORD_LEN..] == bytes[RECORD_AT + RECORD_LEN..],
    "only the record is rewritten"
  );
  let b = FileLock::open(NAME_UNDER_TEST, Some(dir), Mode::Exclusive).unwrap();
  assert!(b.try_lock(b"b", true).unwrap().is_none(), "a second handle is excluded");
  assert!(b.is_locked().unwrap());
  a.unlock().unwrap();
  match b.try_lock(b"b", true) {
    Err(e) if got.token == u64::MAX => assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}"),
    next => {
      let next = next.unwrap().expect("free after the release");
      assert!(!next.owner_died && next.token > got.token);
      b.unlock().unwrap();
    }
  }
}

proptest! {
  #![proptest_config(config(256))]

  #[test]
  fn fuzzed_lock_files_are_refused_unchanged_or_work_as_locks(input in input(), extra in proptest::option::of(bytes(0..1000))) {
    within(CASE_LIMIT, move || run_case(input, extra));
  }
}

proptest! {
  #![proptest_config(config(512))]

  #[test]
  fn parse_header_accepts_only_a_header_proclock_wrote(
    random in bytes(0..700),
    mutations in vec((0usize..HEADER_LEN, any::<u8>()), 1..4),
    tail in bytes(0..300),
  ) {
    // Random bytes, and a valid header with bytes changed, are not headers (a 64-bit checksum
    // covers every byte).
    prop_assert_eq!(parse_header(&random), None);
    let mut header = template()[..HEADER_LEN].to_vec();
    mutate(&mut header, &mutations, HEADER_LEN);
    if header[..] != template()[..HEADER_LEN] {
      prop_assert_eq!(parse_header(&header), None);
    }
    // A valid header is one whatever follows it, and nothing shorter is.
    let mut whole = template()[..HEADER_LEN].to_vec();
    whole.extend_from_slice(&tail);
    let parsed = parse_header(&whole);
    prop_assert_eq!(parsed.as_deref(), Some(NAME_UNDER_TEST));
    let cut = tail.len() % HEADER_LEN;
    prop_assert_eq!(parse_header(&template()[..cut]), None);
  }

  #[test]
  fn record_decode_accepts_only_records_proclock_wrote(
    random in bytes(0..700),
    record in record(),
    mutations in vec((0usize..RECORD_LEN, any::<u8>()), 1..4),
    tail in bytes(0..100),
  ) {
    prop_assert_eq!(Record::decode(&random), None);
    let encoded = record.encode();
    let decoded = Record::decode(&encoded).expect("a record proclock wrote decodes");
    prop_assert!(decoded.description.len() <= MAX_DESCRIPTION_BYTES);
    prop_assert_eq!(&decoded, &record, "round trip");
    let mut longer = encoded.to_vec();
    longer.extend_from_slice(&tail);
    let decoded_longer = Record::decode(&longer);
    prop_assert_eq!(decoded_longer.as_ref(), Some(&record));
    prop_assert_eq!(Record::decode(&encoded[..tail.len() % RECORD_LEN]), None);
    let mut damaged = encoded;
    mutate(&mut damaged, &mutations, RECORD_LEN);
    if damaged != encoded {
      prop_assert_eq!(Record::decode(&damaged), None);
    }
  }
}

/// Found by the fuzzing: a recorded token of `u64::MAX - 1` handed out `u64::MAX` and then 0;
/// one of `u64::MAX` handed out 0 at once. Now the acquisition that would wrap is `Corrupt`,
/// leaves the file unchanged and the kernel lock free.
#[test]
fn regression_a_recorded_token_at_its_end_wrapped_to_0() {
  for token in [u64::MAX - 1, u64::MAX] {
    for held in [false, true] {
      run_case(
        Input::ValidRecord(Record {
          held,
          token,
          ..Record::default()
        }),
        None,
      );
    }
  }
}

/// Found by the fuzzing (of holder records; the file backend rendered its record the same
/// way): 256 bytes of invalid UTF-8 in a description became a 768-byte `owner().description`.
#[test]
fn regression_invalid_description_bytes_stretched_the_owner_description() {
  run_case(
    Input::ValidRecord(Record {
      held: true,
      description: vec![0xff; MAX_DESCRIPTION_BYTES],
      ..Record::default()
    }),
    None,
  );
}
