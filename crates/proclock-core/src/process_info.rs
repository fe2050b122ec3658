//! Who a process is: its pid, and a start identity that tells it apart from a later process
//! that reuses the pid.
//!
//! The start identity is the fallback liveness check (the kernel-held liveness lock in
//! `shm/liveness.rs` is the primary one). It must never call a live process dead, and it must not
//! call a dead one alive merely because the pid was reused:
//! - Linux: field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), combined with
//!   16 bits of the boot id, because after a reboot the same pid can start at the same tick.
//!   `comm` (field 2) may contain spaces and `)`, so fields are counted after the *last* `)`.
//! - macOS: `proc_pidinfo(PROC_PIDTBSDINFO)` start time in microseconds since the epoch.
//! - Windows: `GetProcessTimes` creation time (100 ns units since 1601).
//!
//! Every answer is one of three: the process runs (with this identity), it is *proven* absent,
//! or it cannot be told. Only an answer that proves absence may count as "not running": no such
//! process (`ENOENT` from `/proc` confirmed by `kill(pid, 0)` failing with `ESRCH`; `ESRCH`
//! from `proc_pidinfo`; `ERROR_INVALID_PARAMETER` from `OpenProcess`), or an exited process
//! that its parent has not collected yet (a zombie). Anything else (`EMFILE`/`ENFILE` when this
//! process or the system is out of descriptors, `EACCES`, `ENOMEM`, `EIO`, a `/proc` that is
//! not mounted or hides other users' processes, a line that does not parse) is "cannot tell",
//! and callers must treat it as "may be running": a process out of descriptors once declared a
//! live holder dead this way and took its lock.

/// The pid of this process.
pub fn current_pid() -> u32 {
  std::process::id()
}

/// What can be told about a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
  /// A running process with this start identity (never 0).
  Running(u64),
  /// Proven: no such process, or it has exited (a zombie).
  Absent,
  /// The question could not be answered (out of descriptors, no permission, no `/proc`, ...).
  Unknown,
}

/// What can be told about process `pid` (see the top of this file).
pub fn presence(pid: u32) -> Presence {
  if pid == 0 {
    return Presence::Absent;
  }
  imp::presence(pid)
}

/// The start identity of `pid` if it is running and its identity can be read.
pub fn start_identity(pid: u32) -> Option<u64> {
  match presence(pid) {
    Presence::Running(id) => Some(id),
    _ => None,
  }
}

/// Is the process `pid` that started with `identity` still running? `Some(false)` only when that
/// is proven (absent, or the pid now belongs to a process with another identity); `None` when it
/// cannot be told.
pub fn is_running(pid: u32, identity: u64) -> Option<bool> {
  if identity == 0 {
    return None;
  }
  match presence(pid) {
    Presence::Running(id) => Some(id == identity),
    Presence::Absent => Some(false),
    Presence::Unknown => None,
  }
}

/// `kill(pid, 0)`: `ESRCH` proves there is no such process (in our pid namespace); success or
/// `EPERM` says one exists; anything else says nothing. Needs no descriptor.
#[cfg(unix)]
#[cfg_attr(target_os = "macos", allow(dead_code))]
fn exists_by_signal(pid: u32) -> Option<bool> {
  let Ok(pid) = libc::pid_t::try_from(pid) else { return Some(false) };
  // SAFETY: signal 0 performs permission and existence checks only.
  if unsafe { libc::kill(pid, 0) } == 0 {
    return Some(true);
  }
  match std::io::Error::last_os_error().raw_os_error() {
    Some(libc::ESRCH) => Some(false),
    Some(libc::EPERM) => Some(true),
    _ => None,
  }
}

#[cfg(target_os = "linux")]
mod imp {
  use super::Presence;
  use std::sync::OnceLock;

  fn boot_tag() -> u64 {
    static TAG: OnceLock<u64> = OnceLock::new();
    *TAG.get_or_init(|| {
      let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
      // FNV-1a folded to 16 bits: only needs to differ between boots, not resist anyone.
      let mut h: u64 = 0xcbf2_9ce4_8422_2325;
      for b in id.trim().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
      }
      (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) & 0xffff
    })
  }

  pub fn presence(pid: u32) -> Presence {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
      Ok(stat) => stat,
      // ENOENT/ESRCH from /proc alone proves nothing: /proc may not be mounted, may hide other
      // users' processes (`hidepid`), or may be another pid namespace's. The kernel's own
      // answer to `kill(pid, 0)` decides; a process that exists but cannot be read is unknown.
      Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {
        return match super::exists_by_signal(pid) {
          Some(false) => Presence::Absent,
          _ => Presence::Unknown,
        };
      }
      // EMFILE, ENFILE, EACCES, ENOMEM, EIO, ...: cannot tell.
      Err(_) => return Presence::Unknown,
    };
    parse_stat(&stat)
  }

  pub(super) fn parse_stat(stat: &str) -> Presence {
    let Some(close) = stat.rfind(')') else { return Presence::Unknown };
    let mut fields = stat[close + 1..].split_ascii_whitespace();
    // Field 3 is the state. A zombie (or a dead task) has exited: its files, and so its
    // liveness lock, are gone; only its parent has not collected it yet. It is not running.
    match fields.next() {
      Some("Z" | "X" | "x") => return Presence::Absent,
      Some(_) => {}
      None => return Presence::Unknown,
    }
    // Starttime is field 22, the 19th after the state.
    let Some(ticks) = fields.nth(22 - 4).and_then(|f| f.parse::<u64>().ok()) else {
      return Presence::Unknown;
    };
    // Bit 47 keeps the identity nonzero; ticks never reach 2^47 (that is 44 million years).
    Presence::Running((boot_tag() << 48) | (1 << 47) | (ticks & ((1 << 47) - 1)))
  }
}

#[cfg(target_os = "macos")]
mod imp {
  use super::Presence;

  pub fn presence(pid: u32) -> Presence {
    let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::zeroed();
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: the buffer is a zeroed proc_bsdinfo of exactly the size we pass.
    let n = unsafe { libc::proc_pidinfo(pid as libc::c_int, libc::PROC_PIDTBSDINFO, 0, info.as_mut_ptr().cast(), size) };
    if n != size {
      // Only ESRCH proves there is no such process; EPERM (another user's process under a
      // stricter policy), ENOMEM and the like say nothing.
      let errno = std::io::Error::last_os_error().raw_os_error();
      return if n <= 0 && errno == Some(libc::ESRCH) {
        Presence::Absent
      } else {
        Presence::Unknown
      };
    }
    // SAFETY: proc_pidinfo filled all `size` bytes.
    let info = unsafe { info.assume_init() };
    const SZOMB: u32 = 5; // <sys/proc.h>: exited, not yet collected by its parent
    if info.pbi_status == SZOMB {
      return Presence::Absent;
    }
    Presence::Running(info.pbi_start_tvsec.wrapping_mul(1_000_000).wrapping_add(info.pbi_start_tvusec) | 1)
  }
}

#[cfg(windows)]
mod imp {
  use super::Presence;
  use windows_sys::Win32::Foundation::{CloseHandle, GetLastError, ERROR_INVALID_PARAMETER, FILETIME};
  use windows_sys::Win32::System::Threading::{GetExitCodeProcess, GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION};

  const STILL_ACTIVE: u32 = 259;

  pub fn presence(pid: u32) -> Presence {
    // SAFETY: plain Win32 calls on a handle we own and close.
    unsafe {
      let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
      if h.is_null() {
        // ERROR_INVALID_PARAMETER is what OpenProcess says for a pid no process has. Access
        // denied (a protected or another session's process), out of handles or memory: unknown.
        return if GetLastError() == ERROR_INVALID_PARAMETER {
          Presence::Absent
        } else {
          Presence::Unknown
        };
      }
      let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
      };
      let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
      let mut code = 0u32;
      let times = GetProcessTimes(h, &mut created, &mut exited, &mut kernel, &mut user) != 0;
      let status = GetExitCodeProcess(h, &mut code) != 0;
      CloseHandle(h);
      if !(times && status) {
        return Presence::Unknown;
      }
      if code != STILL_ACTIVE {
        // Exited; the handle kept only its kernel object alive (the zombie's equivalent).
        return Presence::Absent;
      }
      Presence::Running(((u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime)) | 1)
    }
  }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod imp {
  use super::Presence;

  // Other Unixes: no portable start time. `kill(pid, 0)` only says a pid exists, so the
  // fallback is weaker there; the liveness lock remains the primary check.
  pub fn presence(pid: u32) -> Presence {
    match super::exists_by_signal(pid) {
      Some(true) => Presence::Running(1),
      Some(false) => Presence::Absent,
      None => Presence::Unknown,
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn own_identity_is_stable_and_running() {
    let me = current_pid();
    let id = start_identity(me).expect("own start identity");
    assert_eq!(start_identity(me), Some(id));
    assert_eq!(is_running(me, id), Some(true));
    assert_eq!(is_running(me, id ^ 0x10), Some(false));
    assert_eq!(is_running(me, 0), None, "no identity to compare with: cannot tell");
  }

  #[cfg(target_os = "linux")]
  #[test]
  fn a_zombie_is_not_running() {
    let mut child = std::process::Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    // Not reaped yet: wait until it has exited and is a zombie.
    let started = std::time::Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")) {
      assert!(started.elapsed().as_secs() < 5);
      std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(presence(pid), Presence::Absent);
    child.wait().unwrap();
  }

  #[cfg(target_os = "linux")]
  #[test]
  fn an_unreadable_stat_line_is_unknown_not_absent() {
    assert_eq!(imp::parse_stat(""), Presence::Unknown);
    assert_eq!(imp::parse_stat("12 (x) S 1 2"), Presence::Unknown);
    assert_eq!(imp::parse_stat("12 (x) Z 1 2"), Presence::Absent);
  }

  #[cfg(unix)]
  #[test]
  fn missing_process_has_no_identity() {
    // Spawn and reap a child: its pid is then free (until reused, which the loop tolerates).
    let mut child = std::process::Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().unwrap();
    if let Some(id) = start_identity(pid) {
      // The pid was reused by an unrelated process already: its identity differs from nothing
      // we know, which is all the fallback needs.
      assert_ne!(id, 0);
    }
  }
}
