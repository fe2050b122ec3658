//! Wall-clock readings, shared by both backends. No timeout or wait ever reads the wall clock
//! (they use `Instant`); the wall clock only dates a hold (`since`) and seeds a new lock's
//! fencing tokens.
//!
//! **Where a lock's tokens start.** A new lock's fencing-token counter (a claimed shm slot's,
//! a new lock file's record) starts at the wall-clock time in milliseconds shifted left by 20 bits ([`token_start`]), not at 0, so that
//! tokens keep growing when the lock directory is deleted and re-created: the new directory's
//! counters start above every token the old one handed out, as long as the old one handed out
//! fewer than 2^20 (about a million) tokens per millisecond of its life, which no lock gets
//! near (each acquisition takes far longer than a microsecond). If the clock was set back,
//! tokens still grow within a directory (the counter only counts up from wherever it is), and
//! across a re-creation only if the clock moved back by less than the old directory's
//! acquisitions of that lock / 2^20 milliseconds (and, after it, the new start still lies above
//! the old counter). It costs nothing per acquisition: the start is written once, when the slot
//! is claimed or the lock file created.

use std::time::{SystemTime, UNIX_EPOCH};

/// The first value of a new lock's fencing-token counter: wall-clock milliseconds << 20 (see the
/// module comment). About 2^60.7 in 2026; it reaches the shm backend's `TOKEN_LIMIT`
/// (2^64 - 2^48) in the year 2527. 0 if the clock reads before 1970.
pub fn token_start() -> u64 {
  let ms = SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map_or(0, |d| d.as_millis() as u64);
  ms.min(u64::MAX >> 20) << 20
}

/// Wall-clock milliseconds for `since` (diagnostics only; no timeout reads the wall clock).
/// On Linux the coarse clock is read: it is a plain load from the vDSO page even on VMs whose
/// clock source makes the precise clock a system call, and `since` needs no more than
/// millisecond-ish precision.
#[inline]
pub fn epoch_ms() -> u64 {
  #[cfg(target_os = "linux")]
  {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
      return ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000;
    }
  }
  SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

