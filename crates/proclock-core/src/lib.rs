//! proclock-core: named locks between processes on one machine.
//!
//! This crate is pure Rust and knows nothing of Node.js. Where to read what:
//!
//! | file | what it holds |
//! |------|---------------|
//! | `lock_word.rs` | the lock-word protocol: exclusion, hand-off, takeover, fencing tokens |
//! | `liveness.rs` | whether a holder's process is alive (kernel-held liveness locks, pid + start time) |
//! | `shm_lock.rs` | the `shm` backend: one handle on one shared slot |
//! | `file_lock.rs` | the `file` backend: one handle on one lock file, waits with timeouts |
//! | `lock_file.rs` | the `file` backend's lock file: layout, creation, holder record |
//! | `os_file_lock.rs` | kernel file locks per OS (OFD locks, flock, LockFileEx) |
//! | `rw_lock.rs` | the reader-writer lock (file backend) |
//! | `backend.rs` | the backends behind one type, chosen per handle |
//! | `slot_table.rs` | where each named lock lives in shared memory |
//! | `holder_record.rs` | who holds a lock, readable without taking it |
//! | `segment.rs` | shared segment files: creation, validation, repair |
//! | `lock_dir.rs` | the lock directory and how files in it are opened safely |
//! | `os_wait.rs` | sleeping on a shared word (futex, ulock) |
//! | `death_watch.rs` | waking waiters when a holder's process exits (pidfd) |
//! | `dir_watch.rs` | noticing a lock directory (or a file in it) deleted or moved while in use |
//! | `raw_lock.rs` | the small trait every backend implements |
//! | `handle.rs` | reentrancy, close, abandon and async waits, for every backend |
//! | `waiter_pool.rs` | the threads async waits sleep on |
//! | `process_info.rs` | pid and process start identity per OS |
//! | `inspect.rs` | looking at locks from outside: inspect, list, forced release, per backend |
//! | `child_lifetime.rs` | Windows: the processes we start die with us (`proclock run`) |
//! | `crash_points.rs` | the numbered protocol steps where tests kill a process (free when shipped) |

#[cfg(not(loom))]
pub mod child_lifetime;
pub mod clock;
pub mod crash_points;
#[cfg(not(loom))]
pub mod description;
pub mod error;
pub mod lock_word;
mod sync;

#[cfg(not(loom))]
pub mod backend;
#[cfg(not(loom))]
pub mod file;
#[cfg(not(loom))]
pub mod handle;
#[cfg(not(loom))]
pub mod inspect;
#[cfg(not(loom))]
pub mod lock_dir;
#[cfg(not(loom))]
pub mod name;
#[cfg(not(loom))]
pub mod process_info;
#[cfg(not(loom))]
pub mod raw_lock;
#[cfg(not(loom))]
pub mod rw_lock;
#[cfg(not(loom))]
pub mod shm;
#[cfg(not(loom))]
mod waiter_pool;

#[cfg(not(loom))]
pub use backend::{AnyLock, Backend};
pub use error::{Error, ErrorKind, Result};
#[cfg(not(loom))]
pub use file::{FileLock, Mode};
#[cfg(not(loom))]
pub use handle::Handle;
#[cfg(not(loom))]
pub use raw_lock::{CannotForce, ForceRelease, InspectLock, Losable, OwnerInfo, RawLock};
#[cfg(not(loom))]
pub use rw_lock::RwHandle;
#[cfg(not(loom))]
pub use shm::{ShmLock, ShmSpace};
