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

/// The pid of this process.
pub fn current_pid() -> u32 {
  std::process::id()
}

/// The start identity of `pid`, or `None` when no such process exists (or it cannot be read).
pub fn start_identity(pid: u32) -> Option<u64> {
  if pid == 0 {
    return None;
  }
  imp::start_identity(pid)
}

/// Is the process `pid` that started with `identity` still running?
pub fn is_running(pid: u32, identity: u64) -> bool {
  identity != 0 && start_identity(pid) == Some(identity)
}

#[cfg(target_os = "linux")]
mod imp {
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

  pub fn start_identity(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_ascii_whitespace();
    // Field 3 is the state. A zombie (or a dead task) has exited: its files, and so its
    // liveness lock, are gone; only its parent has not collected it yet. It is not running.
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
      return None;
    }
    // Starttime is field 22, the 19th after the state.
    let ticks: u64 = fields.nth(22 - 4)?.parse().ok()?;
    // Bit 47 keeps the identity nonzero; ticks never reach 2^47 (that is 44 million years).
    Some((boot_tag() << 48) | (1 << 47) | (ticks & ((1 << 47) - 1)))
  }
}

#[cfg(target_os = "macos")]
mod imp {
  pub fn start_identity(pid: u32) -> Option<u64> {
    let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::zeroed();
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: the buffer is a zeroed proc_bsdinfo of exactly the size we pass.
    let n = unsafe { libc::proc_pidinfo(pid as libc::c_int, libc::PROC_PIDTBSDINFO, 0, info.as_mut_ptr().cast(), size) };
    if n != size {
      return None;
    }
    // SAFETY: proc_pidinfo filled all `size` bytes.
    let info = unsafe { info.assume_init() };
    const SZOMB: u32 = 5; // <sys/proc.h>: exited, not yet collected by its parent
    if info.pbi_status == SZOMB {
      return None;
    }
    Some(info.pbi_start_tvsec.wrapping_mul(1_000_000).wrapping_add(info.pbi_start_tvusec) | 1)
  }
}

#[cfg(windows)]
mod imp {
  use windows_sys::Win32::Foundation::{CloseHandle, FILETIME};
  use windows_sys::Win32::System::Threading::{GetExitCodeProcess, GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION};

  const STILL_ACTIVE: u32 = 259;

  pub fn start_identity(pid: u32) -> Option<u64> {
    // SAFETY: plain Win32 calls on a handle we own and close.
    unsafe {
      let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
      if h.is_null() {
        return None;
      }
      let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
      };
      let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
      let mut code = 0u32;
      let ok = GetProcessTimes(h, &mut created, &mut exited, &mut kernel, &mut user) != 0
        && GetExitCodeProcess(h, &mut code) != 0
        && code == STILL_ACTIVE;
      CloseHandle(h);
      ok.then(|| ((u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime)) | 1)
    }
  }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod imp {
  // Other Unixes: no portable start time. `kill(pid, 0)` only says a pid exists, so the
  // fallback is weaker there; the liveness lock remains the primary check.
  pub fn start_identity(pid: u32) -> Option<u64> {
    // SAFETY: signal 0 performs permission and existence checks only.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    (r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)).then_some(1)
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
    assert!(is_running(me, id));
    assert!(!is_running(me, id ^ 0x10));
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
    assert_eq!(start_identity(pid), None);
    child.wait().unwrap();
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
