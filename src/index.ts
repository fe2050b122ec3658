// proclock: named locks between processes and worker threads on one machine.

export { Lock, withLock, type Hold, type OwnerInfo } from './lock'
export type { AcquireOptions, Backend, LockOptions } from './validate'
export {
  AlreadyRunningError,
  LockClosedError,
  LockCorruptError,
  LockNotHeldError,
  LockPermissionError,
  LockReentryError,
  LockTimeoutError,
  ProcLockError,
} from './errors'
