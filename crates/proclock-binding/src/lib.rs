//! The Node-API face of `proclock-core`. This crate only translates: JS values to Rust values,
//! core errors to JS errors with a stable `code`, completion on a waiter thread to a promise
//! settled on the JS thread (napi's deferred, which is a threadsafe function underneath), and
//! the environment's teardown to `Handle::abandon`. Every lock rule lives in the core.

#![deny(clippy::all)]

mod fast_path;
mod inspect;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use proclock_core::{AnyLock, Backend, Handle as CoreHandle, Mode, RwHandle};

/// The handle type this binding exposes (either backend).
pub(crate) type Handle = CoreHandle<AnyLock>;

/// Ids for the environment registry below, unique in this process.
fn next_id() -> u64 {
  static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
  NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The `code` a JS error gets: the core's stable code for its error kind.
pub struct Code(&'static str);

impl AsRef<str> for Code {
  fn as_ref(&self) -> &str {
    self.0
  }
}

fn js_err(e: proclock_core::Error) -> napi::Error<Code> {
  napi::Error::new(Code(e.kind().code()), e.message().to_owned())
}

/// A failure of a Node-API call itself (not of a lock operation), with the code of any other
/// operating-system failure.
fn napi_failure(e: napi::Error) -> napi::Error<Code> {
  napi::Error::new(Code("ELOCKIO"), e.reason.clone())
}

/// Milliseconds from JS (`Infinity` = no limit) to an optional duration.
fn timeout(ms: f64) -> napi::Result<Option<Duration>, Code> {
  if ms.is_nan() || ms < 0.0 {
    return Err(napi::Error::new(
      Code("ERR_OUT_OF_RANGE"),
      format!("timeout must be >= 0 and not NaN, got {ms}"),
    ));
  }
  Ok((ms.is_finite() && ms < 1e15).then(|| Duration::from_secs_f64(ms / 1000.0)))
}

/// What a completed acquisition reports to the facade: 1 acquired, 2 acquired from a holder
/// that died.
fn acquired_code(handle: &Handle) -> u32 {
  if handle.owner_died() {
    2
  } else {
    1
  }
}

// Handles created in this JS environment (main thread or one worker), so that the
// environment's teardown can abandon what they hold. One environment per thread. A handle
// whose JS object was collected while it held the lock is kept here, strongly: a hold ends by
// release, close, or the death of its process or worker, never by garbage collection.
enum Entry {
  Live(std::sync::Weak<Handle>),
  Orphan(Arc<Handle>),
}

thread_local! {
  static ENV_HANDLES: RefCell<Option<HashMap<u64, Entry>>> = const { RefCell::new(None) };
}

fn register(env: &Env, id: u64, handle: &Arc<Handle>) -> napi::Result<()> {
  let first = ENV_HANDLES.with(|cell| {
    let mut map = cell.borrow_mut();
    let first = map.is_none();
    map.get_or_insert_with(HashMap::new).insert(id, Entry::Live(Arc::downgrade(handle)));
    first
  });
  if first {
    env.add_env_cleanup_hook((), |_| {
      let handles = ENV_HANDLES.with(|cell| cell.borrow_mut().take()).unwrap_or_default();
      for entry in handles.into_values() {
        let handle = match entry {
          Entry::Live(weak) => weak.upgrade(),
          Entry::Orphan(strong) => Some(strong),
        };
        if let Some(handle) = handle {
          handle.abandon();
        }
      }
    })?;
  }
  Ok(())
}

/// The JS object of handle `id` is gone: forget it, or keep it if it still holds the lock.
fn unregister(id: u64, handle: &Arc<Handle>) {
  let _ = ENV_HANDLES.try_with(|cell| {
    if let Some(map) = cell.borrow_mut().as_mut() {
      if handle.held() {
        map.insert(id, Entry::Orphan(handle.clone()));
      } else {
        map.remove(&id);
      }
    }
  });
}

/// Holder of a lock as seen from JS.
#[napi(object)]
pub struct NativeOwner {
  pub pid: u32,
  pub uuid: String,
  pub description: String,
  pub since: f64,
  pub token: BigInt,
  pub alive: bool,
}

impl From<proclock_core::OwnerInfo> for NativeOwner {
  fn from(o: proclock_core::OwnerInfo) -> Self {
    NativeOwner {
      pid: o.pid,
      uuid: o.uuid,
      description: o.description,
      since: o.since_ms as f64,
      token: BigInt::from(o.token),
      alive: o.alive,
    }
  }
}

/// The names of the core's crash points, in the test suite's second build only (feature
/// `crash-points`), so the crash tests can check that they visit every one.
#[cfg(feature = "crash-points")]
#[napi]
pub fn crash_steps() -> Vec<String> {
  proclock_core::crash_points::Step::ALL.iter().map(|s| s.name().to_owned()).collect()
}

/// Windows: every process started from now on dies with this one (the core's
/// `child_lifetime`); false elsewhere, where nothing is done. For `proclock run` only.
#[napi]
pub fn kill_children_on_exit() -> napi::Result<bool, Code> {
  proclock_core::child_lifetime::kill_children_on_exit().map_err(js_err)
}

/// Why an asynchronous acquisition did not succeed.
#[napi(object)]
pub struct NativeFailure {
  pub code: String,
  pub message: String,
}

/// One handle on one named lock.
#[napi]
pub struct NativeLock {
  handle: Arc<Handle>,
  id: u64,
}

#[napi]
impl NativeLock {
  #[napi(constructor)]
  pub fn new(
    env: Env,
    name: String,
    backend: String,
    dir: Option<String>,
    reentrant: bool,
    description: Option<String>,
  ) -> napi::Result<Self, Code> {
    let backend = Backend::parse(&backend).map_err(js_err)?;
    let raw = AnyLock::open(backend, &name, dir.as_deref().map(Path::new)).map_err(js_err)?;
    let handle = Handle::shared(raw, reentrant, description.unwrap_or_default()).map_err(js_err)?;
    let id = next_id();
    register(&env, id, &handle).map_err(napi_failure)?;
    Ok(NativeLock { handle, id })
  }

  #[napi(getter)]
  pub fn uuid(&self) -> String {
    self.handle.uuid()
  }

  #[napi(getter)]
  pub fn held(&self) -> bool {
    self.handle.held()
  }

  #[napi(getter)]
  pub fn owner_died(&self) -> bool {
    self.handle.owner_died()
  }

  /// The token of the hold that was lost (`lock.lost`), or null: not lost, or not holding when lost.
  #[napi]
  pub fn lost_token(&self) -> Option<BigInt> {
    self.handle.lost_token().map(BigInt::from)
  }

  /// The message of the handle's `ELOCKLOST` error, or null if it was not lost.
  #[napi]
  pub fn lost_message(&self) -> Option<String> {
    self.handle.lost_message()
  }

  /// Call `callback` once, on the JS thread, when this handle is lost. Created only when the
  /// user first asks (`lock.lost`), so nothing of it is on the hot path.
  #[napi]
  pub fn watch_lost(&self, callback: Function<(), ()>) -> napi::Result<(), Code> {
    let notify = lost_notifier(callback)?;
    self.handle.on_lost(notify);
    Ok(())
  }

  /// `{ tryAcquire, tryAcquireDescribed, tryUncontended, release }`: the hot path as plain
  /// Node-API functions bound to this handle (see `fast_path.rs`).
  #[napi(
    ts_return_type = "{ tryAcquire(): boolean; tryAcquireDescribed(description: string): boolean; tryUncontended(description?: string): boolean; release(): void }"
  )]
  pub fn fast_path<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
    fast_path::functions(env, &self.handle)
  }

  #[napi]
  pub fn token(&self) -> Option<BigInt> {
    self.handle.token().map(BigInt::from)
  }

  /// Wait on this thread; returns 1 (acquired) or 2 (acquired from a holder that died), or
  /// throws (`ELOCKTIMEOUT`...).
  #[napi]
  pub fn acquire_sync(&self, timeout_ms: f64, description: Option<String>) -> napi::Result<u32, Code> {
    self
      .handle
      .acquire_blocking(timeout(timeout_ms)?, description.as_deref())
      .map_err(js_err)?;
    Ok(acquired_code(&self.handle))
  }

  /// Wait on a proclock waiter thread; resolves with 1 or 2, or with a failure `{code, message}`.
  #[napi(ts_return_type = "Promise<number | NativeFailure>")]
  pub fn acquire_async<'env>(&self, env: &'env Env, timeout_ms: f64, description: Option<String>) -> napi::Result<Object<'env>, Code> {
    acquire_async(env, &self.handle, timeout_ms, description)
  }

  /// Cancel a pending `acquireAsync` (it resolves with `ELOCKCANCELLED`).
  #[napi]
  pub fn cancel(&self) {
    self.handle.cancel();
  }

  /// Give back a hold the caller never got (an abort that raced the grant).
  #[napi]
  pub fn give_back(&self) -> napi::Result<(), Code> {
    self.handle.give_back().map_err(js_err)
  }

  #[napi]
  pub fn is_locked(&self) -> napi::Result<bool, Code> {
    self.handle.is_locked().map_err(js_err)
  }

  #[napi]
  pub fn owner(&self) -> napi::Result<Option<NativeOwner>, Code> {
    Ok(self.handle.owner().map_err(js_err)?.map(NativeOwner::from))
  }

  /// The descriptor whose lifetime keeps this handle's current hold (the core's
  /// `hold_descriptor`), or null when it holds nothing or on Windows.
  #[napi]
  pub fn hold_descriptor(&self) -> Option<i32> {
    hold_descriptor(&self.handle)
  }

  #[napi]
  pub fn close(&self) {
    self.handle.close();
  }
}

fn hold_descriptor(handle: &Handle) -> Option<i32> {
  #[cfg(unix)]
  {
    handle.hold_descriptor()
  }
  #[cfg(not(unix))]
  {
    let _ = handle;
    None
  }
}

impl Drop for NativeLock {
  fn drop(&mut self) {
    unregister(self.id, &self.handle);
  }
}

/// A callback for `Handle::on_lost` that calls `callback` on the JS thread. The threadsafe
/// function is weak (unref'd): waiting for a loss never keeps the process alive.
fn lost_notifier(callback: Function<(), ()>) -> napi::Result<proclock_core::handle::OnLost, Code> {
  let tsfn = callback
    .build_threadsafe_function::<()>()
    .weak::<true>()
    .callee_handled::<false>()
    .build_callback(|_| Ok(()))
    .map_err(napi_failure)?;
  Ok(Box::new(move || {
    tsfn.call((), napi::threadsafe_function::ThreadsafeFunctionCallMode::NonBlocking);
  }))
}

/// Start a wait on a proclock waiter thread; the promise resolves with 1 or 2 (see
/// `acquired_code`), or with a failure `{code, message}` (never rejects: the facade makes the
/// error objects).
fn acquire_async<'env>(
  env: &'env Env,
  handle: &Arc<Handle>,
  timeout_ms: f64,
  description: Option<String>,
) -> napi::Result<Object<'env>, Code> {
  let limit = timeout(timeout_ms)?;
  let (deferred, promise) = env.create_deferred().map_err(napi_failure)?;
  let done_handle = handle.clone();
  handle
    .acquire_async(limit, description, move |outcome| {
      let value = match outcome {
        Ok(()) => Either::A(acquired_code(&done_handle)),
        Err(e) => Either::B(NativeFailure {
          code: e.kind().code().to_owned(),
          message: e.message().to_owned(),
        }),
      };
      deferred.resolve(move |_| Ok(value));
    })
    .map_err(js_err)?;
  Ok(promise)
}

/// One handle on a reader-writer lock (file backend): `shared` picks the read half.
#[napi]
pub struct NativeRwLock {
  rw: RwHandle<AnyLock>,
  ids: [u64; 2],
}

fn mode(shared: bool) -> Mode {
  if shared {
    Mode::Shared
  } else {
    Mode::Exclusive
  }
}

#[napi]
impl NativeRwLock {
  #[napi(constructor)]
  pub fn new(env: Env, name: String, dir: Option<String>, description: Option<String>) -> napi::Result<Self, Code> {
    let rw = RwHandle::open(&name, dir.as_deref().map(Path::new), description.unwrap_or_default()).map_err(js_err)?;
    let ids = [next_id(), next_id()];
    for (id, half) in ids.iter().zip(rw.halves()) {
      register(&env, *id, half).map_err(napi_failure)?;
    }
    Ok(NativeRwLock { rw, ids })
  }

  /// 0: holds nothing; 1: holds the read lock; 2: holds the write lock.
  #[napi(getter)]
  pub fn held(&self) -> u32 {
    match self.rw.held() {
      None => 0,
      Some(Mode::Shared) => 1,
      Some(Mode::Exclusive) => 2,
    }
  }

  #[napi(getter)]
  pub fn uuid(&self) -> String {
    self.rw.halves()[1].uuid()
  }

  /// The token of the current hold (0 for a read hold: readers have no token), or null.
  #[napi]
  pub fn token(&self) -> Option<BigInt> {
    let [read, write] = self.rw.halves();
    write.token().or_else(|| read.token()).map(BigInt::from)
  }

  /// The token of the hold that was lost (0 for a read hold), or null.
  #[napi]
  pub fn lost_token(&self) -> Option<BigInt> {
    self.rw.lost_token().map(BigInt::from)
  }

  /// The message of the handle's `ELOCKLOST` error, or null if it was not lost.
  #[napi]
  pub fn lost_message(&self) -> Option<String> {
    self.rw.lost_message()
  }

  /// Call `callback` once, on the JS thread, when this handle is lost (both halves are lost
  /// together; the write half, which every loss of the file reaches, carries the callback).
  #[napi]
  pub fn watch_lost(&self, callback: Function<(), ()>) -> napi::Result<(), Code> {
    let notify = lost_notifier(callback)?;
    self.rw.halves()[1].on_lost(notify);
    Ok(())
  }

  #[napi]
  pub fn try_acquire(&self, shared: bool, description: Option<String>) -> napi::Result<bool, Code> {
    self
      .rw
      .half(mode(shared))
      .and_then(|h| h.try_acquire(description.as_deref()))
      .map_err(js_err)
  }

  #[napi]
  pub fn acquire_sync(&self, shared: bool, timeout_ms: f64, description: Option<String>) -> napi::Result<u32, Code> {
    let limit = timeout(timeout_ms)?;
    let half = self.rw.half(mode(shared)).map_err(js_err)?;
    half.acquire_blocking(limit, description.as_deref()).map_err(js_err)?;
    Ok(acquired_code(half))
  }

  #[napi(ts_return_type = "Promise<number | NativeFailure>")]
  pub fn acquire_async<'env>(
    &self,
    env: &'env Env,
    shared: bool,
    timeout_ms: f64,
    description: Option<String>,
  ) -> napi::Result<Object<'env>, Code> {
    acquire_async(env, self.rw.half(mode(shared)).map_err(js_err)?, timeout_ms, description)
  }

  #[napi]
  pub fn release(&self) -> napi::Result<(), Code> {
    self.rw.release().map_err(js_err)
  }

  #[napi]
  pub fn cancel(&self) {
    self.rw.cancel();
  }

  /// Give back a hold the caller never got (an abort that raced the grant).
  #[napi]
  pub fn give_back(&self) -> napi::Result<(), Code> {
    self.rw.give_back().map_err(js_err)
  }

  #[napi]
  pub fn is_locked(&self) -> napi::Result<bool, Code> {
    self.rw.halves()[1].is_locked().map_err(js_err)
  }

  #[napi]
  pub fn owner(&self) -> napi::Result<Option<NativeOwner>, Code> {
    Ok(self.rw.halves()[1].owner().map_err(js_err)?.map(NativeOwner::from))
  }

  /// As `NativeLock::holdDescriptor`, for whichever half holds.
  #[napi]
  pub fn hold_descriptor(&self) -> Option<i32> {
    self.rw.halves().into_iter().find_map(|h| hold_descriptor(h))
  }

  #[napi]
  pub fn close(&self) {
    self.rw.close();
  }
}

impl Drop for NativeRwLock {
  fn drop(&mut self) {
    for (id, half) in self.ids.iter().zip(self.rw.halves()) {
      unregister(*id, half);
    }
  }
}
