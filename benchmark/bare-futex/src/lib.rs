//! The benchmark's floor: the least a cross-process lock in shared memory can do. One 32-bit
//! word in a shared file mapping, Drepper's three-state futex mutex ("mutex2" of his paper
//! "Futexes Are Tricky": 0 free, 1 locked, 2 locked with waiters), no owner record, no fencing
//! token, no crash recovery (a holder that dies wedges it forever). It is called exactly like
//! proclock's hot path (a Node-API function whose callback data is the lock), so a ratio
//! against it measures what proclock does on top.
//!
//! Two variants of the same mutex, chosen when the lock is opened:
//!
//! - `spin = 0`: Drepper's mutex as written. A contender that fails the first compare-and-swap
//!   marks the word 2 and sleeps in `FUTEX_WAIT` at once.
//! - `spin > 0`: the same, but a contender first re-reads the word up to `spin` times (a
//!   `spin_loop` hint between reads) and takes it if it sees it free, before it marks and
//!   sleeps. A holder whose critical section is shorter than a sleep plus a wake-up often lets
//!   go within the spin, and the contender then pays neither system call. Whether that helps
//!   depends on the machine: with more runnable processes than cores, spinning burns the time
//!   slice the holder needs. The benchmark runs both and compares every row with the better one.
//!
//! And an asynchronous form of each (`lockAsync`), the floor for `await acquire()`: the
//! cheapest cross-process asynchronous handoff Node allows. The JavaScript thread tries the
//! compare-and-swap itself and returns an already resolved promise if it wins. Otherwise one
//! waiter thread per lock, started at the first contended call and kept for the life of the
//! process, is handed the promise; it takes the lock the blocking way (above) and settles the
//! promise through a Node-API thread-safe function, which wakes the event loop with
//! `uv_async_send`. A handoff then costs two wake-ups (the waiter thread by the releaser's
//! `FUTEX_WAKE`, the event loop by the thread-safe function), which no asynchronous lock can
//! avoid: libuv sleeps on file descriptors only, and a futex has none.
//!
//! Linux only (it is the futex the floor is about); elsewhere the crate is empty.
#![cfg(target_os = "linux")]

use std::ffi::c_void;
use std::hint::spin_loop;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering::*};
use std::sync::mpsc;
use std::sync::OnceLock;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
  // SAFETY: a valid aligned word in a shared mapping; no timeout. Not FUTEX_PRIVATE_FLAG: the
  // waiters are in other processes.
  unsafe { libc::syscall(libc::SYS_futex, word as *const AtomicU32, op, val, ptr::null::<libc::timespec>()) };
}

/// One lock as the callbacks see it: leaked at creation, lives for the process.
struct Lock {
  word: &'static AtomicU32,
  spin: u32,
  /// The waiter thread of `lockAsync`, started at its first contended call.
  waiter: OnceLock<Waiter>,
}

struct Waiter {
  /// Promises to settle once the lock is taken, as `napi_deferred` pointers.
  tx: mpsc::Sender<usize>,
  tsfn: usize,
}

fn try_lock(w: &AtomicU32) -> bool {
  w.compare_exchange(0, 1, Acquire, Relaxed).is_ok()
}

fn lock(w: &AtomicU32, spin: u32) {
  if try_lock(w) {
    return;
  }
  for _ in 0..spin {
    spin_loop();
    // Read before the compare-and-swap, so spinners do not bounce the cache line between
    // cores with writes while the holder runs.
    if w.load(Relaxed) == 0 && try_lock(w) {
      return;
    }
  }
  while w.swap(2, Acquire) != 0 {
    futex(w, libc::FUTEX_WAIT, 2);
  }
}

fn unlock(w: &AtomicU32) {
  if w.swap(0, Release) == 2 {
    futex(w, libc::FUTEX_WAKE, 1);
  }
}

unsafe fn this(env: sys::napi_env, info: sys::napi_callback_info) -> &'static Lock {
  let mut data = ptr::null_mut();
  // SAFETY: data is the leaked Lock given at creation.
  unsafe {
    sys::napi_get_cb_info(env, info, ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), &mut data);
    &*(data as *const Lock)
  }
}

unsafe extern "C" fn try_lock_cb(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  let mut out = ptr::null_mut();
  // SAFETY: called by Node-API on the JS thread.
  unsafe {
    let ok = try_lock(this(env, info).word);
    sys::napi_get_boolean(env, ok, &mut out);
  }
  out
}

unsafe extern "C" fn lock_cb(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: as above.
  let l = unsafe { this(env, info) };
  lock(l.word, l.spin);
  ptr::null_mut()
}

unsafe extern "C" fn unlock_cb(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: as above.
  unlock(unsafe { this(env, info) }.word);
  ptr::null_mut()
}

/// Runs on the JS thread for each promise the waiter thread hands back: the lock is held.
unsafe extern "C" fn settle(env: sys::napi_env, _js: sys::napi_value, context: *mut c_void, data: *mut c_void) {
  if env.is_null() {
    return; // the environment is being torn down
  }
  // SAFETY: on the JS thread; `data` is the deferred the waiter was handed, `context` the
  // thread-safe function itself (see waiter()).
  unsafe {
    let mut undefined = ptr::null_mut();
    sys::napi_get_undefined(env, &mut undefined);
    sys::napi_resolve_deferred(env, data as sys::napi_deferred, undefined);
    // One reference per pending wait (lock_async_cb): an idle lock must not keep the process
    // alive.
    sys::napi_unref_threadsafe_function(env, *(context as *const sys::napi_threadsafe_function));
  }
}

fn waiter(env: sys::napi_env, l: &'static Lock) -> &'static Waiter {
  l.waiter.get_or_init(|| {
    // The thread-safe function's address must be known to `settle`, so it lives in a leaked
    // box given as its context.
    let slot: &'static mut sys::napi_threadsafe_function = Box::leak(Box::new(ptr::null_mut()));
    let slot_ptr = slot as *mut sys::napi_threadsafe_function;
    // SAFETY: on the JS thread with a valid env.
    unsafe {
      let mut name = ptr::null_mut();
      sys::napi_create_string_utf8(env, c"bare-futex waiter".as_ptr(), -1, &mut name);
      sys::napi_create_threadsafe_function(
        env,
        ptr::null_mut(),
        ptr::null_mut(),
        name,
        0,
        1,
        ptr::null_mut(),
        None,
        slot_ptr.cast(),
        Some(settle),
        slot_ptr,
      );
      sys::napi_unref_threadsafe_function(env, *slot_ptr);
    }
    let tsfn = unsafe { *slot_ptr } as usize;
    let (tx, rx) = mpsc::channel::<usize>();
    let (word, spin) = (l.word, l.spin);
    std::thread::Builder::new()
      .name("bare-futex-waiter".into())
      .spawn(move || {
        for deferred in rx {
          lock(word, spin);
          // SAFETY: the thread-safe function is never released (it lives for the process).
          unsafe {
            sys::napi_call_threadsafe_function(
              tsfn as sys::napi_threadsafe_function,
              deferred as *mut c_void,
              sys::ThreadsafeFunctionCallMode::nonblocking,
            )
          };
        }
      })
      .expect("spawn the bare-futex waiter thread");
    Waiter { tx, tsfn }
  })
}

/// `lockAsync()`: a promise that resolves once the lock is held. Tries on the JS thread first.
unsafe extern "C" fn lock_async_cb(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: as above.
  let l = unsafe { this(env, info) };
  let mut deferred = ptr::null_mut();
  let mut promise = ptr::null_mut();
  // SAFETY: on the JS thread with a valid env.
  unsafe {
    sys::napi_create_promise(env, &mut deferred, &mut promise);
    if try_lock(l.word) {
      let mut undefined = ptr::null_mut();
      sys::napi_get_undefined(env, &mut undefined);
      sys::napi_resolve_deferred(env, deferred, undefined);
    } else {
      let w = waiter(env, l);
      sys::napi_ref_threadsafe_function(env, w.tsfn as sys::napi_threadsafe_function);
      w.tx.send(deferred as usize).expect("the waiter thread lives for the process");
    }
  }
  promise
}

/// `{ tryLock, lock, unlock, lockAsync }` on the first word of the shared file `path` (created
/// if needed). `spin`: how many times a contender re-reads the word before it sleeps (0: none).
#[napi]
pub fn open_bare_lock<'env>(env: &'env Env, path: String, spin: Option<u32>) -> Result<Object<'env>> {
  let file = std::fs::OpenOptions::new()
    .read(true)
    .write(true)
    .create(true)
    .truncate(false)
    .open(&path)?;
  file.set_len(4096)?;
  let map = memmap2::MmapOptions::new().len(4096).map_raw(&file)?;
  // SAFETY: the mapping is page-aligned and never unmapped (forgotten below).
  let word: &'static AtomicU32 = unsafe { &*(map.as_mut_ptr() as *const AtomicU32) };
  std::mem::forget(map); // the floor never unmaps: lives for the process
  let data = Box::leak(Box::new(Lock {
    word,
    spin: spin.unwrap_or(0),
    waiter: OnceLock::new(),
  })) as *mut Lock as *mut c_void;
  let mut obj = Object::new(env)?;
  let callbacks: [(&str, sys::napi_callback); 4] = [
    ("tryLock", Some(try_lock_cb)),
    ("lock", Some(lock_cb)),
    ("unlock", Some(unlock_cb)),
    ("lockAsync", Some(lock_async_cb)),
  ];
  for (name, cb) in callbacks {
    let mut f = ptr::null_mut();
    // SAFETY: valid env; the data pointer outlives every call.
    unsafe {
      sys::napi_create_function(env.raw(), name.as_ptr().cast(), name.len() as isize, cb, data, &mut f);
      obj.set_named_property(name, Unknown::from_raw_unchecked(env.raw(), f))?;
    }
  }
  Ok(obj)
}
