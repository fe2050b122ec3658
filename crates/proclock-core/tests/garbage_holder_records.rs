//! Fuzzing the holder record (`shm/holder_record.rs`) as raw shared memory: the 320 bytes that
//! `owner()`, `inspect()` and the liveness cross-check read without taking the lock, and that
//! any process (a crashed or hostile one included) may have written anything into.
//!
//! Properties:
//! - `read()` of random bytes never panics and takes bounded time, also when the seqlock
//!   counter is stuck odd (a writer killed mid-write): it is `None` exactly when the counter is
//!   odd, and otherwise the fields as stored, with a description of at most
//!   `MAX_DESCRIPTION_BYTES` UTF-8 bytes (the documented bound, whatever length the record
//!   claims and however invalid its bytes are) that is the stored text when that is valid
//!   UTF-8;
//! - a write over garbage leaves nothing of the garbage behind: the next read is exactly what
//!   was written;
//! - a reader racing a writer gets either `None` or a record that was written whole, never a
//!   mix, and returns in bounded time.
//!
//! Default 256 cases per property and 16 for the race (2,000 reads each), well under a second;
//! `PROPTEST_CASES=N` runs N per property.

// Unix only: the helpers make private files and directories with Unix modes, and the layouts
// read back through Unix positional I/O. The properties are the same elsewhere.
#![cfg(unix)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bytes, config, within, Bytes};
use proclock_core::shm::holder_record::{HolderInfo, HolderRecord, MAX_DESCRIPTION_BYTES};
use proptest::collection::vec;
use proptest::prelude::*;

const SIZE: usize = 320;

/// 320 bytes aligned like the record's atomics, as in a shared segment.
#[repr(C, align(64))]
struct Raw([u8; SIZE]);

impl Raw {
  fn new(bytes: &[u8]) -> Box<Raw> {
    let mut raw = Box::new(Raw([0; SIZE]));
    raw.0.copy_from_slice(bytes);
    raw
  }

  fn record(&self) -> &HolderRecord {
    assert_eq!(std::mem::size_of::<HolderRecord>(), SIZE);
    // SAFETY: `HolderRecord` is `#[repr(C)]` and made only of atomic integers, for which every
    // bit pattern is a valid value; the buffer is large and aligned enough. This is exactly how
    // proclock looks at a record in a segment another process wrote.
    unsafe { &*(self.0.as_ptr() as *const HolderRecord) }
  }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
  u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
  u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Random record bytes with the seqlock counter even or odd as asked, and the description
/// length drawn from the interesting values (in range, just past it, anything).
fn record_bytes() -> impl Strategy<Value = (Bytes, bool)> {
  (bytes(SIZE), any::<bool>(), prop_oneof![0u32..=256, 257u32..300, any::<u32>()]).prop_map(|(mut b, odd, len)| {
    let seq = (u32_at(&b, 0) & !1) | u32::from(odd);
    b.0[0..4].copy_from_slice(&seq.to_le_bytes());
    b.0[4..8].copy_from_slice(&len.to_le_bytes());
    (b, odd)
  })
}

/// Text that is mostly valid UTF-8 of the lengths a description can have.
fn description() -> impl Strategy<Value = String> {
  prop_oneof![
    "[a-z ]{0,40}",
    vec(any::<char>(), 0..64).prop_map(|c| c.into_iter().collect::<String>()),
    "é{0,128}",
  ]
  .prop_map(|mut s| {
    while s.len() > MAX_DESCRIPTION_BYTES {
      s.pop();
    }
    s
  })
}

fn info(holder: u64, token: u64, description: &str) -> HolderInfo {
  HolderInfo {
    holder,
    uuid: [0x5a; 16],
    pid: 4242,
    identity: 77,
    since_ms: 1_700_000_000_000,
    token,
    description: description.to_owned(),
  }
}

proptest! {
  #![proptest_config(config(256))]

  #[test]
  fn random_records_read_as_none_or_as_stored_within_bounds((b, odd) in record_bytes()) {
    let raw = Raw::new(&b);
    let (got, took) = within(Duration::from_secs(10), move || {
      let t0 = Instant::now();
      (raw.record().read(), t0.elapsed())
    });
    prop_assert!(took < Duration::from_secs(1), "a read took {took:?}");
    let Some(got) = got else {
      prop_assert!(odd, "an even counter with nobody writing must read");
      return Ok(());
    };
    prop_assert!(!odd, "a record in the middle of a write (odd counter) was read: {got:?}");
    prop_assert_eq!(got.holder, u64_at(&b, 8));
    prop_assert_eq!(&got.uuid[..], &b[16..32]);
    prop_assert_eq!(got.pid, u64_at(&b, 32) as u32);
    prop_assert_eq!(got.identity, u64_at(&b, 40));
    prop_assert_eq!(got.since_ms, u64_at(&b, 48));
    prop_assert_eq!(got.token, u64_at(&b, 56));
    prop_assert!(
      got.description.len() <= MAX_DESCRIPTION_BYTES,
      "a description of {} bytes (claimed length {})", got.description.len(), u32_at(&b, 4)
    );
    let stored = &b[64..64 + (u32_at(&b, 4) as usize).min(MAX_DESCRIPTION_BYTES)];
    match std::str::from_utf8(stored) {
      Ok(text) => prop_assert_eq!(got.description.as_str(), text),
      // Invalid bytes are shown, not refused: a prefix of their lossy rendering.
      Err(_) => prop_assert!(String::from_utf8_lossy(stored).starts_with(&got.description)),
    }
  }

  #[test]
  fn a_write_over_garbage_leaves_none_of_it((b, _) in record_bytes(), holder in any::<u64>(), token in any::<u64>(), text in description()) {
    let raw = Raw::new(&b);
    // A holder id equal to the garbage's would keep the garbage's identity fields on purpose
    // (a re-acquiring holder skips them); a fresh id is what a new holder writes.
    let holder = if holder == u64_at(&b, 8) { !holder } else { holder };
    let want = info(holder, token, &text);
    raw.record().write(&want, text.as_bytes());
    prop_assert_eq!(raw.record().read(), Some(want));
  }
}

proptest! {
  #![proptest_config(config(16))]

  /// A reader racing a writer (which rewrites the record as fast as it can) never sees a torn
  /// record, and every read returns in bounded time.
  #[test]
  fn a_reader_racing_a_writer_sees_whole_records_only((b, _) in record_bytes(), texts in vec(description(), 1..4)) {
    let raw: Arc<Raw> = Arc::from(Raw::new(&b));
    let written: Vec<HolderInfo> = texts.iter().enumerate().map(|(i, t)| info(1000 + i as u64, i as u64, t)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
      let (raw, written, stop) = (raw.clone(), written.clone(), stop.clone());
      std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
          for w in &written {
            raw.record().write(w, w.description.as_bytes());
          }
        }
      })
    };
    let mut slowest = Duration::ZERO;
    let mut seen = Vec::new();
    for _ in 0..2000 {
      let t0 = Instant::now();
      let got = raw.record().read();
      slowest = slowest.max(t0.elapsed());
      if let Some(got) = got {
        seen.push(got);
      }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    prop_assert!(slowest < Duration::from_secs(1), "a read took {slowest:?}");
    for got in seen {
      // Before the writer's first write the garbage itself may be read; after it, only
      // whole written records.
      if got.holder >= 1000 && got.holder < 1000 + written.len() as u64 {
        prop_assert_eq!(&got, &written[(got.holder - 1000) as usize], "a torn record");
      }
    }
  }
}

/// The input the fuzzing found: a claimed length of 163 bytes of invalid UTF-8 read back as a
/// 304-byte description (each invalid byte became a 3-byte U+FFFD), past the 256-byte bound.
#[test]
fn regression_invalid_bytes_stretched_a_description_past_its_bound() {
  let hex = "00000000a3000000000000000000000000000000000000000000000000000000000000e802a4f9e5114b7a8a9fa832e7b4dfbfaef19a76be6316d0afd549\
             03c8290afd3771b38f5c8861ee98fafc68c285a26ee8ee719843251eac7cc411a504810638b883afa53979ad56cd545bb67dd24251c6fe7b28e35aab878e\
             b4ab10706e0f26479aba4208c41c2a58a83adc1bacca14e5451e863643e832676d3818934dc13d5df9b236293f07f2d0365ba27fe81963e7d130864cf4e1\
             edcffca35a7919fb9b8218847df69560125abdf61d311b1f588775d484eb453301d8add7ff82257e75544fcbabb16a58cedfd58148a7295a145d806129ea\
             7748cc2f50f55a1d35fc81cb9be6b3de7f54dc2de1824e93f606d8f78643036c1c2f75111d2a17d41f9b2b54b614704a70d8333aab402951ca885ae41290\
             ad635490f4c9c82bf3d3";
  let b: Vec<u8> = (0..hex.len())
    .step_by(2)
    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
    .collect();
  let raw = Raw::new(&b);
  let got = raw.record().read().expect("an even counter reads");
  assert!(got.description.len() <= MAX_DESCRIPTION_BYTES, "{} bytes", got.description.len());
  assert!(String::from_utf8_lossy(&b[64..64 + 163]).starts_with(&got.description));
}
