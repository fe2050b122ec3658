//! The benchmark's floor: the least a cross-process lock in shared memory can do. One 32-bit
//! word in a shared file mapping, Drepper's three-state futex mutex (0 free, 1 locked, 2 locked
//! with waiters), no owner record, no fencing token, no crash recovery (a holder that dies
//! wedges it forever). It is called exactly like proclock's hot path (a Node-API function whose
//! callback data is the lock), so a ratio against it measures what proclock does on top.
//!
//! Linux only (it is the futex the floor is about); elsewhere the crate is empty.
#![cfg(target_os = "linux")]

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering::*};

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
  // SAFETY: a valid aligned word in a shared mapping; no timeout.
  unsafe { libc::syscall(libc::SYS_futex, word as *const AtomicU32, op, val, ptr::null::<libc::timespec>()) };
}

fn lock(w: &AtomicU32) {
  if w.compare_exchange(0, 1, Acquire, Relaxed).is_ok() {
    return;
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

unsafe fn word(env: sys::napi_env, info: sys::napi_callback_info) -> &'static AtomicU32 {
  let mut data = ptr::null_mut();
  // SAFETY: data is the leaked mapping pointer given at creation.
  unsafe {
    sys::napi_get_cb_info(env, info, ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), &mut data);
    &*(data as *const AtomicU32)
  }
}

unsafe extern "C" fn try_lock_cb(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  let mut out = ptr::null_mut();
  // SAFETY: called by Node-API on the JS thread.
  unsafe {
    let ok = word(env, info).compare_exchange(0, 1, Acquire, Relaxed).is_ok();
    sys::napi_get_boolean(env, ok, &mut out);
  }
  out
}

unsafe extern "C" fn lock_cb(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: as above.
  lock(unsafe { word(env, info) });
  ptr::null_mut()
}

unsafe extern "C" fn unlock_cb(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: as above.
  unlock(unsafe { word(env, info) });
  ptr::null_mut()
}

/// `{ tryLock, lock, unlock }` on the first word of the shared file `path` (created if needed).
#[napi]
pub fn open_bare_lock<'env>(env: &'env Env, path: String) -> Result<Object<'env>> {
  let file = std::fs::OpenOptions::new()
    .read(true)
    .write(true)
    .create(true)
    .truncate(false)
    .open(&path)?;
  file.set_len(4096)?;
  let map = memmap2::MmapOptions::new().len(4096).map_raw(&file)?;
  let data = map.as_mut_ptr() as *mut c_void;
  std::mem::forget(map); // the floor never unmaps: lives for the process
  let mut obj = Object::new(env)?;
  let callbacks: [(&str, sys::napi_callback); 3] = [("tryLock", Some(try_lock_cb)), ("lock", Some(lock_cb)), ("unlock", Some(unlock_cb))];
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
