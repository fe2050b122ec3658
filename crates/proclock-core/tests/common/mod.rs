//! Helpers shared by the fuzz properties (`garbage_*.rs`, `hostile_lock_names.rs`): proptest
//! settings, private scratch directories, private files, and a watchdog that turns a hang into
//! a test failure.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use proptest::test_runner::Config;

/// `default_cases` cases, or `PROPTEST_CASES` when set (for longer runs). Failures are not
/// persisted to files: every failure a property found is kept as a named `#[test]` instead.
/// Shrinking is bounded in steps and in time, because end-to-end cases are slow and a hang
/// costs a whole `CASE_LIMIT` per step.
pub fn config(default_cases: u32) -> Config {
  let cases = std::env::var("PROPTEST_CASES")
    .ok()
    .and_then(|v| v.parse().ok())
    .unwrap_or(default_cases);
  Config {
    cases,
    failure_persistence: None,
    max_shrink_iters: 256,
    max_shrink_time: 60_000,
    ..Config::default()
  }
}

/// A fresh private (0700) directory under the temp dir, removed on drop. A new one per case:
/// the library caches lock directories and shm spaces per path for the life of the process.
pub struct Scratch {
  path: PathBuf,
}

impl Scratch {
  pub fn new(tag: &str) -> Scratch {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("proclock-fuzz-{tag}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&path);
    fs::DirBuilder::new().mode(0o700).create(&path).unwrap();
    Scratch { path }
  }

  pub fn path(&self) -> &Path {
    &self.path
  }

  pub fn join(&self, name: &str) -> PathBuf {
    self.path.join(name)
  }
}

impl Drop for Scratch {
  fn drop(&mut self) {
    let _ = fs::remove_dir_all(&self.path);
  }
}

/// Create `path` with `bytes` as its contents, mode 0600 (the lock directory refuses anything
/// else), so that what is tested is the contents, not the permission checks.
pub fn write_private(path: &Path, bytes: &[u8]) {
  let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).unwrap();
  f.write_all(bytes).unwrap();
}

/// Run `f` on a thread of its own and fail if it takes longer than `limit`: a hang becomes a
/// failure (the stuck thread is left behind) instead of a test run that never ends. A panic in
/// `f` is passed on as it is, so proptest sees it and shrinks the input.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
  let (tx, rx) = mpsc::channel();
  let worker = std::thread::Builder::new()
    .name("fuzz-case".into())
    .spawn(move || {
      let _ = tx.send(f());
    })
    .unwrap();
  match rx.recv_timeout(limit) {
    Ok(v) => {
      let _ = worker.join();
      v
    }
    Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
      Err(panic) => std::panic::resume_unwind(panic),
      Ok(()) => unreachable!("the worker sends before it ends"),
    },
    Err(mpsc::RecvTimeoutError::Timeout) => panic!("a case took more than {limit:?}: proclock hung on this input"),
  }
}

/// How long one end-to-end case may take before it counts as a hang. Generous: the machine is
/// shared and loaded; a healthy case takes milliseconds.
pub const CASE_LIMIT: Duration = Duration::from_secs(20);

/// Flip bits of `bytes` at `(position, xor)` pairs; positions wrap around the length and a zero
/// xor is made nonzero, so every mutation really changes a byte (unless two cancel out).
pub fn mutate(bytes: &mut [u8], mutations: &[(usize, u8)], within_len: usize) {
  let n = within_len.min(bytes.len());
  if n == 0 {
    return;
  }
  for &(at, x) in mutations {
    bytes[at % n] ^= x.max(1);
  }
}

/// Bytes that print as one hex string in a failing case (not a column of numbers).
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "{} bytes: ", self.0.len())?;
    for b in &self.0 {
      write!(f, "{b:02x}")?;
    }
    Ok(())
  }
}

impl std::ops::Deref for Bytes {
  type Target = Vec<u8>;
  fn deref(&self) -> &Vec<u8> {
    &self.0
  }
}

/// `len` random bytes, printed as hex.
pub fn bytes(len: impl Into<proptest::collection::SizeRange>) -> impl proptest::strategy::Strategy<Value = Bytes> {
  use proptest::strategy::Strategy;
  proptest::collection::vec(proptest::arbitrary::any::<u8>(), len).prop_map(Bytes)
}
