// inspect, list and forceRelease: looking at locks from outside, and the operator's forced
// release. Argument checking and translation only; the core does the work (inspect.rs).

import { forceRelease as nativeForceRelease, inspectLock, listLocks, type NativeLockState } from './binding.cjs'
import { debug } from './diagnostics'
import type { OwnerInfo } from './lock'
import { native } from './native'
import { checkListOptions, checkLockOptions, checkName, type LockOptions } from './validate'

/** A lock as seen from outside: `locked` is "held by a live holder"; `owner` may be a dead holder not yet taken over (`alive: false`). */
export interface LockState {
  name: string
  locked: boolean
  owner: OwnerInfo | null
}

function state(s: NativeLockState): LockState {
  const o = s.owner
  // Keys in the documented order (they become `state --json` and `list --json`).
  return {
    name: s.name,
    locked: s.locked,
    owner: o ? { pid: o.pid, uuid: o.uuid, description: o.description, since: o.since, token: o.token, alive: o.alive } : null,
  }
}

/**
 * The state of lock `name` without taking it. A name never used is free
 * (`{ name, locked: false, owner: null }`); nothing is created, not even the lock directory.
 */
export function inspect(name: string, options?: LockOptions): LockState {
  checkName(name)
  const o = checkLockOptions(options)
  return state(native(() => inspectLock(o.backend, name, o.dir)))
}

/** A directory entry named like a lock file that `list` left out, and why. */
export interface SkippedEntry {
  entry: string
  why: string
}

/**
 * `list`, and the entries it left out (for `proclock list`, which shows them on stderr; not
 * part of the public API).
 */
export function listWithSkipped(options?: { dir?: string }): { locks: LockState[]; skipped: SkippedEntry[] } {
  const o = checkListOptions(options)
  const listing = native(() => listLocks(o.dir))
  return { locks: listing.locks.map(state), skipped: listing.skipped }
}

/**
 * Every lock in the lock directory (every name ever opened there), with its holder, sorted by
 * name. Stray entries named like lock files (a directory, a FIFO, a symlink, a file that is not
 * private or has other hard links) are left out; `NODE_DEBUG=proclock` logs each with why.
 */
export function list(options?: { dir?: string }): LockState[] {
  const { locks, skipped } = listWithSkipped(options)
  for (const s of skipped) debug('list: skipped %j: %s', s.entry, s.why)
  return locks
}

/**
 * Dangerous: end the current hold of lock `name`, whoever holds it, as if its holder had died.
 * Returns true if a hold was ended, false if the lock was not held. The old holder, if alive,
 * is not told: it carries on as if it held the lock, until its next `release()` throws
 * `LockNotHeldError`. The next acquirer sees `ownerDied === true` and gets a larger token than
 * the old holder's, so a resource that checks fencing tokens refuses the old holder's writes.
 * Blocks for about 10 ms while it makes sure the holder has finished acquiring (at most 1 s, for
 * a holder stopped in the middle of acquiring; see the README).
 */
export function forceRelease(name: string, options?: LockOptions): boolean {
  checkName(name)
  const o = checkLockOptions(options)
  const released = native(() => nativeForceRelease(o.backend, name, o.dir))
  debug('forceRelease %j: %s', name, released ? 'a hold was ended' : 'it was not held')
  return released
}
