//! A lock directory deleted while handles use it: the core marks every handle of it LOST
//! (holding, waiting or idle), keeps the raw hold until close, and opens the path afresh for
//! the next handle, whose tokens are larger. Linux (inotify); the JS suite covers the same
//! across processes (`__test__/lost.spec.mts`).
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use proclock_core::{AnyLock, Backend, ErrorKind, Handle};

fn scratch(tag: &str) -> std::path::PathBuf {
  let p = std::env::temp_dir().join(format!("proclock-lost-{tag}-{}", std::process::id()));
  let _ = std::fs::remove_dir_all(&p);
  p
}

fn open(backend: Backend, dir: &std::path::Path) -> Arc<Handle<AnyLock>> {
  Handle::shared(AnyLock::open(backend, "gone", Some(dir)).unwrap(), false, String::new()).unwrap()
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
  let start = Instant::now();
  while !f() {
    assert!(start.elapsed() < Duration::from_secs(5), "{what} not within 5 s");
    std::thread::sleep(Duration::from_millis(1));
  }
}

#[test]
fn a_deleted_directory_loses_every_handle_and_is_opened_afresh() {
  for backend in [Backend::Shm, Backend::File] {
    let dir = scratch(backend.name());
    let holder = open(backend, &dir);
    let idle = open(backend, &dir);
    let waiter = open(backend, &dir);
    assert!(holder.try_acquire(None).unwrap());
    let token = holder.token().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    waiter
      .acquire_async(Some(Duration::from_secs(30)), None, move |r| tx.send(r.map_err(|e| e.kind())).unwrap())
      .unwrap();
    let told = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t = told.clone();
    holder.on_lost(Box::new(move || t.store(true, std::sync::atomic::Ordering::SeqCst)));

    std::fs::remove_dir_all(&dir).unwrap();
    wait_until("the holder's notice", || told.load(std::sync::atomic::Ordering::SeqCst));
    // Every handle was marked before anyone was told.
    assert!(idle.is_lost() && waiter.is_lost(), "{backend:?}");
    assert!(!holder.held());
    assert_eq!(holder.lost_token(), Some(token));
    assert_eq!(holder.release().unwrap_err().kind(), ErrorKind::Lost);
    assert_eq!(idle.try_acquire(None).unwrap_err().kind(), ErrorKind::Lost);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Err(ErrorKind::Lost));
    holder.close();
    holder.close();
    assert_eq!(holder.lost_token(), None, "closed");

    let fresh = open(backend, &dir);
    assert!(!fresh.is_lost());
    assert!(fresh.try_acquire(None).unwrap());
    assert!(fresh.token().unwrap() > token, "{backend:?}: tokens keep growing across a re-created directory");
    fresh.release().unwrap();
    // A handle opened after the loss is never marked by it.
    std::thread::sleep(Duration::from_millis(20));
    assert!(!fresh.is_lost());
    let _ = std::fs::remove_dir_all(&dir);
  }
}
