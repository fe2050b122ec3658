//! Sleeping until a 32-bit counter in shared memory changes, across processes.
//!
//! Sleepers sleep on a lock's wake counter (see `lock_word.rs`); wakers bump it, then wake.
//!
//! - Linux: `FUTEX_WAIT`/`FUTEX_WAKE` **without** `FUTEX_PRIVATE_FLAG`, because the counter
//!   lives in a `MAP_SHARED` file mapping and the kernel must key it by (inode, offset), not by
//!   our address space. `FUTEX_WAIT` takes a relative timeout measured on `CLOCK_MONOTONIC`, so
//!   wall-clock jumps neither shorten nor stretch a wait.
//! - macOS: `__ulock_wait`/`__ulock_wake` with `UL_COMPARE_AND_WAIT_SHARED`, the primitive
//!   libc++ uses for `std::atomic::wait`. `os_sync_wait_on_address` is the public successor but
//!   only exists from macOS 14.4, and a hard reference to it would fail to load on older systems.
//! - Windows: `WaitOnAddress` only wakes threads of the *same* process, so there is no
//!   cross-process equivalent to sleep on. Waiters sleep in short slices (at most 1 ms) and
//!   re-check; this costs wake-up latency, never correctness.

use std::time::Duration;

use crate::sync::AtomicU32;

#[cfg(target_os = "linux")]
mod imp {
  use super::*;

  pub fn wait(counter: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
      // `as _`: time_t is 32 or 64 bits depending on the libc; the clamp keeps it in range.
      tv_sec: d.as_secs().min(i32::MAX as u64) as _,
      tv_nsec: d.subsec_nanos() as _,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: a valid, aligned u32 inside a live mapping. EINTR, EAGAIN (already changed) and
    // ETIMEDOUT all mean "go and look again" to the caller.
    unsafe {
      libc::syscall(libc::SYS_futex, counter.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr);
    }
  }

  pub fn wake(counter: &AtomicU32, count: i32) {
    // SAFETY: as above; FUTEX_WAKE never blocks.
    unsafe {
      libc::syscall(libc::SYS_futex, counter.as_ptr(), libc::FUTEX_WAKE, count);
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

  pub fn wait(counter: &AtomicU32, expected: u32, timeout: Option<Duration>) {
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
        counter.as_ptr().cast(),
        u64::from(expected),
        us,
      );
    }
  }

  pub fn wake(counter: &AtomicU32, count: i32) {
    let all = if count > 1 { ULF_WAKE_ALL } else { 0 };
    // SAFETY: as above.
    unsafe {
      __ulock_wake(UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO | all, counter.as_ptr().cast(), 0);
    }
  }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod imp {
  use super::*;

  pub fn wait(counter: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let slice = Duration::from_millis(1);
    if counter.load(std::sync::atomic::Ordering::Acquire) == expected {
      std::thread::sleep(timeout.map_or(slice, |t| t.min(slice)));
    }
  }

  pub fn wake(_counter: &AtomicU32, _count: i32) {}
}

/// Sleep while `counter` equals `expected`, for at most `timeout`. May return early for any
/// reason; callers always re-check.
pub fn wait(counter: &AtomicU32, expected: u32, timeout: Option<Duration>) {
  imp::wait(counter, expected, timeout)
}

/// Wake up to `count` sleepers of `counter` (in any process).
pub fn wake(counter: &AtomicU32, count: i32) {
  imp::wake(counter, count)
}
