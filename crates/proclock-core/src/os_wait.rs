//! Sleeping until a word in shared memory changes, across processes.
//!
//! The lock word is 64 bits; futexes are 32. Waiters sleep on the word's *low half*, which holds
//! the waiters bit and the low bits of the holder's sequence number, so every change that matters
//! (release, takeover, a new holder) changes it. See `lock_word.rs` for why a stale compare on the
//! low half cannot lose a wake-up.
//!
//! - Linux: `FUTEX_WAIT`/`FUTEX_WAKE` **without** `FUTEX_PRIVATE_FLAG`, because the word lives in
//!   a `MAP_SHARED` file mapping and the kernel must key it by (inode, offset), not by our address
//!   space. `FUTEX_WAIT` takes a relative timeout on `CLOCK_MONOTONIC`, so wall-clock jumps do not
//!   shorten or stretch a wait.
//! - macOS: `__ulock_wait`/`__ulock_wake` with `UL_COMPARE_AND_WAIT_SHARED`, the primitive libc++
//!   uses for `std::atomic::wait`. `os_sync_wait_on_address` is the public successor but only
//!   exists from macOS 14.4, and a hard reference to it would fail to load on older systems.
//! - Windows: `WaitOnAddress` only wakes threads of the *same* process, so there is no
//!   cross-process equivalent to sleep on. Waiters sleep in short slices (at most 1 ms) and
//!   re-check; this costs wake-up latency, never correctness.

use std::time::Duration;

use crate::sync::AtomicU64;

/// Address of the low 32 bits of a 64-bit atomic, whatever the byte order.
fn low_half(word: &AtomicU64) -> *const u32 {
  let base = word as *const AtomicU64 as *const u32;
  if cfg!(target_endian = "little") {
    base
  } else {
    base.wrapping_add(1)
  }
}

#[cfg(target_os = "linux")]
mod imp {
  use super::*;

  pub fn wait(word: &AtomicU64, expected_low: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
      tv_sec: d.as_secs().min(i64::MAX as u64 / 2) as libc::time_t,
      tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: the address is a valid, 4-byte aligned u32 inside a live mapping. EINTR, EAGAIN
    // (value already changed) and ETIMEDOUT are all "go and look again" for the caller.
    unsafe {
      libc::syscall(libc::SYS_futex, low_half(word), libc::FUTEX_WAIT, expected_low, ts_ptr);
    }
  }

  pub fn wake(word: &AtomicU64, count: i32) {
    // SAFETY: as above; FUTEX_WAKE never blocks.
    unsafe {
      libc::syscall(libc::SYS_futex, low_half(word), libc::FUTEX_WAKE, count);
    }
  }
}

#[cfg(target_os = "macos")]
mod imp {
  use super::*;

  const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
  const ULF_WAKE_ALL: u32 = 0x0000_0100;
  const ULF_NO_ERRNO: u32 = 0x0100_0000;

  extern "C" {
    fn __ulock_wait(operation: u32, addr: *mut libc::c_void, value: u64, timeout_us: u32) -> libc::c_int;
    fn __ulock_wake(operation: u32, addr: *mut libc::c_void, wake_value: u64) -> libc::c_int;
  }

  pub fn wait(word: &AtomicU64, expected_low: u32, timeout: Option<Duration>) {
    // 0 means "no timeout" to __ulock_wait, so a zero-length wait is skipped instead.
    let us = match timeout {
      Some(d) if d.is_zero() => return,
      Some(d) => d.as_micros().clamp(1, u128::from(u32::MAX)) as u32,
      None => 0,
    };
    // SAFETY: valid aligned u32 in a live shared mapping; errors mean "look again".
    unsafe {
      __ulock_wait(
        UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO,
        low_half(word) as *mut _,
        u64::from(expected_low),
        us,
      );
    }
  }

  pub fn wake(word: &AtomicU64, count: i32) {
    let all = if count > 1 { ULF_WAKE_ALL } else { 0 };
    // SAFETY: as above.
    unsafe {
      __ulock_wake(UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO | all, low_half(word) as *mut _, 0);
    }
  }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod imp {
  use super::*;

  pub fn wait(word: &AtomicU64, expected_low: u32, timeout: Option<Duration>) {
    let slice = Duration::from_millis(1);
    // SAFETY-free: a plain read of the low half through the atomic.
    let _ = low_half(word);
    if (word.load(crate::sync::Ordering::Acquire) as u32) == expected_low {
      std::thread::sleep(timeout.map_or(slice, |t| t.min(slice)));
    }
  }

  pub fn wake(_word: &AtomicU64, _count: i32) {}
}

/// Sleep while the low half of `word` equals `expected_low`, for at most `timeout`.
/// May return early for any reason; callers always re-check the word.
#[cfg(not(loom))]
pub fn wait(word: &AtomicU64, expected_low: u32, timeout: Option<Duration>) {
  imp::wait(word, expected_low, timeout)
}

/// Wake up to `count` sleepers of `word` (in any process).
#[cfg(not(loom))]
pub fn wake(word: &AtomicU64, count: i32) {
  imp::wake(word, count)
}
