// proclock: named locks between processes and worker threads on one machine.

export { Lock, withLock, type Hold, type OwnerInfo } from './lock'
export { RwLock, type RwHeld } from './rw-lock'
export { singleInstance, type SingleInstanceOptions } from './single-instance'
export type { AcquireOptions, Backend, LockOptions } from './validate'
export { forceRelease, inspect, list, type LockState } from './inspect'
export type { AcquiredMessage, LostMessage, OwnerDiedMessage, ReleasedMessage, TimeoutMessage } from './diagnostics'
export {
  AlreadyRunningError,
  LockClosedError,
  LockCorruptError,
  LockLostError,
  LockNotHeldError,
  LockPermissionError,
  LockReentryError,
  LockTimeoutError,
  ProcLockError,
} from './errors'
