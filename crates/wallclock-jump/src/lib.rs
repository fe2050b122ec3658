//! A test-only `LD_PRELOAD` shim that makes the wall clock jump, to test that no timeout in
//! proclock is measured on it (the README's promise: timeouts count on a monotonic clock).
//! `__test__/wall-clock.spec.mts` runs a Node process under it.
//!
//! It interposes `clock_gettime`, `gettimeofday` and `time`. Only the wall clock is changed
//! (`CLOCK_REALTIME` and `CLOCK_REALTIME_COARSE`, which is what `Date.now()`, Rust's
//! `SystemTime::now()` and proclock's `since` read); every other clock is passed to the real
//! function, found with `dlsym(RTLD_NEXT)`. The wall clock reads the real time plus an offset
//! that flips between +1 hour and -1 hour every `PERIOD_NS` of *monotonic* time, so a deadline
//! computed from wall time fires at once or hours late.
//!
//! Why 60 ms and not 50: the test's timeouts are 300 ms. With a 50 ms period, 300 ms later is
//! always the same phase as the start, so a deadline computed on the wall clock and checked
//! only once, when the sleep until it ends, would read the same offset both times and come out
//! right. 300 ms is five 60 ms periods, an odd number: a timeout started in one phase always
//! ends in the other.
//!
//! Linux only (glibc and musl both resolve these symbols through `LD_PRELOAD`); on other systems
//! the library is empty.
#![cfg(target_os = "linux")]

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libc::{c_int, c_void, clockid_t, time_t, timespec, timeval};

/// How long the wall clock stays on one side before jumping to the other.
const PERIOD_NS: u64 = 60_000_000;
/// How far the wall clock is off, either way.
const OFFSET_S: time_t = 3600;

type ClockGettime = unsafe extern "C" fn(clockid_t, *mut timespec) -> c_int;
type Gettimeofday = unsafe extern "C" fn(*mut timeval, *mut c_void) -> c_int;
type Time = unsafe extern "C" fn(*mut time_t) -> time_t;

/// The next definition of `symbol` after ours (libc's), looked up once and cached.
fn next(cache: &AtomicUsize, symbol: &std::ffi::CStr) -> usize {
  let mut f = cache.load(Relaxed);
  if f == 0 {
    // SAFETY: dlsym with a valid NUL-terminated name; RTLD_NEXT is the documented handle.
    f = unsafe { libc::dlsym(libc::RTLD_NEXT, symbol.as_ptr()) } as usize;
    cache.store(f, Relaxed);
  }
  f
}

/// The real `clock_gettime` (or the system call, should libc's be missing).
///
/// # Safety
/// As `clock_gettime(3)`: `ts` must be valid for writes.
unsafe fn real_clock_gettime(clock: clockid_t, ts: *mut timespec) -> c_int {
  static REAL: AtomicUsize = AtomicUsize::new(0);
  match next(&REAL, c"clock_gettime") {
    // SAFETY: as the caller's contract (`ts` valid for writes).
    0 => unsafe { libc::syscall(libc::SYS_clock_gettime, clock, ts) as c_int },
    // SAFETY: the symbol is libc's clock_gettime, which has this signature.
    f => unsafe { std::mem::transmute::<usize, ClockGettime>(f)(clock, ts) },
  }
}

/// The offset in force now: +1 h or -1 h, by the parity of the monotonic period.
fn offset() -> time_t {
  let mut ts = timespec { tv_sec: 0, tv_nsec: 0 };
  // SAFETY: valid out-pointer.
  unsafe { real_clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
  let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
  if (ns / PERIOD_NS).is_multiple_of(2) {
    OFFSET_S
  } else {
    -OFFSET_S
  }
}

/// `clock_gettime(3)`, with the wall clocks shifted.
///
/// # Safety
/// As `clock_gettime(3)`: `ts` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn clock_gettime(clock: clockid_t, ts: *mut timespec) -> c_int {
  // SAFETY: forwarded as given.
  let r = unsafe { real_clock_gettime(clock, ts) };
  if r == 0 && !ts.is_null() && (clock == libc::CLOCK_REALTIME || clock == libc::CLOCK_REALTIME_COARSE) {
    // SAFETY: the real call just filled `*ts`.
    unsafe { (*ts).tv_sec += offset() };
  }
  r
}

/// `gettimeofday(2)`, shifted.
///
/// # Safety
/// As `gettimeofday(2)`: `tv` (and `tz`, if not null) must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn gettimeofday(tv: *mut timeval, tz: *mut c_void) -> c_int {
  static REAL: AtomicUsize = AtomicUsize::new(0);
  let f = next(&REAL, c"gettimeofday");
  let r = if f == 0 {
    // SAFETY: as the caller's contract.
    unsafe { libc::syscall(libc::SYS_gettimeofday, tv, tz) as c_int }
  } else {
    // SAFETY: the symbol is libc's gettimeofday, which has this signature.
    unsafe { std::mem::transmute::<usize, Gettimeofday>(f)(tv, tz) }
  };
  if r == 0 && !tv.is_null() {
    // SAFETY: the real call just filled `*tv`.
    unsafe { (*tv).tv_sec += offset() };
  }
  r
}

/// `time(2)`, shifted.
///
/// # Safety
/// As `time(2)`: `t`, if not null, must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn time(t: *mut time_t) -> time_t {
  static REAL: AtomicUsize = AtomicUsize::new(0);
  let f = next(&REAL, c"time");
  let now = if f == 0 {
    let mut ts = timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { real_clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec
  } else {
    // SAFETY: the symbol is libc's time, which has this signature.
    unsafe { std::mem::transmute::<usize, Time>(f)(std::ptr::null_mut()) }
  };
  if now == -1 {
    return now;
  }
  let now = now + offset();
  if !t.is_null() {
    // SAFETY: the caller's contract.
    unsafe { *t = now };
  }
  now
}
