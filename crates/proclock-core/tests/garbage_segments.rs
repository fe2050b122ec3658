//! Fuzzing the shared segment files (`shm/segment.rs`): what `Segment::open` does with whatever
//! bytes it finds under a segment's name, and what the shm lock API does when the process
//! table or the lock table is such a file.
//!
//! Inputs: random files of random lengths; all-zero headers; a valid file with bytes of its
//! checked header (magic, version, kind, sizes, index, checksum: the first 40 bytes) mutated;
//! a valid header on a file of the wrong size (truncated or extended); a valid file opened as
//! another layout or index; and the real tables (`shm-procs.seg`, `shm-locks-0.seg`) given such
//! headers under `ShmLock::open`, `inspect` and `list`.
//!
//! The property, from the brief ("a corrupt or foreign shared segment gives LockCorruptError,
//! never undefined behaviour, and never silently resets a lock someone may hold"):
//! - a file is accepted only when it is exactly what this version writes for that layout and
//!   index (its 40 header bytes and its size), and is then left as it was;
//! - a blank file (empty, or an all-zero header) is rebuilt, by design: proclock never
//!   publishes one, so nobody can be using it;
//! - anything else is `ErrorKind::Corrupt` and the file is left byte for byte unchanged;
//! - nothing panics or hangs (each end-to-end case runs under a watchdog).
//!
//! The rest of the header page (bytes 40..4096) and the entries are not checked: nobody
//! interprets the padding, and the entries are fuzzed by `garbage_shm_tables.rs`.
//!
//! Default: 256 cases per file-level property and 64 through the lock API (each a fresh lock
//! directory and process registration), about a second; `PROPTEST_CASES=N` runs N per property.

// Unix only: the helpers make private files and directories with Unix modes, and the layouts
// read back through Unix positional I/O. The properties are the same elsewhere.
#![cfg(unix)]

mod common;

use std::fs;
use std::path::Path;

use common::{config, mutate, within, write_private, Scratch, CASE_LIMIT};
use proclock_core::backend::Backend;
use proclock_core::inspect;
use proclock_core::shm::liveness::{PROCS_FILE, PROCS_LAYOUT};
use proclock_core::lock_dir::LockDir;
use proclock_core::shm::segment::{Layout, Segment, HEADER_SIZE};
use proclock_core::shm::slot_table::LOCKS_LAYOUT;
use proclock_core::{ErrorKind, ShmLock};
use proptest::collection::vec;
use proptest::prelude::*;

/// The small layouts most properties use, so that a whole file is a few KiB.
const LAYOUTS: [Layout; 3] = [
  Layout {
    kind: 9,
    entry_size: 64,
    entry_count: 8,
  },
  Layout {
    kind: 1,
    entry_size: 640,
    entry_count: 3,
  },
  Layout {
    kind: 2,
    entry_size: 64,
    entry_count: 1,
  },
];

/// The file proclock writes for `layout` and `index`, made by proclock itself.
fn reference_file(layout: Layout, index: u32) -> Vec<u8> {
  let scratch = Scratch::new("seg-ref");
  let dir = LockDir::open(scratch.path()).unwrap();
  drop(Segment::open(&dir, "ref.seg", layout, index).unwrap());
  fs::read(scratch.join("ref.seg")).unwrap()
}

/// What `Segment::open` must do with `bytes`, given the file proclock would have written.
#[derive(Debug, PartialEq)]
enum Expect {
  /// Exactly a valid segment: opened, untouched.
  Valid,
  /// Empty or an all-zero header: rebuilt into a fresh segment.
  Blank,
  /// Anything else: `Corrupt`, untouched.
  Refused,
}

fn expect(bytes: &[u8], reference: &[u8]) -> Expect {
  let head = &bytes[..bytes.len().min(40)];
  if head.iter().all(|&b| b == 0) {
    Expect::Blank
  } else if bytes.len() == reference.len() && bytes[..40] == reference[..40] {
    Expect::Valid
  } else {
    Expect::Refused
  }
}

/// Put `bytes` under a segment name, open it as `layout`/`index`, and check the outcome
/// against `expect` computed for the layout the file was made for.
fn check_open(bytes: &[u8], layout: Layout, index: u32, reference: &[u8]) {
  let scratch = Scratch::new("seg");
  let path = scratch.join("t.seg");
  write_private(&path, bytes);
  let dir = LockDir::open(scratch.path()).unwrap();
  let opened = Segment::open(&dir, "t.seg", layout, index);
  let after = fs::read(&path).unwrap();
  match expect(bytes, reference) {
    Expect::Valid => {
      let seg = opened.unwrap_or_else(|e| panic!("a valid segment was refused: {e}"));
      assert_eq!(after, bytes, "a valid segment must not be rewritten");
      touch_every_entry(&seg);
    }
    Expect::Blank => {
      let seg = opened.unwrap_or_else(|e| panic!("a blank segment was not rebuilt: {e}"));
      assert_eq!(after, reference, "a blank segment is rebuilt as a fresh one");
      touch_every_entry(&seg);
    }
    Expect::Refused => {
      let err = opened.err().expect("garbage was accepted as a segment");
      assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
      assert_eq!(after, bytes, "a refused segment must be left as it was");
    }
  }
}

/// Every entry of an accepted segment is inside the mapping: read and write its first and last
/// byte (an out-of-bounds pointer would fault here).
fn touch_every_entry(seg: &Segment) {
  let layout = *seg.layout();
  for i in 0..layout.entry_count {
    let p = seg.entry(i);
    // SAFETY: entry `i` of a mapped segment spans `entry_size` bytes of the mapping.
    unsafe {
      let last = p.add(layout.entry_size - 1);
      let (a, b) = (p.read_volatile(), last.read_volatile());
      p.write_volatile(a);
      last.write_volatile(b);
    }
  }
}

fn layout_and_index() -> impl Strategy<Value = (Layout, u32)> {
  (0..LAYOUTS.len(), 0u32..3).prop_map(|(l, i)| (LAYOUTS[l], i))
}

proptest! {
  #![proptest_config(config(256))]

  /// Random files, including empty ones, short ones, and ones whose first bytes are zero.
  #[test]
  fn random_files_are_refused_unless_blank(
    (layout, index) in layout_and_index(),
    bytes in vec(any::<u8>(), 0..6000),
    zero_prefix in prop_oneof![Just(0usize), 0usize..48],
  ) {
    let mut bytes = bytes;
    let n = zero_prefix.min(bytes.len());
    bytes[..n].fill(0);
    let reference = reference_file(layout, index);
    check_open(&bytes, layout, index, &reference);
  }

  /// A valid segment with one to four bytes of its checked header changed.
  #[test]
  fn a_mutated_header_is_refused_and_left_alone(
    (layout, index) in layout_and_index(),
    mutations in vec((0usize..40, any::<u8>()), 1..5),
  ) {
    let reference = reference_file(layout, index);
    let mut bytes = reference.clone();
    mutate(&mut bytes, &mutations, 40);
    check_open(&bytes, layout, index, &reference);
  }

  /// A valid header on a file that is too short (down to nothing) or too long.
  #[test]
  fn a_valid_header_on_a_file_of_the_wrong_size_is_refused(
    (layout, index) in layout_and_index(),
    len in prop_oneof![0usize..64, 0usize..HEADER_SIZE + 2, HEADER_SIZE..12_000],
    filler in any::<u8>(),
  ) {
    let reference = reference_file(layout, index);
    let mut bytes = reference.clone();
    bytes.resize(len, filler);
    check_open(&bytes, layout, index, &reference);
  }

  /// A valid segment of one layout or index opened as another: a file is only ever what it
  /// says it is.
  #[test]
  fn a_segment_of_another_layout_or_index_is_refused(
    (made_as, made_index) in layout_and_index(),
    (opened_as, opened_index) in layout_and_index(),
  ) {
    let made = reference_file(made_as, made_index);
    let wanted = reference_file(opened_as, opened_index);
    if (made_as, made_index) != (opened_as, opened_index) {
      // Not only by comparison with what proclock writes now: two different layouts or
      // indexes must never share a header.
      prop_assert_eq!(expect(&made, &wanted), Expect::Refused);
    }
    check_open(&made, opened_as, opened_index, &wanted);
  }
}

/// Which real table gets the bad header, and which header.
#[derive(Debug, Clone)]
enum BadTable {
  /// `shm-procs.seg`; the lock table is valid.
  Procs(Header),
  /// `shm-locks-0.seg`; the process table is absent (it is created) or valid.
  Locks(Header, bool),
}

#[derive(Debug, Clone)]
enum Header {
  /// 40 random bytes (an all-zero draw is blank, and rebuilt).
  Random(Vec<u8>),
  /// The right header with bytes changed.
  Mutated(Vec<(usize, u8)>),
  /// The right header on a file of the wrong length.
  Resized(u64),
  /// The other table's header (a process table under the lock table's name, or back).
  Swapped,
  /// All zero: blank, rebuilt.
  Zero,
}

fn header() -> impl Strategy<Value = Header> {
  prop_oneof![
    vec(any::<u8>(), 40).prop_map(Header::Random),
    vec((0usize..40, any::<u8>()), 1..4).prop_map(Header::Mutated),
    prop_oneof![0u64..40, 40u64..8192, 8192u64..4_000_000].prop_map(Header::Resized),
    Just(Header::Swapped),
    Just(Header::Zero),
  ]
}

fn bad_table() -> impl Strategy<Value = BadTable> {
  prop_oneof![
    header().prop_map(BadTable::Procs),
    (header(), any::<bool>()).prop_map(|(h, p)| BadTable::Locks(h, p))
  ]
}

/// Write table `file` of `layout` into `dir` with `header` (sparse: the entries are zero).
/// Returns whether the result is usable: blank (rebuilt) or, when mutations cancel out, valid.
fn plant_table(dir: &Path, file: &str, layout: Layout, header: &Header) -> bool {
  let other = if layout == PROCS_LAYOUT { LOCKS_LAYOUT } else { PROCS_LAYOUT };
  let right = &reference_header(layout)[..];
  let mut head = right.to_vec();
  let mut len = layout.file_size() as u64;
  match header {
    Header::Random(bytes) => head = bytes.clone(),
    Header::Mutated(m) => mutate(&mut head, m, 40),
    Header::Resized(l) => len = if *l == len { len + 1 } else { *l },
    Header::Swapped => head = reference_header(other),
    Header::Zero => head = vec![0; 40],
  }
  let path = dir.join(file);
  let keep = (len as usize).min(head.len());
  write_private(&path, &head[..keep]);
  fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len).unwrap();
  let blank = head[..keep].iter().all(|&b| b == 0);
  let valid = head == right && len == layout.file_size() as u64;
  blank || valid
}

/// The 40 checked header bytes of a real table (index 0).
fn reference_header(layout: Layout) -> Vec<u8> {
  use std::sync::OnceLock;
  static PROCS: OnceLock<Vec<u8>> = OnceLock::new();
  static LOCKS: OnceLock<Vec<u8>> = OnceLock::new();
  let cell = if layout == PROCS_LAYOUT { &PROCS } else { &LOCKS };
  cell
    .get_or_init(|| {
      let scratch = Scratch::new("seg-real-ref");
      let dir = LockDir::open(scratch.path()).unwrap();
      drop(Segment::open(&dir, "ref.seg", layout, 0).unwrap());
      let mut head = fs::read(scratch.join("ref.seg")).unwrap();
      head.truncate(40);
      head
    })
    .clone()
}

proptest! {
  #![proptest_config(config(64))]

  /// The real tables with bad headers, through the lock API: `ShmLock::open`, `inspect` and
  /// `list` all say `Corrupt` and leave the file as it was; a blank table is rebuilt and works.
  #[test]
  fn the_lock_api_refuses_tables_with_bad_headers(bad in bad_table()) {
    within(CASE_LIMIT, move || {
      let scratch = Scratch::new("seg-api");
      let dir = scratch.path();
      let (file, usable) = match &bad {
        BadTable::Procs(h) => {
          drop(Segment::open(&LockDir::open(dir).unwrap(), "shm-locks-0.seg", LOCKS_LAYOUT, 0).unwrap());
          (PROCS_FILE, plant_table(dir, PROCS_FILE, PROCS_LAYOUT, h))
        }
        BadTable::Locks(h, with_procs) => {
          if *with_procs {
            drop(Segment::open(&LockDir::open(dir).unwrap(), PROCS_FILE, PROCS_LAYOUT, 0).unwrap());
          }
          ("shm-locks-0.seg", plant_table(dir, "shm-locks-0.seg", LOCKS_LAYOUT, h))
        }
      };
      let before = fs::read(dir.join(file)).unwrap();
      let opened = ShmLock::open("fuzzed", Some(dir));
      let looked = inspect::inspect(Backend::Shm, "fuzzed", Some(dir));
      let listed = inspect::list(Some(dir));
      if usable {
        opened.unwrap_or_else(|e| panic!("a blank or valid {file} was refused: {e}"));
        looked.unwrap();
        listed.unwrap();
      } else {
        for (what, kind) in [
          ("ShmLock::open", opened.err().map(|e| e.kind())),
          ("inspect", looked.err().map(|e| e.kind())),
          ("list", listed.err().map(|e| e.kind())),
        ] {
          assert_eq!(kind, Some(ErrorKind::Corrupt), "{what} on a bad {file}");
        }
        assert!(fs::read(dir.join(file)).unwrap() == before, "a refused {file} must be left as it was");
      }
    });
  }
}
