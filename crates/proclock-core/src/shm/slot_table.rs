//! The slot table: where each named shm lock lives.
//!
//! All shm locks of a directory share a table of 640-byte slots spread over segment files
//! `shm-locks-<k>.seg` of 4096 slots each (2.5 MiB, allocated by the OS only as pages are
//! touched). One mapping per 4096 names keeps 100,000 names far below the kernel's limit on
//! mappings per process (`vm.max_map_count`, 65,530 by default), which one file per name would
//! exceed.
//!
//! A name's slot is found by open addressing: start at `key % 4096` in segment 0, look at up
//! to 64 consecutive slots, then do the same in segment 1, and so on, creating segments as
//! needed. A slot is claimed by CAS-ing its key from 0 to the name's key, then writing the
//! readable name. Slots are never freed, which is what makes lookups consistent without any
//! lock: if a name's window in segment k has a free slot now, it had one when the name was
//! placed, so the name is not in any later segment.
//!
//! A claimer killed between the CAS and writing the name leaves a slot with our key and no
//! name. Whoever looks that name up next writes the name (the same bytes, since the key comes
//! from the name) and uses the slot. Two names sharing a 63-bit key would share a lock; with
//! SHA-256 keys that needs about 3 * 10^9 names in one directory for even odds.


use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Arc, RwLock};

use crate::error::{Error, ErrorKind, Result};
use crate::shm::holder_record::{load_bytes, store_bytes, HolderRecord};
use crate::lock_dir::LockDir;
use crate::lock_word::LockCell;
use crate::name::{LockName, MAX_NAME_BYTES};
use crate::shm::segment::{Layout, Segment};
use crate::clock::token_start;

/// A claimed slot's token counter starts at [`token_start`] (see `clock.rs` for why).
pub const SLOTS_PER_SEGMENT: usize = 4096;

const WINDOW: usize = 64;
const MAX_SEGMENTS: usize = 4096;

/// One lock in shared memory.
#[repr(C, align(64))]
pub struct Slot {
  /// 0 = unused; otherwise the key of the name that owns this slot.
  key: AtomicU64,
  /// The protocol state (`lock_word.rs`): lock word and fencing-token counter.
  pub cell: LockCell,
  /// Who holds it (`shm/holder_record.rs`).
  pub record: HolderRecord,
  name_len: AtomicU64,
  name: [AtomicU64; MAX_NAME_BYTES.div_ceil(8)],
}

const _: () = assert!(std::mem::size_of::<Slot>() == 640);

pub const LOCKS_LAYOUT: Layout = Layout {
  kind: 1,
  entry_size: std::mem::size_of::<Slot>(),
  entry_count: SLOTS_PER_SEGMENT,
};

impl Slot {
  /// The stored name, if written and sane.
  pub fn name(&self) -> Option<String> {
    let len = self.name_len.load(Acquire) as usize;
    if len == 0 || len > MAX_NAME_BYTES {
      return None;
    }
    String::from_utf8(load_bytes(&self.name, len)).ok()
  }

  fn write_name(&self, name: &str) {
    store_bytes(&self.name, name.as_bytes());
    self.name_len.store(name.len() as u64, Release);
  }
}

/// A slot plus the mapping that keeps it alive.
#[derive(Clone)]
pub struct SlotRef {
  segment: Arc<Segment>,
  /// Which segment (`k` of `shm-locks-<k>.seg`) and which slot in it.
  number: usize,
  index: usize,
}

impl SlotRef {
  /// (segment number, slot index): where this lock lives, for diagnostics.
  pub fn location(&self) -> (usize, usize) {
    (self.number, self.index)
  }

  pub fn slot(&self) -> &Slot {
    // SAFETY: the segment (and so the mapping) lives as long as `self`; see `slot_ptr`.
    unsafe { &*self.slot_ptr() }
  }

  /// The slot's address, valid while this `SlotRef` (or a clone) is alive. `Slot` is all
  /// atomics, valid for any bytes another process may have written.
  pub fn slot_ptr(&self) -> *const Slot {
    self.segment.entry(self.index) as *const Slot
  }
}

/// The slot table of one lock directory (process-wide, shared by all handles).
pub struct SlotTable {
  segments: RwLock<Vec<Arc<Segment>>>,
  /// A table for looking only (see [`SlotTable::to_look`]).
  looking: bool,
}

/// The file of segment `k`. Public for tests (they write into it to forge holder records).
#[doc(hidden)]
pub fn segment_file(k: usize) -> String {
  format!("shm-locks-{k}.seg")
}

impl SlotTable {
  pub fn new() -> Self {
    SlotTable {
      segments: RwLock::new(Vec::new()),
      looking: false,
    }
  }

  /// A table for `inspect()` and `list()`, which must write nothing: segments are mapped
  /// read-only and never created or repaired, and a blank segment ends the table (no name was
  /// ever placed in it, so none is in a later one either). Only [`SlotTable::find`] and
  /// [`SlotTable::all`] may be used on it.
  pub fn to_look() -> Self {
    SlotTable {
      segments: RwLock::new(Vec::new()),
      looking: true,
    }
  }

  /// Segment `k`, mapping it if needed; `create` also creates it if it does not exist.
  fn segment(&self, dir: &LockDir, k: usize, create: bool) -> Result<Option<Arc<Segment>>> {
    if let Some(s) = self.segments.read().unwrap_or_else(|p| p.into_inner()).get(k) {
      return Ok(Some(s.clone()));
    }
    let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
    while segs.len() <= k {
      let i = segs.len();
      if self.looking {
        match Segment::open_to_look(dir, &segment_file(i), LOCKS_LAYOUT, i as u32)? {
          Some(segment) => segs.push(Arc::new(segment)),
          None => return Ok(None),
        }
        continue;
      }
      if !create && dir.open_existing(&segment_file(i))?.is_none() {
        return Ok(None);
      }
      segs.push(Arc::new(Segment::open(dir, &segment_file(i), LOCKS_LAYOUT, i as u32)?));
    }
    Ok(Some(segs[k].clone()))
  }

  /// The slot of `name`, claiming one if the name has none yet.
  pub fn claim(&self, dir: &LockDir, name: &LockName) -> Result<SlotRef> {
    if self.looking {
      return Err(Error::new(
        ErrorKind::Io,
        "internal error: claiming a slot in a table opened for looking",
      ));
    }
    self.lookup(dir, name, true)?.ok_or_else(|| {
      Error::new(
        ErrorKind::Io,
        format!("no free shm lock slot for {:?} in {}", name.as_str(), dir.path().display()),
      )
    })
  }

  /// The slot of `name` if it has one; never creates anything.
  pub fn find(&self, dir: &LockDir, name: &LockName) -> Result<Option<SlotRef>> {
    self.lookup(dir, name, false)
  }

  fn lookup(&self, dir: &LockDir, name: &LockName, claim: bool) -> Result<Option<SlotRef>> {
    let key = name.key();
    let start = (key >> 20) as usize % SLOTS_PER_SEGMENT;
    for k in 0..MAX_SEGMENTS {
      let Some(segment) = self.segment(dir, k, claim)? else {
        return Ok(None);
      };
      for i in 0..WINDOW {
        let index = (start + i) % SLOTS_PER_SEGMENT;
        let r = SlotRef {
          segment: segment.clone(),
          number: k,
          index,
        };
        let slot = r.slot();
        let mut found = slot.key.load(Acquire);
        if found == 0 {
          if !claim {
            return Ok(None);
          }
          match slot.key.compare_exchange(0, key, AcqRel, Acquire) {
            Ok(_) => {
              crate::crash_points::reached(crate::crash_points::Step::SlotKeyClaimed);
              // Before the name, so a lookup that finds the name finds the start too. A
              // claimer killed before this line leaves the start to whoever finishes the slot
              // (below); `fetch_max` because that finisher may already be using it.
              slot.cell.token.fetch_max(token_start(), Relaxed);
              slot.write_name(name.as_str());
              return Ok(Some(r));
            }
            Err(now) => found = now,
          }
        }
        if found == key {
          match slot.name() {
            Some(n) if n == name.as_str() => return Ok(Some(r)),
            Some(_) => continue,
            None if slot.name_len.load(Acquire) == 0 => {
              // Claimed by someone who died before writing the name; it is ours to finish
              // when claiming (its token counter may not have been started either). A lookup
              // only reports it: looking writes nothing.
              if claim {
                slot.cell.token.fetch_max(token_start(), Relaxed);
                slot.write_name(name.as_str());
              }
              return Ok(Some(r));
            }
            None => continue,
          }
        }
      }
    }
    Ok(None)
  }

  /// Every named slot that exists, in table order.
  ///
  /// A slot is reported only if looking its name up finds that very slot. In a table that
  /// proclock wrote that is every named slot; in a damaged one, a name stored under another
  /// name's key, or a copy of a name outside its window or behind its real slot, is garbage,
  /// not a lock: `inspect()` of that name would show another slot (or none), and `list()`
  /// would contradict it (found by the fuzzing in `tests/garbage_shm_tables.rs`).
  pub fn all(&self, dir: &LockDir) -> Result<Vec<(String, SlotRef)>> {
    let mut out = Vec::new();
    for k in 0..MAX_SEGMENTS {
      let Some(segment) = self.segment(dir, k, false)? else { break };
      for index in 0..SLOTS_PER_SEGMENT {
        let r = SlotRef {
          segment: segment.clone(),
          number: k,
          index,
        };
        if r.slot().key.load(Acquire) != 0 {
          if let Some(name) = r.slot().name() {
            let Ok(lock_name) = LockName::new(&name) else { continue };
            if self.find(dir, &lock_name)?.is_some_and(|found| found.location() == (k, index)) {
              out.push((name, r));
            }
          }
        }
      }
    }
    Ok(out)
  }
}

/// Whether `dir` has any shm lock table yet (opens nothing else, creates nothing).
pub fn has_segments(dir: &LockDir) -> Result<bool> {
  Ok(dir.open_existing(&segment_file(0))?.is_some())
}

impl Default for SlotTable {
  fn default() -> Self {
    Self::new()
  }
}

#[cfg(all(test, unix))]
mod tests {
  use super::*;

  #[test]
  fn claim_find_and_overflow_into_new_segments() {
    let p = crate::lock_dir::scratch_dir("slots");
    let dir = LockDir::open(&p).unwrap();
    let t = SlotTable::new();
    let a = LockName::new("alpha").unwrap();
    assert!(t.find(&dir, &a).unwrap().is_none());
    let s1 = t.claim(&dir, &a).unwrap();
    let s2 = SlotTable::new().claim(&dir, &a).unwrap();
    assert_eq!(s1.location(), s2.location(), "a second table (another process) finds the same slot");
    // The two mappings are the same memory.
    s1.slot().cell.token.store(77, Relaxed);
    assert_eq!(s2.slot().cell.token.load(Relaxed), 77);
    assert_eq!(s1.slot().name().as_deref(), Some("alpha"));
    // 5000 names cannot fit in one 4096-slot segment: the table grows and still finds them all.
    let names: Vec<_> = (0..5000).map(|i| LockName::new(&format!("n{i}")).unwrap()).collect();
    let refs: Vec<_> = names.iter().map(|n| t.claim(&dir, n).unwrap()).collect();
    let fresh = SlotTable::new();
    for (n, r) in names.iter().zip(&refs) {
      let f = fresh.find(&dir, n).unwrap().expect("found");
      assert_eq!(f.location(), r.location());
      assert_eq!(f.slot().name().as_deref(), Some(n.as_str()));
    }
    assert!(p.join("shm-locks-1.seg").exists());
    assert_eq!(fresh.all(&dir).unwrap().len(), 5001);
    std::fs::remove_dir_all(&p).unwrap();
  }
}
