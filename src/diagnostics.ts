// Observing locks with Node's own tools: `NODE_DEBUG=proclock` (util.debuglog) and
// diagnostics_channel. Nothing here runs unless someone listens: every call site first checks
// `observed()` (a constant and three `hasSubscribers` getters), so the uncontended
// tryAcquire/release pair costs what it cost without diagnostics.

import diagnosticsChannel from 'node:diagnostics_channel'
import { debuglog } from 'node:util'

import type { Lock } from './lock'
import type { RwLock } from './rw-lock'

/** `proclock:acquired`: a Lock took the lock (by tryAcquire, acquire, acquireSync, hold, run...). */
export interface AcquiredMessage {
  lock: Lock
  name: string
  /** Fencing token of the new hold. */
  token: bigint
  /** Taken over from a holder that died holding it (or whose hold was forcibly released). */
  ownerDied: boolean
  /** Milliseconds from the call to the acquisition (0 for tryAcquire and an uncontended acquire). */
  waitedMs: number
}

/** `proclock:released`: a Lock released the lock (the last release of a reentrant hold). */
export interface ReleasedMessage {
  lock: Lock
  name: string
  /** Token of the hold that ended. */
  token: bigint
}

/** `proclock:owner-died`: published with `proclock:acquired` when the new hold was taken over. */
export interface OwnerDiedMessage {
  lock: Lock
  name: string
  token: bigint
}

/** `proclock:timeout`: acquire or acquireSync gave up because its timeout passed. */
export interface TimeoutMessage {
  lock: Lock
  name: string
  /** The timeout that passed, in milliseconds. */
  timeout: number
}

/**
 * `proclock:lost`: a hold is no longer exclusive because its lock directory (or the lock's file)
 * was deleted or moved while in use (the hold's `lost` signal fires with it).
 */
export interface LostMessage {
  lock: Lock | RwLock
  name: string
  /** Token of the hold that was lost (0n for an RwLock read hold). */
  token: bigint
}

export const channels = {
  acquired: diagnosticsChannel.channel('proclock:acquired'),
  released: diagnosticsChannel.channel('proclock:released'),
  ownerDied: diagnosticsChannel.channel('proclock:owner-died'),
  timeout: diagnosticsChannel.channel('proclock:timeout'),
  lost: diagnosticsChannel.channel('proclock:lost'),
} as const

/** `NODE_DEBUG=proclock` (read once, at load, as Node itself does). */
export const debug = debuglog('proclock')
const debugging = debug.enabled

const { acquired: acquiredCh, released: releasedCh, ownerDied: ownerDiedCh, timeout: timeoutCh, lost: lostCh } = channels

/** Someone wants acquisition and release events (the check on the hot path). */
export function observed(): boolean {
  return debugging || acquiredCh.hasSubscribers || releasedCh.hasSubscribers || ownerDiedCh.hasSubscribers
}

/** Someone wants timeout events. */
export function timeoutObserved(): boolean {
  return debugging || timeoutCh.hasSubscribers
}

/**
 * Someone wants loss events. Checked when a Lock is created, and where `observed()` was already
 * true, never on the quiet hot path (a fifth getter in `observed()` measurably cost the
 * uncontended pair): a Lock then asks its native handle for a loss notice. So `proclock:lost`
 * reports the holds of Locks created while someone listened (or acquired while another channel
 * was listened to), and of any hold whose `lost` signal was read.
 */
export function lostObserved(): boolean {
  return debugging || lostCh.hasSubscribers
}

/** Wait-start logging (debuglog only). */
export function waiting(lock: Lock, timeout: number): void {
  if (debugging) debug('waiting for %j (timeout %s ms)', lock.name, timeout)
}

// The hold each Lock was last announced for: a reentrant lock's nested acquisitions return the
// same token and are not new holds. Weak, so diagnostics never keep a Lock alive.
const announced = new WeakMap<Lock, bigint>()

export function acquired(lock: Lock, token: bigint, ownerDied: boolean, waitedMs: number): void {
  if (announced.get(lock) === token) return
  announced.set(lock, token)
  if (debugging) debug('acquired %j token=%s ownerDied=%s waited=%sms', lock.name, String(token), ownerDied, waitedMs.toFixed(1))
  if (acquiredCh.hasSubscribers) acquiredCh.publish({ lock, name: lock.name, token, ownerDied, waitedMs } satisfies AcquiredMessage)
  if (ownerDied) {
    if (debugging) debug('owner died: %j was taken over from a holder that did not release it, token=%s', lock.name, String(token))
    if (ownerDiedCh.hasSubscribers) ownerDiedCh.publish({ lock, name: lock.name, token } satisfies OwnerDiedMessage)
  }
}

export function released(lock: Lock, token: bigint): void {
  announced.delete(lock)
  if (debugging) debug('released %j token=%s', lock.name, String(token))
  if (releasedCh.hasSubscribers) releasedCh.publish({ lock, name: lock.name, token } satisfies ReleasedMessage)
}

export function timedOut(lock: Lock, timeout: number): void {
  if (debugging) debug('timeout: %j not acquired within %s ms', lock.name, timeout)
  if (timeoutCh.hasSubscribers) timeoutCh.publish({ lock, name: lock.name, timeout } satisfies TimeoutMessage)
}

export function lost(lock: Lock | RwLock, token: bigint): void {
  if (debugging) debug('lost: %j token=%s is no longer exclusive (its lock directory or lock file was deleted or moved)', lock.name, String(token))
  if (lostCh.hasSubscribers) lostCh.publish({ lock, name: lock.name, token } satisfies LostMessage)
}
