// The public Lock, Hold and withLock: argument checking, error classes, Symbol.dispose and
// AbortSignal around the native handle. Every lock rule (exclusion, reentrancy, takeover,
// tokens) is the core's; this file only translates.

import { acquire, acquireSync, type LockKind } from './acquire'
import { NativeLock } from './binding.cjs'
import * as diagnostics from './diagnostics'
import { fromNative, LockNotHeldError } from './errors'
import { LossSignals } from './loss'
import { native } from './native'
import { type AcquireOptions, type Backend, checkFunction, checkLockOptions, checkName, checkTryOptions, type LockOptions } from './validate'

/** The holder of a lock. */
export interface OwnerInfo {
  pid: number
  /** The holding handle's owner UUID. */
  uuid: string
  description: string
  /** When the hold began, epoch milliseconds. */
  since: number
  /** Fencing token of the hold. */
  token: bigint
  /** false: the holder died holding; the next acquirer takes the lock over (ownerDied). */
  alive: boolean
}

/** One acquisition, for `using` / `await using`. */
export interface Hold extends Disposable, AsyncDisposable {
  readonly token: bigint
  readonly ownerDied: boolean
  /**
   * Aborted (with a LockLostError as its reason) if this hold stops being exclusive because the
   * lock directory or the lock's file was deleted or moved; null once the hold has ended.
   */
  readonly lost: AbortSignal | null
  release(): void
}

// The loss signals of a Lock, for its Holds (set in Lock's static block).
let lossOf: (lock: Lock) => LossSignals

// How a Lock is acquired, for acquire.ts's helper (set in Lock's static block, which alone can
// reach the native handle).
let kind: LockKind<Lock>

/**
 * For the `proclock run` command only (not part of the public API): the descriptor whose
 * lifetime keeps `lock`'s current hold (the core's `hold_descriptor`), or null when it holds
 * nothing or on Windows. Set by Lock's static block, which alone can reach the native handle.
 */
export let holdDescriptor!: (lock: Lock) => number | null

/**
 * A handle on the lock `name`: every process or thread that opens the same name (in the same lock
 * directory) gets the same lock. A hold does not end when its Lock object is garbage-collected:
 * it lasts until release, close, or the end of its process or worker.
 */
export class Lock implements Disposable, AsyncDisposable {
  readonly name: string
  readonly backend: Backend
  readonly #native: NativeLock
  // The hot path: plain Node-API functions bound to the native handle (see fast_path.rs).
  readonly #try: () => boolean
  readonly #tryDescribed: (description: string) => boolean
  readonly #tryUncontended: (description?: string) => boolean
  readonly #release: () => void
  #loss: LossSignals | null = null

  static {
    holdDescriptor = (lock) => lock.#native.holdDescriptor()
    kind = {
      // A single try with the liveness probe, so a dead holder's lock is taken over.
      tryOnce: (lock, description) => (description === undefined ? lock.#try() : lock.#tryDescribed(description)),
      // The first step of a wait: a free lock is taken on the calling thread; anything else
      // (including a dead holder) is left to the wait, which probes.
      tryFree: (lock, description) => (description === undefined ? lock.#tryUncontended() : lock.#tryUncontended(description)),
      wait: (lock, timeout, description) => lock.#native.acquireAsync(timeout, description),
      waitSync: (lock, timeout, description) => void lock.#native.acquireSync(timeout, description),
      cancel: (lock) => lock.#native.cancel(),
      giveBack: (lock) => lock.#native.giveBack(),
      observer: {
        waiting: (lock, timeout) => diagnostics.waiting(lock, timeout),
        timedOut: (lock, timeout) => diagnostics.timedOut(lock, timeout),
        acquired: (lock, waitedMs) => lock.#announce(waitedMs),
      },
    }
  }

  constructor(name: string, options?: LockOptions) {
    this.name = checkName(name)
    const o = checkLockOptions(options)
    this.backend = o.backend
    this.#native = native(() => new NativeLock(this.name, o.backend, o.dir, o.reentrant, o.description))
    const fast = this.#native.fastPath()
    this.#try = fast.tryAcquire
    this.#tryDescribed = fast.tryAcquireDescribed
    this.#tryUncontended = fast.tryUncontended
    this.#release = fast.release
    if (diagnostics.lostObserved()) (this.#loss = new LossSignals(this, this.#native)).watch()
  }

  /** This handle's owner UUID (what other processes see as `owner().uuid`). */
  get uuid(): string {
    return this.#native.uuid
  }

  /** This handle holds the lock now. */
  get held(): boolean {
    return this.#native.held
  }

  /** Fencing token of the current hold, or null. Strictly increases with every acquisition of this lock. */
  get token(): bigint | null {
    return this.#native.token()
  }

  /** The current hold was taken over from a holder that died holding the lock. */
  get ownerDied(): boolean {
    return this.#native.ownerDied
  }

  /**
   * An AbortSignal for the current hold (null when not holding), aborted with a LockLostError as
   * its `reason` if the hold stops being exclusive: the lock directory (or this lock's file in it)
   * was deleted or moved while in use, so new processes take the same name elsewhere. After that
   * `held` is false, `release()` and every acquisition throw LockLostError, and only `close()`
   * works. Read after the loss, it is the (aborted) signal of the hold that was lost.
   */
  get lost(): AbortSignal | null {
    return (this.#loss ??= new LossSignals(this, this.#native)).signal(this.#native.token())
  }

  /** Take the lock if it is free (or its holder is dead); never waits. */
  tryAcquire(options?: { description?: string }): boolean {
    const description = options === undefined ? undefined : checkTryOptions(options)
    try {
      const got = description === undefined ? this.#try() : this.#tryDescribed(description)
      if (got && diagnostics.observed()) this.#announce(0)
      return got
    } catch (error) {
      throw fromNative(error)
    }
  }

  /** Wait for the lock on the calling thread (blocks it). */
  acquireSync(options?: AcquireOptions): void {
    acquireSync(kind, this, options)
  }

  /** Wait for the lock without blocking the event loop or the libuv pool. */
  acquire(options?: AcquireOptions): Promise<void> {
    return acquire(kind, this, options)
  }

  /** Release the lock (or one level of a reentrant hold). Throws LockNotHeldError if not held. */
  release(): void {
    if (diagnostics.observed()) return this.#releaseObserved()
    try {
      this.#release()
    } catch (error) {
      throw fromNative(error)
    }
  }

  /** Acquire and return a Hold for `await using`. */
  async hold(options?: AcquireOptions): Promise<Hold> {
    await this.acquire(options)
    return new LockHold(this)
  }

  /** Acquire on the calling thread and return a Hold for `using`. */
  holdSync(options?: AcquireOptions): Hold {
    this.acquireSync(options)
    return new LockHold(this)
  }

  /** Run `fn` while holding the lock; released when `fn` settles. */
  async run<T>(fn: () => T | Promise<T>, options?: AcquireOptions): Promise<T> {
    checkFunction(fn, 'fn')
    await this.acquire(options)
    let result: T
    try {
      result = await fn()
    } catch (error) {
      if (this.held) this.release()
      throw error
    }
    this.release()
    return result
  }

  /** Held by anyone (this handle included) whose process is alive, now. */
  isLocked(): boolean {
    return native(() => this.#native.isLocked())
  }

  /** The current holder, or null if the lock is free. */
  owner(): OwnerInfo | null {
    // The native object has exactly OwnerInfo's fields.
    return native(() => this.#native.owner())
  }

  /** Release if held, reject a pending acquire with LockClosedError; idempotent. */
  close(): void {
    const token = diagnostics.observed() && this.#native.held ? this.#native.token() : null
    this.#native.close()
    if (token !== null) diagnostics.released(this, token)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  // Diagnostics (diagnostics.ts): only ever called when someone listens.
  #announce(waitedMs: number): void {
    if (diagnostics.lostObserved()) (this.#loss ??= new LossSignals(this, this.#native)).watch()
    diagnostics.acquired(this, this.#native.token() ?? 0n, this.#native.ownerDied, waitedMs)
  }

  static {
    lossOf = (lock) => (lock.#loss ??= new LossSignals(lock, lock.#native))
  }

  #releaseObserved(): void {
    const token = this.#native.token()
    try {
      this.#release()
    } catch (error) {
      throw fromNative(error)
    }
    // A reentrant hold is released by its last release() only.
    if (token !== null && !this.#native.held) diagnostics.released(this, token)
  }
}

/**
 * One acquisition. It may end only itself: its lock may since have been released (or closed)
 * and acquired again, and disposing this Hold then must not end that later acquisition (the
 * README promises disposal after the end "does nothing"). An acquisition is told apart by its
 * fencing token, which the core makes strictly larger for every acquisition of the lock. Nested
 * holds of a reentrant lock share one acquisition (one token): each ends one level of it, as
 * `release()` does.
 */
class LockHold implements Hold {
  readonly token: bigint
  readonly ownerDied: boolean
  #lock: Lock | null

  constructor(lock: Lock) {
    this.#lock = lock
    this.token = lock.token ?? 0n
    this.ownerDied = lock.ownerDied
  }

  get lost(): AbortSignal | null {
    const lock = this.#lock
    if (lock === null) return null
    const signal = lock.lost
    // The lock's current (or lost) hold must be this one, not a later acquisition of the lock.
    return signal !== null && (lock.token === this.token || lossOf(lock).lostHold(this.token)) ? signal : null
  }

  /** This hold's acquisition is still the lock's current one. */
  #current(lock: Lock): boolean {
    return lock.held && lock.token === this.token
  }

  release(): void {
    const lock = this.#lock
    this.#lock = null
    if (lock === null) throw new LockNotHeldError('this hold was already released')
    if (!this.#current(lock)) {
      // A hold that was lost (not released) says so: LockLostError, from the lock itself.
      if (lossOf(lock).lostHold(this.token)) lock.release()
      throw new LockNotHeldError('this hold has already ended (its lock was released or closed)')
    }
    lock.release()
  }

  [Symbol.dispose](): void {
    // Disposal after the hold already ended (released, or the lock closed, even if the lock
    // has been acquired again since) is a no-op. A hold that was lost is not: leaving a
    // `using` block must not hide that the work in it may not have been exclusive, so it
    // throws LockLostError, as release() does.
    const lock = this.#lock
    this.#lock = null
    if (lock !== null && (this.#current(lock) || lossOf(lock).lostHold(this.token))) lock.release()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this[Symbol.dispose]()
  }
}

/** Open the lock `name`, run `fn` while holding it, release and close. */
export async function withLock<T>(name: string, fn: () => T | Promise<T>, options?: LockOptions & AcquireOptions): Promise<T> {
  checkFunction(fn, 'fn')
  const lock = new Lock(name, options)
  try {
    return await lock.run(fn, options)
  } finally {
    lock.close()
  }
}
