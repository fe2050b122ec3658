//! Waking waiters when a holder's process exits, without polling anything.
//!
//! A waiter about to sleep on a lock held by another process subscribes to that process's exit.
//! One thread per process (started on first use) sleeps in `epoll_wait` on a pidfd per watched
//! process (`pidfd_open`, Linux 5.3+); a pidfd becomes readable when its process has exited, by
//! any cause, after the kernel has closed its files (so its liveness lock is already released).
//! The thread then bumps and wakes the wake counter of every lock that waiters watch that
//! process for. The waiters decide through the liveness check (`shm/liveness.rs`): the pidfd is
//! only an alarm clock, never the verdict.
//!
//! A watched process keeps its pidfd in the epoll set until it dies, even when no waiter is
//! subscribed at the moment: the next wait on the same holder then costs a hash lookup, not
//! three system calls and a `/proc` read. The set is bounded by the live processes we waited on.
//!
//! Pid reuse: between reading a holder's pid from shared memory and `pidfd_open`, the holder may
//! die and its pid be reused. So after opening, the pid's start identity is compared with the
//! one the holder registered; if they differ the holder is already gone, no watch is made, and
//! the waiter probes at once instead.
//!
//! Where there is no pidfd (other systems, old kernels, a holder in another pid namespace) no
//! watch is made and waiters fall back to re-checking liveness every `PROBE_INTERVAL`.

use crate::sync::AtomicU32;

/// A subscription; dropping it unsubscribes. The counter it names must stay mapped while it
/// lives.
pub struct Watch {
  #[cfg(target_os = "linux")]
  id: u64,
  #[cfg(target_os = "linux")]
  pid: u32,
  /// Set (before the counter is bumped) once the watched process has exited, so a woken
  /// waiter can tell this wake-up from a release's and probe only after this one.
  #[cfg(target_os = "linux")]
  fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watch {
  /// Has the watched process exited (and the counter been bumped for it)?
  pub fn fired(&self) -> bool {
    #[cfg(target_os = "linux")]
    {
      self.fired.load(std::sync::atomic::Ordering::Acquire)
    }
    #[cfg(not(target_os = "linux"))]
    {
      true
    }
  }
}

/// What [`watch`] could do.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub enum Outcome {
  /// The counter will be bumped when the process exits.
  Watching(Watch),
  /// The process has already exited (or its pid now belongs to another process).
  Gone,
  /// No watch is possible here; the caller must re-check on its own.
  Unavailable,
}

/// Have `counter` bumped and woken when process `pid` (started with `identity`) exits.
pub fn watch(pid: u32, identity: u64, counter: &AtomicU32) -> Outcome {
  imp::watch(pid, identity, counter)
}

#[cfg(target_os = "linux")]
mod imp {
  use std::collections::HashMap;
  use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
  use std::sync::atomic::{AtomicBool, Ordering};
  use std::sync::{Arc, Mutex, OnceLock};

  use super::*;
  use crate::process_info;
  use crate::shm::os_wait;

  struct Watched {
    pidfd: OwnedFd,
    /// (subscription id, address of a wake counter in a shared mapping, its fired flag)
    subscribers: Vec<(u64, usize, Arc<AtomicBool>)>,
  }

  struct Registry {
    /// The epoll set and the thread sleeping on it, once both could be had. Until then (no
    /// descriptor, or no thread could be started: `RLIMIT_NPROC`, a container's `pids.max`)
    /// every watch is `Unavailable` and waiters re-check on their own timer, which is slower to
    /// notice a death but never wrong; the next watch tries again.
    epoll: Option<OwnedFd>,
    by_pid: HashMap<u32, Watched>,
    next_id: u64,
  }

  fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
      Mutex::new(Registry {
        epoll: None,
        by_pid: HashMap::new(),
        next_id: 1,
      })
    })
  }

  /// Make the epoll set and start its thread, if not done yet. False if either failed.
  fn start(reg: &mut Registry) -> bool {
    if reg.epoll.is_some() {
      return true;
    }
    // SAFETY: plain syscall; the fd is owned right below.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
      return false;
    }
    // SAFETY: fresh descriptor we own.
    let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = epoll.as_raw_fd();
    let spawned = std::thread::Builder::new()
      .name("proclock-death-watch".into())
      .stack_size(256 * 1024)
      .spawn(move || serve(raw));
    if spawned.is_err() {
      return false; // `epoll` is closed here; no thread uses it
    }
    reg.epoll = Some(epoll);
    true
  }

  fn lock() -> std::sync::MutexGuard<'static, Registry> {
    registry().lock().unwrap_or_else(|p| p.into_inner())
  }

  fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall (pidfds are close-on-exec); the fd is owned right below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
      return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
  }

  pub fn watch(pid: u32, identity: u64, counter: &AtomicU32) -> Outcome {
    if pid == 0 || identity == 0 {
      return Outcome::Unavailable;
    }
    let mut reg = lock();
    if !start(&mut reg) {
      return Outcome::Unavailable;
    }
    if !reg.by_pid.contains_key(&pid) {
      let pidfd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Outcome::Gone,
        Err(_) => return Outcome::Unavailable,
      };
      match process_info::is_running(pid, identity) {
        Some(true) => {}
        // Proven: exited, or the pid now names another process.
        Some(false) => return Outcome::Gone,
        // Cannot tell (out of descriptors, ...): no alarm clock, and no "gone" either; the
        // waiter re-checks on its own timer.
        None => return Outcome::Unavailable,
      }
      let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: u64::from(pid),
      };
      let Some(epoll) = reg.epoll.as_ref().map(|e| e.as_raw_fd()) else {
        return Outcome::Unavailable;
      };
      // SAFETY: valid epoll and pidfd descriptors, valid event pointer.
      if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, pidfd.as_raw_fd(), &mut ev) } != 0 {
        return Outcome::Unavailable;
      }
      reg.by_pid.insert(
        pid,
        Watched {
          pidfd,
          subscribers: Vec::new(),
        },
      );
    }
    let id = reg.next_id;
    reg.next_id += 1;
    let Some(watched) = reg.by_pid.get_mut(&pid) else {
      return Outcome::Unavailable;
    };
    let fired = Arc::new(AtomicBool::new(false));
    watched.subscribers.push((id, counter as *const AtomicU32 as usize, fired.clone()));
    Outcome::Watching(Watch { id, pid, fired })
  }

  impl Drop for Watch {
    fn drop(&mut self) {
      let mut reg = lock();
      if let Some(w) = reg.by_pid.get_mut(&self.pid) {
        w.subscribers.retain(|(id, _, _)| *id != self.id);
      }
    }
  }

  /// `epoll` stays open for the life of the process once this thread runs (the registry keeps
  /// it and never drops it).
  fn serve(epoll: std::os::fd::RawFd) {
    let registry = registry();
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
    loop {
      // SAFETY: valid epoll descriptor (never closed) and event buffer.
      let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
      if n < 0 {
        continue; // EINTR
      }
      let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
      for ev in &events[..n as usize] {
        let pid = ev.u64 as u32;
        let Some(w) = reg.by_pid.remove(&pid) else { continue };
        // SAFETY: valid descriptors.
        unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, w.pidfd.as_raw_fd(), std::ptr::null_mut()) };
        for (_, addr, fired) in w.subscribers {
          // SAFETY: a subscriber's counter stays mapped until its Watch is dropped, and dropping
          // takes this same lock, which we hold.
          let counter = unsafe { &*(addr as *const AtomicU32) };
          // Marked before the bump (which releases it): a waiter that sees the bump sees this.
          fired.store(true, Ordering::Release);
          counter.fetch_add(1, Ordering::SeqCst);
          os_wait::wake(counter, i32::MAX);
        }
      }
    }
  }
}

#[cfg(not(target_os = "linux"))]
mod imp {
  use super::*;

  pub fn watch(_pid: u32, _identity: u64, _counter: &AtomicU32) -> Outcome {
    Outcome::Unavailable
  }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
  use super::*;
  use std::sync::atomic::Ordering;
  use std::time::{Duration, Instant};

  #[test]
  fn a_dead_process_bumps_the_counter() {
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    let identity = crate::process_info::start_identity(pid).unwrap();
    let counter = Box::new(AtomicU32::new(0));
    assert!(
      matches!(watch(pid, identity ^ 0x10, &counter), Outcome::Gone),
      "a wrong identity is gone"
    );
    let Outcome::Watching(w) = watch(pid, identity, &counter) else {
      panic!("no watch")
    };
    assert_eq!(counter.load(Ordering::SeqCst), 0);
    assert!(!w.fired(), "not fired while the process runs");
    child.kill().unwrap();
    let started = Instant::now();
    while counter.load(Ordering::SeqCst) == 0 {
      assert!(started.elapsed() < Duration::from_secs(5), "no wake within 5 s");
      crate::shm::os_wait::wait(&counter, 0, Some(Duration::from_millis(100)));
    }
    assert!(w.fired(), "fired by the time the counter moved");
    drop(w);
    child.wait().unwrap();
    assert!(matches!(watch(pid, identity, &counter), Outcome::Gone), "a reaped process is gone");
  }
}
