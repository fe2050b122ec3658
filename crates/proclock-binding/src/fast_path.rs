//! The hot path as plain Node-API functions.
//!
//! A napi-rs class method pays for unwrapping its receiver and checking its class on every
//! call, many times what a bare Node-API call costs and more than the whole uncontended
//! acquire+release it would wrap (figures in `docs/benchmarks/analysis.md`). So each handle also gets two
//! functions created with `napi_create_function` whose callback data is the handle itself: a
//! call then costs one `napi_get_cb_info` plus the lock operation. The functions own a strong
//! reference to the handle, dropped by their finalizers.
//!
//! Shapes, each chosen because it measured cheaper: `tryAcquire()` takes no argument and returns
//! a boolean (the common call, no argument buffer, no type check); `tryAcquireDescribed(text)`
//! is the same with a description for this hold; `tryUncontended(text?)` is the first step of
//! `acquire`/`acquireSync` (takes a free lock, never probes liveness: the wait that follows
//! does); `release()` returns undefined. Whether the hold was taken over from a dead holder is
//! read separately (`ownerDied`), only when asked.
//! Errors are thrown as `Error`s with the core's `code`, exactly like the class methods.

use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use crate::Handle;
use napi::bindgen_prelude::*;
use napi::sys;

unsafe fn throw(env: sys::napi_env, e: &proclock_core::Error) -> sys::napi_value {
  let code = e.kind().code();
  let msg = e.message();
  let (mut c, mut m, mut err) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
  // SAFETY: valid env on the JS thread; strings are passed with explicit lengths.
  unsafe {
    sys::napi_create_string_utf8(env, code.as_ptr().cast(), code.len() as isize, &mut c);
    sys::napi_create_string_utf8(env, msg.as_ptr().cast(), msg.len() as isize, &mut m);
    sys::napi_create_error(env, c, m, &mut err);
    sys::napi_throw(env, err);
  }
  ptr::null_mut()
}

/// The handle behind a call.
unsafe fn handle_of(env: sys::napi_env, info: sys::napi_callback_info) -> &'static Handle {
  let mut data = ptr::null_mut();
  // SAFETY: data is the Arc<Handle> pointer set at creation, kept alive by the function object
  // for as long as it can be called.
  unsafe {
    sys::napi_get_cb_info(env, info, ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), &mut data);
    &*(data as *const Handle)
  }
}

/// The handle behind a call, and its first argument if one was passed.
unsafe fn call_info(env: sys::napi_env, info: sys::napi_callback_info) -> (&'static Handle, Option<sys::napi_value>) {
  let mut argc = 1usize;
  let mut argv = [ptr::null_mut(); 1];
  let mut data = ptr::null_mut();
  // SAFETY: argv has room for argc values; data as in `handle_of`.
  unsafe {
    sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data);
    (&*(data as *const Handle), (argc >= 1).then_some(argv[0]))
  }
}

unsafe fn boolean(env: sys::napi_env, value: bool) -> sys::napi_value {
  let mut out = ptr::null_mut();
  // SAFETY: valid env.
  unsafe { sys::napi_get_boolean(env, value, &mut out) };
  out
}

/// An optional string argument (`undefined` = none).
unsafe fn optional_string(env: sys::napi_env, value: Option<sys::napi_value>) -> std::result::Result<Option<String>, proclock_core::Error> {
  let Some(value) = value else { return Ok(None) };
  let mut kind = 0;
  // SAFETY: valid env and value.
  unsafe { sys::napi_typeof(env, value, &mut kind) };
  if kind == sys::ValueType::napi_undefined {
    return Ok(None);
  }
  let bad = || proclock_core::Error::new(proclock_core::ErrorKind::InvalidArgument, "description must be a string");
  if kind != sys::ValueType::napi_string {
    return Err(bad());
  }
  let mut len = 0usize;
  // SAFETY: first call measures, second copies into a buffer of len + 1 bytes.
  unsafe {
    sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut len);
    let mut buf = vec![0u8; len + 1];
    sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), len + 1, &mut len);
    buf.truncate(len);
    String::from_utf8(buf).map(Some).map_err(|_| bad())
  }
}

unsafe extern "C" fn try_acquire(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: called by Node-API on the JS thread with a valid env and info.
  unsafe {
    match handle_of(env, info).try_acquire(None) {
      Ok(acquired) => boolean(env, acquired),
      Err(e) => throw(env, &e),
    }
  }
}

/// The shared body of the calls that take an optional description.
unsafe fn with_description(
  env: sys::napi_env,
  info: sys::napi_callback_info,
  call: impl FnOnce(&Handle, Option<&str>) -> proclock_core::Result<bool>,
) -> sys::napi_value {
  // SAFETY: called by Node-API on the JS thread with a valid env and info.
  unsafe {
    let (handle, arg) = call_info(env, info);
    let description = match optional_string(env, arg) {
      Ok(d) => d,
      Err(e) => return throw(env, &e),
    };
    match call(handle, description.as_deref()) {
      Ok(acquired) => boolean(env, acquired),
      Err(e) => throw(env, &e),
    }
  }
}

unsafe extern "C" fn try_acquire_described(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: as above.
  unsafe { with_description(env, info, |h, d| h.try_acquire(d)) }
}

unsafe extern "C" fn try_uncontended(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: as above.
  unsafe { with_description(env, info, |h, d| h.try_acquire_uncontended(d)) }
}

unsafe extern "C" fn release(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: as above.
  unsafe {
    match handle_of(env, info).release() {
      Ok(()) => ptr::null_mut(),
      Err(e) => throw(env, &e),
    }
  }
}

unsafe extern "C" fn drop_handle(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  // SAFETY: `data` is the Arc::into_raw made for exactly this function object.
  drop(unsafe { Arc::from_raw(data as *const Handle) });
}

unsafe fn bound(env: &Env, name: &str, cb: sys::napi_callback, handle: &Arc<Handle>) -> Result<sys::napi_value> {
  let data = Arc::into_raw(handle.clone()) as *mut c_void;
  let mut f = ptr::null_mut();
  // SAFETY: valid env; on failure the Arc is reclaimed so nothing leaks.
  unsafe {
    let status = sys::napi_create_function(env.raw(), name.as_ptr().cast(), name.len() as isize, cb, data, &mut f);
    if status != sys::Status::napi_ok {
      drop(Arc::from_raw(data as *const Handle));
      return Err(Error::from_reason(format!("napi_create_function failed ({status})")));
    }
    let status = sys::napi_add_finalizer(env.raw(), f, data, Some(drop_handle), ptr::null_mut(), ptr::null_mut());
    if status != sys::Status::napi_ok {
      drop(Arc::from_raw(data as *const Handle));
      return Err(Error::from_reason(format!("napi_add_finalizer failed ({status})")));
    }
  }
  Ok(f)
}

/// `{ tryAcquire, tryAcquireDescribed, tryUncontended, release }` bound to `handle`.
pub fn functions<'env>(env: &'env Env, handle: &Arc<Handle>) -> Result<Object<'env>> {
  let mut obj = Object::new(env)?;
  let callbacks: [(&str, sys::napi_callback); 4] = [
    ("tryAcquire", Some(try_acquire)),
    ("tryAcquireDescribed", Some(try_acquire_described)),
    ("tryUncontended", Some(try_uncontended)),
    ("release", Some(release)),
  ];
  for (name, cb) in callbacks {
    // SAFETY: each callback matches napi_callback and reads its data as an Arc<Handle>.
    unsafe {
      let f = bound(env, name, cb, handle)?;
      obj.set_named_property(name, Unknown::from_raw_unchecked(env.raw(), f))?;
    }
  }
  Ok(obj)
}
