// Calling the native side, for every module of the facade (not part of the public API): a native
// failure becomes the matching public error class, and a native acquisition's promise is settled
// with the AbortSignal rules. Kept apart from the lock kinds so that none of them is a utility
// module for the others.

import type { NativeFailure } from './binding.cjs'
import { abortError, fromNative, LockClosedError } from './errors'

/**
 * Run a native call, turning what it throws (an Error whose `code` is the core's) into the public
 * error class for that code. The hot path (tryAcquire/release) inlines the same try/catch rather
 * than pay for a closure per call.
 */
export function native<T>(call: () => T): T {
  try {
    return call()
  } catch (error) {
    throw fromNative(error)
  }
}

/**
 * Wait for a native acquisition to settle, cancelling it if `signal` aborts. The native promise
 * resolves with a number when the lock was granted and with a NativeFailure (never a rejection)
 * otherwise. An abort that races the grant gives the hold back (`giveBack`, which keeps a
 * takeover from a dead holder visible to the next holder as `ownerDied`): an aborted acquisition
 * leaves nothing held, and nothing announced, since the caller never had the lock.
 */
export async function settle(
  pending: Promise<number | NativeFailure>,
  signal: AbortSignal | undefined,
  cancel: () => void,
  giveBack: () => void,
): Promise<void> {
  const onAbort = (): void => cancel()
  signal?.addEventListener('abort', onAbort, { once: true })
  let outcome: number | NativeFailure
  try {
    outcome = await pending
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
  if (typeof outcome === 'number') {
    if (signal?.aborted) {
      native(giveBack)
      throw abortError(signal)
    }
    return
  }
  if (outcome.code === 'ELOCKCANCELLED') {
    // Cancelled by our abort listener, or by close() from anywhere.
    if (signal?.aborted) throw abortError(signal)
    throw new LockClosedError('the lock handle was closed while waiting')
  }
  throw fromNative(outcome)
}
