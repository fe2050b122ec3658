//! Liveness: is the process behind a lock word still running?
//!
//! A process that uses shm locks in a directory first *registers*: it claims a process slot
//! ("pslot") by taking an exclusive kernel lock on that slot's liveness file,
//! `shm-live-<pslot>.lock`, and keeps it until it dies. The kernel releases that lock when the
//! process dies in any way (exit, crash, SIGKILL, OOM kill), with nobody polling anything.
//! File locks are per open file description (flock on Unix, LockFileEx on Windows), never the
//! per-process fcntl kind: an unrelated `close()` of the same file elsewhere in the process must
//! not drop them. The descriptor is `O_CLOEXEC`, so a spawned child does not keep a dead
//! parent "alive".
//!
//! Handle ids (see `lock_word.rs`) are `(pslot, seq)`. Each pslot's entry in the process table
//! (`shm-procs.seg`) keeps a counter that is never reset, so seqs are never reissued, and the
//! `base` seq of its current occupant. A holder `(p, s)` is the *current* occupant of `p` iff
//! `s >= base[p]`: the occupant writes `base` before it issues its first seq, and a new occupant
//! can only claim `p` after the previous one's liveness lock was released, i.e. it died.
//!
//! The verdict "dead" lets someone take the lock over, so it is made conservatively:
//! 1. A holder in our own pslot: alive if its seq is ours (we are running, and our handles
//!    abandon their locks when dropped); dead if it is older (we hold `p`, so its earlier
//!    occupant is gone).
//! 2. Otherwise probe the liveness lock with a non-blocking *shared* lock attempt: if it cannot
//!    be had, an occupant is alive, and the holder is alive iff `s >= base[p]`.
//! 3. Before saying "dead", cross-check the holder's pid and start identity (from the process
//!    table when it is the current occupant, else from the lock's holder record). If that exact
//!    process is still running, the answer is "alive" whatever the file lock said: a liveness
//!    file deleted by a temp cleaner must never let a live holder be robbed. Because the start
//!    identity changes when a pid is reused, a reused pid never keeps a dead holder alive.
//!
//! If the liveness file cannot be probed at all, step 3 alone decides (the pid + start time
//! fallback).
//!
//! The verdict has three values, [`Verdict::Alive`], [`Verdict::Dead`] and [`Verdict::Unknown`],
//! and only `Dead` lets anyone take a lock over. Every step that fails to get an answer (the
//! liveness file cannot be opened or probed: `EMFILE`/`ENFILE` when this process or the system
//! is out of descriptors, `EACCES`, `ENOMEM`, `EINTR`, `EIO`; the holder's start identity cannot
//! be read: see `process_info.rs`) yields `Unknown`, never `Dead`. A process out of descriptors
//! once read "could not open anything" as "the holder is gone" and took a live holder's lock.
//! `Unknown` is treated as alive by the lock-word protocol: the contender sleeps, and asks again
//! on its next probe slice; once the error goes away, a real answer follows.

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::shm::holder_record::HolderRecord;
use crate::lock_dir::LockDir;
use crate::lock_word::{pslot_of, seq_of, RESERVED_PSLOT, SEQ_BITS};
use crate::process_info;
use crate::shm::segment::{Layout, Segment};
use std::sync::atomic::{AtomicU64, Ordering::*};

/// What [`Liveness::verdict`] can tell about a holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
  Alive,
  /// Proven dead: the only answer that allows a takeover.
  Dead,
  /// Could not be told (an error on the way): must be treated as alive, and asked again later.
  Unknown,
}

/// How many processes can use one lock directory at the same time.
pub const PROC_SLOTS: usize = 16_384;
const _: () = assert!(PROC_SLOTS <= RESERVED_PSLOT as usize);

/// The process table's layout (kind 2).
pub const PROCS_LAYOUT: Layout = Layout {
  kind: 2,
  entry_size: std::mem::size_of::<ProcEntry>(),
  entry_count: PROC_SLOTS,
};
pub const PROCS_FILE: &str = "shm-procs.seg";

/// One process slot in shared memory.
#[repr(C)]
pub struct ProcEntry {
  /// Next seq to issue from this slot. Only grows, across occupants.
  next_seq: AtomicU64,
  /// First seq issued by the current occupant.
  base_seq: AtomicU64,
  pid: AtomicU64,
  identity: AtomicU64,
  _reserved: [AtomicU64; 4],
}

/// Where `pid` and `identity` sit in a [`ProcEntry`], in bytes. For tests (`tests/pid_reuse.rs`
/// forges entries to imitate a reused pid); nothing else writes the table from outside.
#[doc(hidden)]
pub const PROC_ENTRY_PID_AT: usize = std::mem::offset_of!(ProcEntry, pid);
#[doc(hidden)]
pub const PROC_ENTRY_IDENTITY_AT: usize = std::mem::offset_of!(ProcEntry, identity);

const PROBE_FDS_KEPT: usize = 64;

/// The liveness file of process slot `pslot`. Public for tests (they delete one, as a temp
/// cleaner would).
#[doc(hidden)]
pub fn live_file_name(pslot: u16) -> String {
  format!("shm-live-{pslot}.lock")
}

/// This process's claim on a process slot. Dropping it would release the slot, so it lives as
/// long as the directory state that owns it (the life of the process).
///
/// An observer ([`Liveness::observe`]) has no claim: its `pslot` is `RESERVED_PSLOT`, which no
/// holder can have (the verdict answers a word naming it before comparing it with ours), and it
/// holds no liveness file.
pub struct Registration {
  pub pslot: u16,
  pub pid: u32,
  pub identity: u64,
  _live: Option<File>,
}

/// The process table of one lock directory plus our own registration in it.
pub struct Liveness {
  procs: Segment,
  /// False only for an observer that found no process table (see [`Liveness::observe`]).
  procs_found: bool,
  me: Registration,
  /// Descriptors of other processes' liveness files, reused for probes (at most
  /// `PROBE_FDS_KEPT`, so a long-lived process cannot collect one per slot it ever probed).
  probes: Mutex<HashMap<u16, File>>,
}

impl Registration {
  /// The descriptor holding this process's liveness lock. A process that inherits a duplicate
  /// of it keeps the lock, and so keeps this process slot occupied, after this process dies:
  /// `holder_is_dead` then answers "alive" for every holder of this slot that is its current
  /// occupant (step 2 above, before any pid cross-check), which is how `proclock run` hands
  /// an shm hold to the command it runs. Nobody else can claim the slot meanwhile (its
  /// liveness lock cannot be had), so no seq of it is reissued either.
  /// `None` for a view that only looks (it has no registration to hand on).
  #[cfg(unix)]
  pub fn descriptor(&self) -> Option<std::os::fd::RawFd> {
    self._live.as_ref().map(std::os::fd::AsRawFd::as_raw_fd)
  }
}

impl Liveness {
  /// Open the process table and claim a process slot.
  pub fn register(dir: &LockDir) -> Result<Liveness> {
    let procs = Segment::open(dir, PROCS_FILE, PROCS_LAYOUT, 0)?;
    let pid = process_info::current_pid();
    // 0 (unreadable) disables the cross-check against this process: others then rely on the
    // liveness lock alone, which is what the lock guarantees without the fallback.
    let identity = process_info::start_identity(pid).unwrap_or(0);
    for p in 0..PROC_SLOTS as u16 {
      let file = dir.open_or_create(&live_file_name(p))?;
      match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => continue,
        Err(TryLockError::Error(e)) => return Err(Error::io(format!("locking liveness file {}", live_file_name(p)), e)),
      }
      // A death from here until `base_seq` is written leaves an entry describing the slot's
      // previous occupant, or a torn mix: harmless, because no handle id of ours exists yet
      // and the kernel frees the liveness lock for the next occupant.
      crate::crash_points::reached(crate::crash_points::Step::RegisterLivenessLocked);
      // SAFETY: entry p is inside the validated process table, which outlives `entry`.
      let entry = unsafe { &*(procs.entry(usize::from(p)) as *const ProcEntry) };
      let base = entry.next_seq.load(Acquire).max(1);
      if base >= (1 << SEQ_BITS) - (1 << 32) {
        return Err(Error::new(
          ErrorKind::Corrupt,
          format!("process slot {p} has run out of handle ids (table damaged?)"),
        ));
      }
      entry.next_seq.store(base, Relaxed);
      entry.pid.store(u64::from(pid), Relaxed);
      entry.identity.store(identity, Relaxed);
      entry.base_seq.store(base, Release);
      return Ok(Liveness {
        procs,
        procs_found: true,
        me: Registration {
          pslot: p,
          pid,
          identity,
          _live: Some(file),
        },
        probes: Mutex::new(HashMap::new()),
      });
    }
    Err(Error::new(
      ErrorKind::Io,
      format!("more than {PROC_SLOTS} processes use {} at once", dir.path().display()),
    ))
  }

  /// Liveness for looking at locks (`inspect()`, `list()`) without registering: no process
  /// slot is claimed, no liveness file is created, and the process table is mapped read-only
  /// and never created or repaired, so that looking writes nothing. A missing or blank table is
  /// read as all zeros, which is what it would be once rebuilt; the liveness files then decide.
  /// The verdict is the same as a registered process's, our own slot aside (we have none, and
  /// an observer holds no lock).
  pub fn observe(dir: &LockDir) -> Result<Liveness> {
    let (procs, procs_found) = match Segment::open_to_look(dir, PROCS_FILE, PROCS_LAYOUT, 0)? {
      Some(procs) => (procs, true),
      None => (Segment::zeroed(PROCS_LAYOUT)?, false),
    };
    let pid = process_info::current_pid();
    Ok(Liveness {
      procs,
      procs_found,
      me: Registration {
        pslot: RESERVED_PSLOT,
        pid,
        identity: process_info::start_identity(pid).unwrap_or(0),
        _live: None,
      },
      probes: Mutex::new(HashMap::new()),
    })
  }

  /// Whether the process table was found (always, for a registered process).
  pub fn has_process_table(&self) -> bool {
    self.procs_found
  }

  /// Whether this is an observer's view (see [`Liveness::observe`]), which must write nothing.
  pub fn observing(&self) -> bool {
    self.me._live.is_none()
  }

  pub fn me(&self) -> &Registration {
    &self.me
  }

  fn entry(&self, pslot: u16) -> Option<&ProcEntry> {
    // SAFETY: bounds-checked index into the validated table, which lives as long as `self`.
    (usize::from(pslot) < PROC_SLOTS).then(|| unsafe { &*(self.procs.entry(usize::from(pslot)) as *const ProcEntry) })
  }

  /// A fresh seq from our own slot; never issued before in this directory.
  pub fn next_seq(&self) -> Result<u64> {
    let entry = self
      .entry(self.me.pslot)
      .ok_or_else(|| Error::new(ErrorKind::Corrupt, "own process slot out of range"))?;
    let seq = entry.next_seq.fetch_add(1, Relaxed);
    if seq >= (1 << SEQ_BITS) - 1 {
      return Err(Error::new(
        ErrorKind::Corrupt,
        "handle ids exhausted for this process slot (table damaged?)",
      ));
    }
    Ok(seq)
  }

  /// The pid and start identity of `holder`'s process, if it is still its slot's occupant.
  /// (A torn read against a new occupant registering at that moment can name the new
  /// occupant; callers use this only to choose what to watch, never to decide death.)
  pub fn holder_process(&self, holder: u64) -> Option<(u32, u64)> {
    let entry = self.entry(pslot_of(holder))?;
    (seq_of(holder) >= entry.base_seq.load(Acquire)).then(|| (entry.pid.load(Relaxed) as u32, entry.identity.load(Relaxed)))
  }

  /// Probe `pslot`'s liveness lock: `Some(true)` held by a live occupant, `Some(false)` free,
  /// `None` could not tell (the file could not be opened, e.g. `EMFILE`, or the probe failed).
  fn occupied(&self, pslot: u16, dir: &LockDir) -> Option<bool> {
    let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
    if !probes.contains_key(&pslot) {
      // Open first, make room after: a process out of descriptors must not lose the probes it
      // already has for a file it cannot open.
      // An observer opens only what exists: it must create nothing. A missing file is
      // "could not tell", which the pid cross-check below then decides.
      let file = if self.observing() {
        dir.open_existing(&live_file_name(pslot)).ok()??
      } else {
        dir.open_or_create(&live_file_name(pslot)).ok()?
      };
      if probes.len() >= PROBE_FDS_KEPT {
        probes.clear();
      }
      probes.insert(pslot, file);
    }
    let file = probes.get(&pslot)?;
    match file.try_lock_shared() {
      Ok(()) => {
        let _ = file.unlock();
        Some(false)
      }
      Err(TryLockError::WouldBlock) => Some(true),
      Err(TryLockError::Error(_)) => None,
    }
  }

  /// Is `holder`'s process certainly dead? Only [`Verdict::Dead`] says so; see [`Self::verdict`].
  pub fn holder_is_dead(&self, holder: u64, record: &HolderRecord, dir: &LockDir) -> bool {
    self.verdict(holder, record, dir) == Verdict::Dead
  }

  /// The verdict described at the top of this file. `record` is the lock's holder record, used
  /// for the cross-check of holders that are no longer their slot's current occupant.
  pub fn verdict(&self, holder: u64, record: &HolderRecord, dir: &LockDir) -> Verdict {
    let p = pslot_of(holder);
    if self.entry(p).is_none() {
      // A word naming a slot that cannot exist was never written by a live proclock.
      return Verdict::Dead;
    }
    // Some((pid, identity)) iff the holder is still its slot's occupant.
    let process = self.holder_process(holder);
    let current = process.is_some();
    if p == self.me.pslot && current {
      return Verdict::Alive;
    }
    let occupied = if p == self.me.pslot { Some(true) } else { self.occupied(p, dir) };
    if occupied == Some(true) && current {
      return Verdict::Alive;
    }
    // About to say "dead": check the holder's own pid and start identity first. Only a record
    // written by this very holder describes a former occupant; one that died before writing
    // its record has none.
    let known = process.or_else(|| record.read().filter(|r| r.holder == holder).map(|r| (r.pid, r.identity)));
    match known {
      Some((pid, identity)) if identity != 0 => match process_info::is_running(pid, identity) {
        Some(true) => Verdict::Alive,
        Some(false) => Verdict::Dead,
        // The identity could not be read (out of descriptors, no /proc, ...): not proven.
        None => Verdict::Unknown,
      },
      // Nothing to cross-check with: the liveness lock alone decides, and if it could not be
      // probed, death is not proven.
      _ if occupied.is_some() => Verdict::Dead,
      _ => Verdict::Unknown,
    }
  }
}
