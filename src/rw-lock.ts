// The public RwLock: many readers or one writer, machine-wide, on the file backend. Argument
// checking, errors, Symbol.dispose and AbortSignal around the native handle; the rules (one
// mode at a time per handle, shared and exclusive kernel locks) are the core's.

import { acquire, acquireSync, type LockKind } from './acquire'
import { NativeRwLock } from './binding.cjs'
import * as diagnostics from './diagnostics'
import { invalidArgValue } from './errors'
import type { OwnerInfo } from './lock'
import { LossSignals } from './loss'
import { native } from './native'
import { type AcquireOptions, checkLockOptions, checkName, checkTryOptions, type LockOptions } from './validate'

/** What an RwLock handle holds now. */
export type RwHeld = 'read' | 'write' | null

/** For `proclock run --shared` only (not public): as lock.ts's `holdDescriptor`, for whichever mode is held. */
export let rwHoldDescriptor!: (lock: RwLock) => number | null

// How each mode is acquired, for acquire.ts's helper (set in RwLock's static block, which alone
// can reach the native handle).
let reading: LockKind<RwLock>
let writing: LockKind<RwLock>

/**
 * A reader-writer lock on `name`: any number of readers at once, or one writer, across
 * processes and threads. It lives on the `file` backend (kernel shared/exclusive file locks,
 * released by the kernel when a holder dies), and excludes a `file`-backend `Lock` of the same
 * name the way a writer does. A handle holds one mode at a time: release a read lock before
 * asking to write (upgrading in place would deadlock two readers that both try it).
 */
export class RwLock implements Disposable, AsyncDisposable {
  readonly name: string
  readonly backend = 'file' as const
  readonly #native: NativeRwLock
  #loss: LossSignals | null = null

  static {
    rwHoldDescriptor = (lock) => lock.#native.holdDescriptor()
    const mode = (shared: boolean): LockKind<RwLock> => ({
      tryOnce: (lock, description) => lock.#native.tryAcquire(shared, description),
      // No try on the calling thread before a wait: the wait is native from its first step.
      tryFree: null,
      wait: (lock, timeout, description) => lock.#native.acquireAsync(shared, timeout, description),
      waitSync: (lock, timeout, description) => void lock.#native.acquireSync(shared, timeout, description),
      cancel: (lock) => lock.#native.cancel(),
      giveBack: (lock) => lock.#native.giveBack(),
      // RwLock publishes no acquisition events (only `proclock:lost`, from its loss signals).
      observer: null,
    })
    reading = mode(true)
    writing = mode(false)
  }

  constructor(name: string, options?: LockOptions) {
    this.name = checkName(name)
    const o = checkLockOptions({ backend: 'file', ...(options ?? {}) })
    if (o.backend !== 'file') {
      throw invalidArgValue(
        'options.backend',
        "must be 'file' for RwLock: a shared-memory reader count cannot tell which readers died, so one killed reader would lock writers out for ever. Use { backend: 'file' } (the default for RwLock)",
      )
    }
    if (o.reentrant) throw invalidArgValue('options.reentrant', 'is not supported by RwLock (a handle holds one mode at a time)')
    this.#native = native(() => new NativeRwLock(this.name, o.dir, o.description))
    if (diagnostics.lostObserved()) (this.#loss = new LossSignals(this, this.#native)).watch()
  }

  /** This handle's owner UUID (what other processes see as `owner().uuid` while it writes). */
  get uuid(): string {
    return this.#native.uuid
  }

  /** 'read', 'write', or null. */
  get held(): RwHeld {
    const h = this.#native.held
    return h === 1 ? 'read' : h === 2 ? 'write' : null
  }

  /**
   * An AbortSignal for the current read or write hold (null when holding neither), aborted with a
   * LockLostError as its `reason` if the hold stops being exclusive (the lock directory or this
   * lock's file was deleted or moved while in use); see `Lock.lost`.
   */
  get lost(): AbortSignal | null {
    return (this.#loss ??= new LossSignals(this, this.#native)).signal(this.#native.token())
  }

  /** Take a read lock if no writer holds it; never waits. */
  tryRead(options?: { description?: string }): boolean {
    return this.#try(true, options)
  }

  /** Take the write lock if nobody holds the lock; never waits. */
  tryWrite(options?: { description?: string }): boolean {
    return this.#try(false, options)
  }

  /** Wait for a read lock without blocking the event loop or the libuv pool. */
  read(options?: AcquireOptions): Promise<void> {
    return acquire(reading, this, options)
  }

  /** Wait for the write lock without blocking the event loop or the libuv pool. */
  write(options?: AcquireOptions): Promise<void> {
    return acquire(writing, this, options)
  }

  /** Wait for a read lock on the calling thread (blocks it). */
  readSync(options?: AcquireOptions): void {
    acquireSync(reading, this, options)
  }

  /** Wait for the write lock on the calling thread (blocks it). */
  writeSync(options?: AcquireOptions): void {
    acquireSync(writing, this, options)
  }

  /** Release the read or write lock this handle holds. Throws LockNotHeldError if it holds neither. */
  release(): void {
    native(() => this.#native.release())
  }

  /** Held by anyone (readers or a writer, this handle included), now. */
  isLocked(): boolean {
    return native(() => this.#native.isLocked())
  }

  /** The current writer (readers have no owner record), or null. */
  owner(): OwnerInfo | null {
    return native(() => this.#native.owner())
  }

  /** Release if held, reject a pending read/write with LockClosedError; idempotent. */
  close(): void {
    this.#native.close()
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  #try(shared: boolean, options: { description?: string } | undefined): boolean {
    const description = options === undefined ? undefined : checkTryOptions(options)
    return native(() => this.#native.tryAcquire(shared, description))
  }
}
