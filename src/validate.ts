// Argument checking for the public API: every bad input becomes a Node-style TypeError or
// RangeError with a stable `code` before anything reaches the native side.

import { invalidArgType, invalidArgValue, outOfRange } from './errors'
import { MAX_DESCRIPTION_BYTES, MAX_NAME_BYTES } from './limits'

export type Backend = 'shm' | 'file'

export interface LockOptions {
  /** Where the lock lives. Default 'shm'. */
  backend?: Backend
  /** Count nested acquisitions on one handle instead of throwing LockReentryError. Default false. */
  reentrant?: boolean
  /** Free text that other processes see as the holder's description (at most 256 UTF-8 bytes). */
  description?: string
  /** Lock directory (a namespace for lock names); a relative path is resolved when the handle is created. Default: $PROCLOCK_DIR (as this thread's process.env has it), else a private per-user directory. */
  dir?: string
}

export interface AcquireOptions {
  /** Milliseconds to wait; 0 is a single try; default Infinity. */
  timeout?: number
  /** Abort the wait; the acquisition then rejects with an AbortError and nothing stays held. */
  signal?: AbortSignal
  /** Overrides LockOptions.description for this hold. */
  description?: string
}

export interface CheckedLockOptions {
  backend: Backend
  reentrant: boolean
  description: string | undefined
  dir: string | undefined
}

export interface CheckedAcquireOptions {
  timeout: number
  signal: AbortSignal | undefined
  description: string | undefined
}

function options(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object') throw invalidArgType(name, 'of type object', value)
  return value as Record<string, unknown>
}

export function checkName(name: unknown): string {
  if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name)
  if (name.length === 0) throw invalidArgValue('name', 'must not be empty')
  if (name.includes('\0')) throw invalidArgValue('name', 'must not contain null bytes')
  if (!name.isWellFormed()) throw invalidArgValue('name', 'must be well-formed Unicode (no lone surrogates)')
  const bytes = Buffer.byteLength(name, 'utf8')
  if (bytes > MAX_NAME_BYTES) throw invalidArgValue('name', `must be at most ${MAX_NAME_BYTES} UTF-8 bytes. Received ${bytes} bytes`, true)
  return name
}

export function checkDescription(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value)
  // As for names: a lone surrogate has no UTF-8 form, so storing it would silently change the
  // text (to U+FFFD); refused instead, the same way a name is.
  if (!value.isWellFormed()) throw invalidArgValue(name, 'must be well-formed Unicode (no lone surrogates)')
  const bytes = Buffer.byteLength(value, 'utf8')
  if (bytes > MAX_DESCRIPTION_BYTES) {
    throw invalidArgValue(name, `must be at most ${MAX_DESCRIPTION_BYTES} UTF-8 bytes. Received ${bytes} bytes`, true)
  }
  return value
}

export function checkLockOptions(value: unknown): CheckedLockOptions {
  const o = options(value, 'options')
  const { backend = 'shm', reentrant = false, dir } = o
  if (backend !== 'shm' && backend !== 'file') {
    throw invalidArgValue('options.backend', `must be 'shm' or 'file'. Received ${String(backend)}`)
  }
  if (typeof reentrant !== 'boolean') throw invalidArgType('options.reentrant', 'of type boolean', reentrant)
  if (dir !== undefined) {
    if (typeof dir !== 'string') throw invalidArgType('options.dir', 'of type string', dir)
    if (dir.length === 0 || dir.includes('\0')) throw invalidArgValue('options.dir', 'must be a non-empty path without null bytes')
  }
  return { backend, reentrant, description: checkDescription(o.description, 'options.description'), dir: dir ?? envDir() }
}

/**
 * `PROCLOCK_DIR` as this thread sees it, or undefined (the core's default directory). Read here,
 * at each call, and not by the native side: the native side sees only the process's environment,
 * while a worker thread has its own `process.env` (given by `new Worker(..., { env })` or set by
 * the worker itself), and a lock must live where the thread that opens it says. An empty value
 * counts as unset, as in a shell.
 */
function envDir(): string | undefined {
  return process.env.PROCLOCK_DIR || undefined
}

export function checkTimeout(timeout: unknown, name = 'options.timeout'): number {
  if (timeout === undefined) return Infinity
  if (typeof timeout !== 'number') throw invalidArgType(name, 'of type number', timeout)
  if (Number.isNaN(timeout) || timeout < 0) throw outOfRange(name, '>= 0 (milliseconds) or Infinity', timeout)
  return timeout
}

export function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined
  if (
    signal === null ||
    typeof signal !== 'object' ||
    typeof (signal as AbortSignal).aborted !== 'boolean' ||
    typeof (signal as AbortSignal).addEventListener !== 'function'
  ) {
    throw invalidArgType('options.signal', 'an instance of AbortSignal', signal)
  }
  return signal as AbortSignal
}

// The common call passes no options: nothing to check, and nothing to build (in a short-lived
// process this function runs unoptimised for its first thousands of calls, which showed up in
// the run_perf benchmark).
const NO_ACQUIRE_OPTIONS: CheckedAcquireOptions = Object.freeze({ timeout: Infinity, signal: undefined, description: undefined })

export function checkAcquireOptions(value: unknown): CheckedAcquireOptions {
  if (value === undefined) return NO_ACQUIRE_OPTIONS
  const o = options(value, 'options')
  return {
    timeout: checkTimeout(o.timeout),
    signal: checkSignal(o.signal),
    description: checkDescription(o.description, 'options.description'),
  }
}

export function checkTryOptions(value: unknown): string | undefined {
  return checkDescription(options(value, 'options').description, 'options.description')
}

export function checkFunction(fn: unknown, name: string): void {
  if (typeof fn !== 'function') throw invalidArgType(name, 'of type function', fn)
}

/** `list()` options: only `dir`, checked as for a Lock. */
export function checkListOptions(value: unknown): { dir: string | undefined } {
  return { dir: checkLockOptions({ dir: options(value, 'options').dir }).dir }
}
