//! Crash points: the numbered steps of every protocol that changes shared state, where a test
//! can make the process die, to prove that a death at exactly that step leaves every lock free
//! or recoverable, with `owner_died` right.
//!
//! A process can be killed between any two instructions (SIGKILL, the OOM killer, a power cut
//! of the container), and the steps below are the places where such a death leaves shared state
//! half-changed: a word won but no token stored yet, a record half written, a segment file
//! created but not yet published. Each call site says what has been done and what has not.
//! The tests (`__test__/crash-points.spec.mts`, `tests/loom_lock_word.rs`) kill a process at
//! each step in turn, as the kernel's robust-futex selftests do for `list_op_pending` and
//! SQLite's crash tests do for every write.
//!
//! # Cost
//!
//! None in the library as shipped: without the `crash-points` feature, [`reached`] is an empty
//! inline function and every call site compiles to nothing. The test suite builds a second
//! copy of the native module with the feature (`scripts/test.mjs`) and loads it in the child
//! processes it kills; the protocol code is the same code.
//!
//! # Arming (feature `crash-points`)
//!
//! `PROCLOCK_CRASH_AT=<step>` kills the process (SIGKILL; on Windows TerminateProcess with exit
//! code 137) the first time it reaches `<step>`; `<step>@<n>` the n-th time. The environment is
//! read once, at the first step reached. An unknown step name is reported on stderr and the process exits with status 70,
//! so a misspelt test fails instead of silently never crashing.
//!
//! Under `--cfg loom` the model check arms a step per model thread instead ([`die_at`]): the
//! thread then unwinds at that step with the [`Died`] payload, which the model catches and
//! treats as the death of that contender.

/// A step of a protocol, named after what has just been done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
  /// `shm/liveness.rs`: took our process slot's liveness lock; its process-table entry (pid,
  /// start identity, first seq) is not written yet.
  RegisterLivenessLocked,
  /// `lock_dir/mod.rs` (creating a segment or a lock file): the temporary file exists, empty.
  PublishTempCreated,
  /// The temporary file has its full size, all zeros; its header is not written yet.
  PublishTempSized,
  /// The temporary file is complete; not yet renamed to its real name.
  PublishTempWritten,
  /// Renamed into place; the creator has not mapped or used it yet.
  PublishRenamed,
  /// `shm/slot_table.rs`: claimed a free slot for a name (its key CAS); the name is not written.
  SlotKeyClaimed,
  /// `lock_word.rs`: won the lock word (acquire, takeover or hand-off); the fencing token is
  /// not stored yet.
  WordWon,
  /// The fencing token is stored; the holder record is not written yet.
  TokenStored,
  /// `shm/holder_record.rs`: the record is half written (its sequence is odd, the holder id is
  /// written, the pid, token and description are not).
  RecordHalfWritten,
  /// A contender set the waiters bit and is about to sleep.
  WaitersBitSet,
  /// A sleeper was woken (it may have consumed the only wake-up) and has not looked at the
  /// word yet.
  Woken,
  /// A release freed the word; the sleepers it owes a wake-up are not woken yet.
  WordFreed,
  /// A forced release took the word from its holder; it is not freed as ABANDONED yet.
  ForceTookWord,
  /// `file/mod.rs`: the kernel granted the file lock and the previous holder's record is
  /// read; ours is not written yet.
  FileKernelLocked,
  /// The holder record says "held" by us; the caller has not been told yet.
  FileRecordWritten,
  /// A release wrote "free" into the record; the kernel lock is not let go yet.
  FileRecordFreed,
}

impl Step {
  pub const ALL: [Step; 16] = [
    Step::RegisterLivenessLocked,
    Step::PublishTempCreated,
    Step::PublishTempSized,
    Step::PublishTempWritten,
    Step::PublishRenamed,
    Step::SlotKeyClaimed,
    Step::WordWon,
    Step::TokenStored,
    Step::RecordHalfWritten,
    Step::WaitersBitSet,
    Step::Woken,
    Step::WordFreed,
    Step::ForceTookWord,
    Step::FileKernelLocked,
    Step::FileRecordWritten,
    Step::FileRecordFreed,
  ];

  /// The name used in `PROCLOCK_CRASH_AT`.
  pub fn name(self) -> &'static str {
    match self {
      Step::RegisterLivenessLocked => "register-liveness-locked",
      Step::PublishTempCreated => "publish-temp-created",
      Step::PublishTempSized => "publish-temp-sized",
      Step::PublishTempWritten => "publish-temp-written",
      Step::PublishRenamed => "publish-renamed",
      Step::SlotKeyClaimed => "slot-key-claimed",
      Step::WordWon => "word-won",
      Step::TokenStored => "token-stored",
      Step::RecordHalfWritten => "record-half-written",
      Step::WaitersBitSet => "waiters-bit-set",
      Step::Woken => "woken",
      Step::WordFreed => "word-freed",
      Step::ForceTookWord => "force-took-word",
      Step::FileKernelLocked => "file-kernel-locked",
      Step::FileRecordWritten => "file-record-written",
      Step::FileRecordFreed => "file-record-freed",
    }
  }
}

/// The process (or, in the model check, the thread) has reached `step`.
#[inline(always)]
pub fn reached(step: Step) {
  #[cfg(loom)]
  model::reached(step);
  #[cfg(all(feature = "crash-points", not(loom)))]
  armed::reached(step);
  #[cfg(not(any(loom, feature = "crash-points")))]
  let _ = step;
}

#[cfg(loom)]
pub use model::{die_at, Died};

#[cfg(loom)]
mod model {
  use super::Step;
  use std::cell::Cell;

  /// The panic payload of a model thread dying at its armed step.
  pub struct Died(pub Step);

  loom::thread_local! {
    static ARMED: Cell<Option<(Step, u32)>> = Cell::new(None);
  }

  /// Make the current model thread die the `nth` time it reaches `step` (1 = the first).
  pub fn die_at(step: Step, nth: u32) {
    ARMED.with(|a| a.set(Some((step, nth))));
  }

  pub(super) fn reached(step: Step) {
    ARMED.with(|a| match a.get() {
      Some((s, 1)) if s == step => {
        a.set(None);
        std::panic::panic_any(Died(step));
      }
      Some((s, n)) if s == step => a.set(Some((s, n - 1))),
      _ => {}
    });
  }
}

#[cfg(all(feature = "crash-points", not(loom)))]
mod armed {
  use super::Step;
  use std::sync::atomic::{AtomicU32, Ordering};
  use std::sync::OnceLock;

  fn armed() -> Option<(Step, u32)> {
    static ARMED: OnceLock<Option<(Step, u32)>> = OnceLock::new();
    *ARMED.get_or_init(|| {
      let spec = std::env::var("PROCLOCK_CRASH_AT").ok()?;
      let (name, nth) = spec.split_once('@').unwrap_or((&spec, "1"));
      let step = Step::ALL.into_iter().find(|s| s.name() == name);
      match (step, nth.parse::<u32>()) {
        (Some(step), Ok(nth)) if nth >= 1 => Some((step, nth)),
        _ => {
          eprintln!("PROCLOCK_CRASH_AT={spec}: no such crash point (expected <step>[@<n>], n >= 1)");
          std::process::exit(70);
        }
      }
    })
  }

  pub(super) fn reached(step: Step) {
    static ARRIVALS: AtomicU32 = AtomicU32::new(0);
    let Some((at, nth)) = armed() else { return };
    if step == at && ARRIVALS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
      die();
    }
  }

  /// Die as `kill -9` (or Task Manager's "End task") kills: no destructor, no exit handler,
  /// no flush. On Windows the exit code is 137, which the tests read as "killed".
  fn die() -> ! {
    #[cfg(unix)]
    // SAFETY: plain system calls on our own process.
    unsafe {
      libc::kill(libc::getpid(), libc::SIGKILL);
      loop {
        libc::pause();
      }
    }
    #[cfg(windows)]
    // SAFETY: terminating our own process through its pseudo-handle.
    unsafe {
      use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
      TerminateProcess(GetCurrentProcess(), 137);
      std::process::abort()
    }
  }
}
