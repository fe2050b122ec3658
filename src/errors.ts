// Every error proclock throws, and the Node-style argument errors it throws for bad input.

/** Base class of every proclock error; `code` is stable and safe to branch on. */
export class ProcLockError extends Error {
  readonly code: string
  constructor(message: string, code: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** The timeout passed before the lock could be taken. */
export class LockTimeoutError extends ProcLockError {
  declare readonly code: 'ELOCKTIMEOUT'
  constructor(message: string) {
    super(message, 'ELOCKTIMEOUT')
  }
}

/** `release()` on a handle that does not hold the lock. */
export class LockNotHeldError extends ProcLockError {
  declare readonly code: 'ELOCKNOTHELD'
  constructor(message: string) {
    super(message, 'ELOCKNOTHELD')
  }
}

/** Acquiring again on a handle that holds (without `reentrant: true`), or while one acquisition is pending. */
export class LockReentryError extends ProcLockError {
  declare readonly code: 'ELOCKREENTRY'
  constructor(message: string) {
    super(message, 'ELOCKREENTRY')
  }
}

/** The handle was closed. */
export class LockClosedError extends ProcLockError {
  declare readonly code: 'ELOCKCLOSED'
  constructor(message = 'the lock handle is closed') {
    super(message, 'ELOCKCLOSED')
  }
}

/** A shared segment or lock file does not contain what proclock writes; nothing was reset. */
export class LockCorruptError extends ProcLockError {
  declare readonly code: 'ELOCKCORRUPT'
  constructor(message: string) {
    super(message, 'ELOCKCORRUPT')
  }
}

/** The lock directory or a file in it is not ours, is a symlink, or is open to other users. */
export class LockPermissionError extends ProcLockError {
  declare readonly code: 'ELOCKPERM'
  constructor(message: string) {
    super(message, 'ELOCKPERM')
  }
}

/**
 * The lock directory (or the lock's file in it) was deleted or moved while this handle used it:
 * a hold it had may no longer be exclusive, since new processes take the same name in a new
 * directory. The handle cannot be used again (only `close()` works); open a new `Lock`.
 */
export class LockLostError extends ProcLockError {
  declare readonly code: 'ELOCKLOST'
  constructor(message = 'the lock directory was deleted or moved while in use: open a new Lock') {
    super(message, 'ELOCKLOST')
  }
}

/** `singleInstance(..., { onConflict: 'throw' })` found another instance. */
export class AlreadyRunningError extends ProcLockError {
  declare readonly code: 'EALREADYRUNNING'
  readonly pid: number
  constructor(message: string, pid: number) {
    super(message, 'EALREADYRUNNING')
    this.pid = pid
  }
}

type WithCode<E extends Error> = E & { code: string }

function withCode<E extends Error>(error: E, code: string): WithCode<E> {
  Object.defineProperty(error, 'code', { value: code, enumerable: true, writable: true, configurable: true })
  return error as WithCode<E>
}

/** The platform's abort error: `name` 'AbortError', `code` 'ABORT_ERR', `cause` the signal's reason. */
export function abortError(signal: AbortSignal): Error {
  const error = new Error('The operation was aborted', { cause: signal.reason })
  error.name = 'AbortError'
  return withCode(error, 'ABORT_ERR')
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`
  let shown = typeof value === 'string' ? JSON.stringify(value.length > 28 ? `${value.slice(0, 25)}...` : value) : String(value)
  if (typeof value === 'bigint') shown += 'n'
  return `type ${typeof value} (${shown})`
}

function subject(name: string): string {
  return name.includes('.') ? `The "${name}" property` : `The "${name}" argument`
}

/** Node's ERR_INVALID_ARG_TYPE. */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  return withCode(new TypeError(`${subject(name)} must be ${expected}. Received ${describe(actual)}`), 'ERR_INVALID_ARG_TYPE')
}

/** Node's ERR_INVALID_ARG_VALUE (a TypeError, or a RangeError for lengths). */
export function invalidArgValue(name: string, reason: string, range = false): TypeError | RangeError {
  const message = `${subject(name)} ${reason}`
  return withCode(range ? new RangeError(message) : new TypeError(message), 'ERR_INVALID_ARG_VALUE')
}

/** Node's ERR_OUT_OF_RANGE. */
export function outOfRange(name: string, range: string, actual: unknown): RangeError {
  return withCode(new RangeError(`${subject(name)} is out of range. It must be ${range}. Received ${String(actual)}`), 'ERR_OUT_OF_RANGE')
}

const byCode: Record<string, new (message: string) => ProcLockError> = {
  ELOCKTIMEOUT: LockTimeoutError,
  ELOCKNOTHELD: LockNotHeldError,
  ELOCKREENTRY: LockReentryError,
  ELOCKCLOSED: LockClosedError,
  ELOCKCORRUPT: LockCorruptError,
  ELOCKPERM: LockPermissionError,
  ELOCKLOST: LockLostError,
}

/** Turn an error from the native binding (`{ code, message }`) into the matching class. */
export function fromNative(error: unknown): Error {
  if (error === null || typeof error !== 'object' || typeof (error as { code?: unknown }).code !== 'string') {
    return error instanceof Error ? error : new Error(String(error))
  }
  const { code, message } = error as { code: string; message: string }
  const Known = byCode[code]
  if (Known) return new Known(message)
  if (code === 'ERR_INVALID_ARG_VALUE') return withCode(new TypeError(message), code)
  if (code === 'ERR_OUT_OF_RANGE') return withCode(new RangeError(message), code)
  // Any other operating-system failure keeps a code of its own.
  return new ProcLockError(message, code)
}
