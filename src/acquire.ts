// Waiting for a lock, the same way for every lock kind (not part of the public API): Lock, each
// mode of RwLock, and any kind added later. The steps, in order:
//
//   1. Check the options, and refuse at once if the signal is already aborted: an acquisition
//      that was cancelled before it began must not take the lock, even for a moment.
//   2. `timeout: 0` is one try on the calling thread, with the liveness probe (so a dead
//      holder's lock is taken over): "no wait" must not mean a trip to the waiter pool.
//   3. Otherwise a free lock is taken on the calling thread (kinds that have such a step), and
//      only then does the native wait start, on the core's waiter pool (never the libuv pool,
//      which a few waiters would exhaust) or on the calling thread for the Sync forms.
//   4. The wait is settled with the AbortSignal rules (native.ts's `settle`): an abort that
//      races the grant gives the hold back, and the acquisition fails with an AbortError.
//   5. Diagnostics hooks, for the kinds that publish events, at the moments they describe.
//
// A kind gives only what differs: how to try, how to start the native wait, how to cancel it and
// how to give back a hold nobody wanted. Each kind's description is one object made once (per
// class, or per mode), whose functions take the handle: nothing is allocated per call before a
// wait begins, which keeps an uncontended `acquire()` as cheap as when each kind had its own copy.

import type { NativeFailure } from './binding.cjs'
import * as diagnostics from './diagnostics'
import { abortError, fromNative, LockTimeoutError } from './errors'
import { settle } from './native'
import { type AcquireOptions, checkAcquireOptions } from './validate'

/**
 * The diagnostics of a kind that publishes acquisition events (diagnostics.ts). Each hook is
 * called only when someone listens for what it publishes.
 */
export interface AcquireObserver<H> {
  /** A wait begins (`timeout` as given). */
  waiting(handle: H, timeout: number): void
  /** The timeout passed without the lock. */
  timedOut(handle: H, timeout: number): void
  /** The lock was taken, `waitedMs` after the call (0 when no wait was needed). */
  acquired(handle: H, waitedMs: number): void
}

/**
 * What one lock kind (or one mode of it) does at each step. Native failures may be thrown as
 * they come: the helper turns them into the public error classes.
 */
export interface LockKind<H> {
  /** One try, that also takes over a dead holder's lock: all of `timeout: 0`. */
  tryOnce(handle: H, description: string | undefined): boolean
  /**
   * The step before a wait, on the calling thread: take the lock if it is free, and leave
   * anything else (a dead holder's lock included) to the wait. null for a kind that leaves every
   * step of a wait to the native side.
   */
  readonly tryFree: ((handle: H, description: string | undefined) => boolean) | null
  /** Start the native wait; its promise resolves (never rejects) with a grant or a NativeFailure. */
  wait(handle: H, timeout: number, description: string | undefined): Promise<number | NativeFailure>
  /** Wait on the calling thread; throws on timeout or failure. */
  waitSync(handle: H, timeout: number, description: string | undefined): void
  /** Cancel the pending wait (it then settles as ELOCKCANCELLED). */
  cancel(handle: H): void
  /** End a hold that was granted after its acquisition was aborted. */
  giveBack(handle: H): void
  /** Diagnostics hooks, or null for a kind that publishes no acquisition events. */
  readonly observer: AcquireObserver<H> | null
}

/** Wait for the lock without blocking the event loop (every kind's `acquire`, `read`, `write`). */
export async function acquire<H>(kind: LockKind<H>, handle: H, options: AcquireOptions | undefined): Promise<void> {
  const { timeout, signal, description } = checkAcquireOptions(options)
  if (signal?.aborted) throw abortError(signal)
  const observer = kind.observer
  if (timeout === 0) {
    let got: boolean
    try {
      got = kind.tryOnce(handle, description)
    } catch (error) {
      throw fromNative(error)
    }
    if (got) {
      if (observer !== null && diagnostics.observed()) observer.acquired(handle, 0)
      return
    }
    if (observer !== null && diagnostics.timeoutObserved()) observer.timedOut(handle, 0)
    throw new LockTimeoutError('timed out after 0 ms waiting for the lock')
  }
  if (takeIfFree(kind, handle, description)) return
  const start = performance.now()
  observer?.waiting(handle, timeout)
  let pending: Promise<number | NativeFailure>
  try {
    pending = kind.wait(handle, timeout, description)
  } catch (error) {
    throw fromNative(error)
  }
  try {
    await settle(
      pending,
      signal,
      () => kind.cancel(handle),
      () => kind.giveBack(handle),
    )
  } catch (error) {
    if (error instanceof LockTimeoutError) timedOut(kind, handle, timeout)
    throw error
  }
  if (observer !== null && diagnostics.observed()) observer.acquired(handle, performance.now() - start)
}

/** Wait for the lock on the calling thread (every kind's `acquireSync`, `readSync`, `writeSync`). */
export function acquireSync<H>(kind: LockKind<H>, handle: H, options: AcquireOptions | undefined): void {
  const { timeout, signal, description } = checkAcquireOptions(options)
  if (signal?.aborted) throw abortError(signal)
  // `timeout: 0` needs no case of its own here: there is no thread hop to save, and the native
  // wait on this thread gives up at once when the lock stays held.
  if (takeIfFree(kind, handle, description)) return
  const start = performance.now()
  const observer = kind.observer
  observer?.waiting(handle, timeout)
  try {
    kind.waitSync(handle, timeout, description)
  } catch (error) {
    const e = fromNative(error)
    if (e instanceof LockTimeoutError) timedOut(kind, handle, timeout)
    throw e
  }
  if (observer !== null && diagnostics.observed()) observer.acquired(handle, performance.now() - start)
}

/** The synchronous first step of a wait (see `LockKind.tryFree`); true if it took the lock. */
function takeIfFree<H>(kind: LockKind<H>, handle: H, description: string | undefined): boolean {
  if (kind.tryFree === null) return false
  let got: boolean
  try {
    got = kind.tryFree(handle, description)
  } catch (error) {
    throw fromNative(error)
  }
  if (got && kind.observer !== null && diagnostics.observed()) kind.observer.acquired(handle, 0)
  return got
}

function timedOut<H>(kind: LockKind<H>, handle: H, timeout: number): void {
  if (kind.observer !== null && diagnostics.timeoutObserved()) kind.observer.timedOut(handle, timeout)
}
