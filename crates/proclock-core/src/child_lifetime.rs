//! Tying the life of the processes we start to our own, where a hold cannot be handed to them.
//!
//! `proclock run` must never let its command outlive the hold it runs under: if proclock is
//! killed (SIGKILL, the OOM killer, Task Manager), a command that runs on, unlocked, works
//! beside the next holder. On Unix the hold itself is handed to the command (it inherits the
//! descriptor that keeps the hold: `RawLock::hold_descriptor`), so nothing is needed here.
//!
//! On Windows that cannot work: a `LockFileEx` lock belongs to the process that took it, not to
//! a handle a child could inherit, and so does the liveness lock of the shm backend. So the
//! command is made to die with us instead: this process puts itself in a new job object with
//! `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`, and every process it starts afterwards is born in that
//! job (job membership is inherited). The job's only handle is ours and is never closed, and it
//! is not inheritable, so the kernel closes it exactly when this process ends, however it ends,
//! and then terminates everything still in the job. Consequences to know: anything the command
//! leaves running is killed too when proclock ends, even normally; and a process already in a
//! job that forbids nesting (before Windows 8) cannot do this, which is reported as an error.

use crate::error::Result;

/// Make every process this process starts from now on die when this process dies. Windows
/// only (elsewhere a hold is handed over instead, see the module comment); returns whether
/// anything was done. Meant for a process that exists to run one command (`proclock run`):
/// it cannot be undone, and it applies to every later child.
pub fn kill_children_on_exit() -> Result<bool> {
  imp::kill_children_on_exit()
}

#[cfg(windows)]
mod imp {
  use crate::error::{Error, Result};
  use windows_sys::Win32::Foundation::CloseHandle;
  use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation, SetInformationJobObject,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
  };
  use windows_sys::Win32::System::Threading::GetCurrentProcess;

  pub fn kill_children_on_exit() -> Result<bool> {
    // SAFETY: plain calls with valid arguments; `info` is a zeroed plain-data structure whose
    // size is passed with it; the job handle is checked before use and closed on failure.
    unsafe {
      // Null attributes: the handle is not inheritable, so no child keeps the job open.
      let job = CreateJobObjectW(std::ptr::null(), std::ptr::null());
      if job.is_null() {
        return Err(Error::io("creating a job object", std::io::Error::last_os_error()));
      }
      let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = std::mem::zeroed();
      info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
      let set = SetInformationJobObject(
        job,
        JobObjectExtendedLimitInformation,
        (&info as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
        std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
      );
      if set == 0 || AssignProcessToJobObject(job, GetCurrentProcess()) == 0 {
        let e = std::io::Error::last_os_error();
        CloseHandle(job);
        return Err(Error::io("putting this process in a kill-on-close job object", e));
      }
      // `job` is deliberately never closed: its closing, when this process ends, is what
      // terminates the children.
    }
    Ok(true)
  }
}

#[cfg(not(windows))]
mod imp {
  use crate::error::Result;

  pub fn kill_children_on_exit() -> Result<bool> {
    Ok(false)
  }
}
