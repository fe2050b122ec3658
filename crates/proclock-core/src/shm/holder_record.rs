//! The holder record: who holds a lock, readable by anyone without taking the lock.
//!
//! Only the current holder writes the record, right after winning the lock word, so writers
//! never race each other in normal operation. Readers (`owner()`, `inspect()` in any process)
//! race the writer, so the record is a seqlock: the writer makes `seq` odd, writes the fields,
//! then makes `seq` even again; a reader retries while `seq` is odd or changed under it.
//!
//! Every field is an atomic, read and written with relaxed ordering plus fences. That is what
//! makes the concurrent reads defined behaviour in Rust, and it is the honest model of memory
//! shared with other processes: any byte may change at any time, including by a crashed or
//! hostile writer. Readers therefore never trust lengths (they are clamped) and give up after a
//! bounded number of retries (a writer killed mid-write leaves `seq` odd forever; the next
//! holder's write repairs it, because a writer always moves `seq` to a fresh odd value first).
//!
//! `holder` ties the record to a lock word: a record is only reported for the holder whose id
//! it names, so a holder that died between winning the word and writing its record is shown as
//! "unknown" rather than as the previous holder.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};

use crate::crash_points::{reached, Step};

/// Re-exported: the record stores at most this many bytes of a description.
pub use crate::description::MAX_DESCRIPTION_BYTES;
use crate::description::description_text;
const DESC_WORDS: usize = MAX_DESCRIPTION_BYTES / 8;

/// The record as laid out in shared memory (320 bytes).
#[repr(C)]
pub struct HolderRecord {
  seq: AtomicU32,
  desc_len: AtomicU32,
  holder: AtomicU64,
  uuid: [AtomicU64; 2],
  pid: AtomicU64,
  /// Process start identity (see `process_info.rs`), for the pid-reuse-proof fallback check.
  identity: AtomicU64,
  since_ms: AtomicU64,
  token: AtomicU64,
  desc: [AtomicU64; DESC_WORDS],
}

/// Where `pid` and `identity` sit in a [`HolderRecord`], in bytes. For tests
/// (`tests/pid_reuse.rs` forges records to imitate a reused pid).
#[doc(hidden)]
pub const RECORD_PID_AT: usize = std::mem::offset_of!(HolderRecord, pid);
#[doc(hidden)]
pub const RECORD_IDENTITY_AT: usize = std::mem::offset_of!(HolderRecord, identity);

/// What a holder writes about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderInfo {
  /// The lock word (handle id) this record describes.
  pub holder: u64,
  pub uuid: [u8; 16],
  pub pid: u32,
  pub identity: u64,
  /// Epoch milliseconds when the hold began.
  pub since_ms: u64,
  pub token: u64,
  pub description: String,
}

/// Copy `bytes` into the first words of a run of atomic words, little-endian. Bytes past
/// `bytes.len()` are left as they were: readers never look beyond the stored length.
pub(crate) fn store_bytes(words: &[AtomicU64], bytes: &[u8]) {
  for (w, chunk) in words.iter().zip(bytes.chunks(8)) {
    let mut word = [0u8; 8];
    word[..chunk.len()].copy_from_slice(chunk);
    w.store(u64::from_le_bytes(word), Relaxed);
  }
}

/// Read `len` bytes back out of a run of atomic words.
pub(crate) fn load_bytes(words: &[AtomicU64], len: usize) -> Vec<u8> {
  let len = len.min(words.len() * 8);
  let mut out = Vec::with_capacity(len);
  for w in words {
    if out.len() >= len {
      break;
    }
    let bytes = w.load(Relaxed).to_le_bytes();
    let take = (len - out.len()).min(8);
    out.extend_from_slice(&bytes[..take]);
  }
  out
}

impl HolderRecord {
  /// Write the record for a hold that `info.holder` has just won.
  pub fn write(&self, info: &HolderInfo, description: &[u8]) {
    self.write_hold(
      info.holder,
      &info.uuid,
      info.pid,
      info.identity,
      info.since_ms,
      info.token,
      description,
    );
  }

  /// [`HolderRecord::write`] without building a [`HolderInfo`]: the uncontended hot path.
  ///
  /// A handle that re-acquires finds its own id still in the record and skips the identity
  /// fields it wrote last time (uuid, pid, process identity): the uncontended hot path then
  /// writes a handful of words.
  #[inline]
  #[allow(clippy::too_many_arguments)]
  pub fn write_hold(&self, holder: u64, uuid: &[u8; 16], pid: u32, identity: u64, since_ms: u64, token: u64, description: &[u8]) {
    let odd = self.seq.load(Relaxed).wrapping_add(1) | 1;
    self.seq.store(odd, Relaxed);
    fence(Release);

    if self.holder.load(Relaxed) != holder {
      self.holder.store(holder, Relaxed);
      self.uuid[0].store(u64::from_le_bytes(uuid[..8].try_into().unwrap_or_default()), Relaxed);
      self.uuid[1].store(u64::from_le_bytes(uuid[8..].try_into().unwrap_or_default()), Relaxed);
      self.pid.store(u64::from(pid), Relaxed);
      self.identity.store(identity, Relaxed);
    }
    reached(Step::RecordHalfWritten);
    self.since_ms.store(since_ms, Relaxed);
    self.token.store(token, Relaxed);
    let len = description.len().min(MAX_DESCRIPTION_BYTES);
    store_bytes(&self.desc, &description[..len]);
    self.desc_len.store(len as u32, Relaxed);

    self.seq.store(odd.wrapping_add(1), Release);
  }

  /// A consistent snapshot, or `None` if a writer is mid-update for longer than a few retries
  /// (for example a holder killed while writing).
  pub fn read(&self) -> Option<HolderInfo> {
    for _ in 0..64 {
      let s1 = self.seq.load(Acquire);
      if s1 & 1 == 1 {
        std::hint::spin_loop();
        continue;
      }
      let mut uuid = [0u8; 16];
      uuid[..8].copy_from_slice(&self.uuid[0].load(Relaxed).to_le_bytes());
      uuid[8..].copy_from_slice(&self.uuid[1].load(Relaxed).to_le_bytes());
      let desc_len = (self.desc_len.load(Relaxed) as usize).min(MAX_DESCRIPTION_BYTES);
      let info = HolderInfo {
        holder: self.holder.load(Relaxed),
        uuid,
        pid: self.pid.load(Relaxed) as u32,
        identity: self.identity.load(Relaxed),
        since_ms: self.since_ms.load(Relaxed),
        token: self.token.load(Relaxed),
        description: String::new(),
      };
      let desc = load_bytes(&self.desc, desc_len);
      fence(Acquire);
      if self.seq.load(Relaxed) == s1 {
        let description = description_text(&desc);
        return Some(HolderInfo { description, ..info });
      }
    }
    None
  }

  /// The recorded holder id, without a full consistent read.
  pub fn holder_hint(&self) -> u64 {
    self.holder.load(Relaxed)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn blank() -> Box<HolderRecord> {
    // SAFETY: every field is an atomic integer, for which all-zero bytes are a valid value,
    // exactly as in a freshly created shared segment.
    unsafe { Box::new(std::mem::zeroed()) }
  }

  fn info(holder: u64, token: u64) -> HolderInfo {
    HolderInfo {
      holder,
      uuid: [7; 16],
      pid: 42,
      identity: 99,
      since_ms: 1234,
      token,
      description: String::new(),
    }
  }

  #[test]
  fn write_then_read() {
    let r = blank();
    assert_eq!(std::mem::size_of::<HolderRecord>(), 320);
    r.write(&info(10, 1), b"first holder");
    let got = r.read().unwrap();
    assert_eq!(got.description, "first holder");
    assert_eq!((got.holder, got.pid, got.token, got.uuid), (10, 42, 1, [7; 16]));
    // Same holder again, shorter and then empty description: no stale bytes survive.
    r.write(&info(10, 2), b"x");
    assert_eq!(r.read().unwrap().description, "x");
    r.write(&info(10, 3), b"");
    let got = r.read().unwrap();
    assert_eq!((got.description.as_str(), got.token), ("", 3));
    let long = "é".repeat(128);
    r.write(&info(11, 4), long.as_bytes());
    assert_eq!(r.read().unwrap().description, long);
  }

  #[test]
  fn torn_writer_is_repaired_by_the_next_write() {
    let r = blank();
    r.seq.store(7, Relaxed); // a writer died mid-write
    assert!(r.read().is_none());
    r.write(&info(5, 1), b"next");
    assert_eq!(r.read().unwrap().description, "next");
  }

  #[test]
  fn hostile_lengths_are_clamped() {
    let r = blank();
    r.desc_len.store(u32::MAX, Relaxed);
    assert_eq!(r.read().unwrap().description.len(), MAX_DESCRIPTION_BYTES);
  }

  #[test]
  fn invalid_bytes_do_not_stretch_a_description_past_its_bound() {
    let r = blank();
    r.write(&info(1, 1), &[0xff; MAX_DESCRIPTION_BYTES]);
    let text = r.read().unwrap().description;
    assert_eq!(text, "\u{fffd}".repeat(MAX_DESCRIPTION_BYTES / 3));
    assert_eq!(description_text("é".repeat(128).as_bytes()), "é".repeat(128));
    assert_eq!(description_text(b"ok\xff"), "ok\u{fffd}");
  }
}
