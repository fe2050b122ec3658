//! proclock-core: named locks between processes on one machine.
//!
//! This crate is pure Rust and knows nothing of Node.js. It is built in three layers; a module
//! imports only from its own layer or the ones below it, and the two backend folders never
//! import each other:
//!
//! 1. **Shared ground** (top-level files): errors, names, descriptions, clocks, the lock
//!    directory, process identity, the lock-word protocol, the raw traits, the waiter threads
//!    and the shared wait queue.
//! 2. **Backends**, one folder each: `shm/` and `file/`. A backend implements [`RawLock`] (and
//!    [`InspectLock`], [`Losable`], and [`ForceRelease`] or [`CannotForce`]), and exposes its
//!    own `look`/`list`/force entry points for inspection. A new backend (PostgreSQL advisory
//!    locks, say) is a new folder beside these, a variant of [`Backend`]/[`AnyLock`], and one
//!    entry in `inspect.rs`'s table.
//! 3. **Lock kinds over any backend**: the handle (`handle.rs`, the exclusive lock), the
//!    reader-writer lock (`rw_lock.rs`), backend dispatch (`backend.rs`) and inspection
//!    (`inspect.rs`). A `Semaphore` or an shm reader-writer lock lands here, as a file of its
//!    own over the raw traits (and a protocol file beside `lock_word.rs` if it needs one).
//!
//! Every file, one line each:
//!
//! | file | what it holds |
//! |------|---------------|
//! | `lib.rs` | this map, and the crate's public names |
//! | `error.rs` | the error type and its stable codes |
//! | `name.rs` | lock names: what is allowed, and how a name becomes a file name or a key |
//! | `description.rs` | the description of a hold: its length limit, its check, its lossy text |
//! | `clock.rs` | wall-clock readings: a hold's `since`, and where a new lock's tokens start |
//! | `lock_dir/mod.rs` | the lock directory, how files in it are opened and published safely, loss |
//! | `lock_dir/watch.rs` | noticing the lock directory (or a file in it) deleted or moved while in use |
//! | `process_info.rs` | pid and process start identity per OS |
//! | `crash_points.rs` | the numbered protocol steps where tests kill a process (free when shipped) |
//! | `sync.rs` | std atomics, or loom's under `--cfg loom` |
//! | `lock_word.rs` | the lock-word protocol: exclusion, hand-off, takeover, fencing tokens |
//! | `raw_lock.rs` | the raw traits a backend implements, and what inspection sees |
//! | `waiter_pool.rs` | the threads async waits sleep on |
//! | `shared_wait.rs` | the pending async waits of one lock in one process, sharing one thread |
//! | `child_lifetime.rs` | Windows: the processes we start die with us (`proclock run`) |
//! | `shm/mod.rs` | the `shm` backend: one handle on one shared slot, the per-directory space |
//! | `shm/slot_table.rs` | where each named lock lives in shared memory |
//! | `shm/segment.rs` | shared segment files: creation, validation, repair |
//! | `shm/holder_record.rs` | who holds an shm lock, readable without taking it (a seqlock) |
//! | `shm/liveness.rs` | whether a holder's process is alive: liveness locks, the process table |
//! | `shm/death_watch.rs` | waking waiters when a holder's process exits (pidfd) |
//! | `shm/os_wait.rs` | sleeping on a shared word (futex, ulock) |
//! | `file/mod.rs` | the `file` backend: one handle on one lock file, its waits |
//! | `file/format.rs` | the lock file: layout, creation, holder record |
//! | `file/os.rs` | kernel file locks per OS (OFD locks, flock, LockFileEx) |
//! | `handle.rs` | reentrancy, close, abandon, loss and async waits, for every backend |
//! | `rw_lock.rs` | the reader-writer lock (file backend) |
//! | `backend.rs` | the backends behind one type, chosen per handle |
//! | `inspect.rs` | looking at locks from outside: the table of backends for inspect, list, force |

#[cfg(not(loom))]
pub mod child_lifetime;
pub mod clock;
pub mod crash_points;
pub mod description;
pub mod error;
pub mod lock_word;
mod sync;

#[cfg(not(loom))]
pub mod backend;
#[cfg(not(loom))]
pub mod file;
pub mod handle;
#[cfg(not(loom))]
pub mod inspect;
#[cfg(not(loom))]
pub mod lock_dir;
#[cfg(not(loom))]
pub mod name;
#[cfg(not(loom))]
pub mod process_info;
pub mod raw_lock;
#[cfg(not(loom))]
pub mod rw_lock;
pub mod shared_wait;
#[cfg(not(loom))]
pub mod shm;
#[cfg(not(loom))]
mod waiter_pool;
#[cfg(loom)]
pub mod waiter_pool;

#[cfg(not(loom))]
pub use backend::{AnyLock, Backend};
pub use error::{Error, ErrorKind, Result};
#[cfg(not(loom))]
pub use file::{FileLock, Mode};
pub use handle::Handle;
pub use raw_lock::{CannotForce, ForceRelease, InspectLock, Losable, OwnerInfo, RawLock};
#[cfg(not(loom))]
pub use rw_lock::RwHandle;
#[cfg(not(loom))]
pub use shm::{ShmLock, ShmSpace};
