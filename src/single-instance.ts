// singleInstance(): at most one process per name, held until the process exits.

import { createHash } from 'node:crypto'
import { realpathSync, writeSync } from 'node:fs'
import { basename, resolve } from 'node:path'

import { AlreadyRunningError, invalidArgType, invalidArgValue } from './errors'
import { MAX_NAME_BYTES } from './limits'
import { Lock } from './lock'
import { checkName } from './validate'

export interface SingleInstanceOptions {
  /** 'exit' (default): print the conflict to stderr and exit with code 1. 'throw': throw AlreadyRunningError. */
  onConflict?: 'exit' | 'throw'
  /** Lock directory (namespace). Default: $PROCLOCK_DIR, else the per-user lock directory. */
  dir?: string
}

// The primary's lock, referenced for the life of the process (a hold never ends by garbage
// collection anyway; this only keeps `singleInstance()`'s return value optional to keep).
const primaries = new Set<Lock>()

/**
 * The name of "this program": the main module's real path (the executable in Electron, whose
 * argv[1] is not a script), as exclusiveprocess uses its caller's file. Not `argv[1]` as typed:
 * `node app`, `node app.js`, `node ./app.js` and a symlink to it start one program, and must
 * get one name. A path longer than a lock name may be is shortened to its base name plus a
 * hash of the whole.
 */
function defaultName(): string {
  const path = realPath(mainModule())
  if (Buffer.byteLength(path) <= MAX_NAME_BYTES) return path
  const hash = createHash('sha256').update(path).digest('hex').slice(0, 32)
  return `${utf8Prefix(basename(path), 100)}#${hash}`
}

/** The longest prefix of `text` of at most `max` UTF-8 bytes that ends on a whole character. */
function utf8Prefix(text: string, max: number): string {
  let out = ''
  let bytes = 0
  for (const ch of text) {
    bytes += Buffer.byteLength(ch)
    if (bytes > max) break
    out += ch
  }
  return out
}

/** The file Node ran as the main module. */
function mainModule(): string {
  if (process.versions.electron !== undefined) return process.execPath
  // A CommonJS main module: Node records the file it resolved.
  const main = require.main?.filename
  if (main !== undefined) return main
  const typed = process.argv[1]
  if (typed === undefined) return process.execPath
  // An ES module main (no require.main): resolve argv[1] as Node resolved the entry point,
  // the file as named, else with the extensions it tries (`node app` runs app.js).
  const absolute = resolve(typed)
  try {
    return require.resolve(absolute)
  } catch {
    return absolute
  }
}

function realPath(path: string): string {
  try {
    return realpathSync(path)
  } catch {
    return path
  }
}

/** The primary's pid, read from the lock file. It may be a moment before the winner has written it. */
function primaryPid(lock: Lock): number {
  const nap = new Int32Array(new SharedArrayBuffer(4))
  for (let i = 0; i < 50; i++) {
    const owner = lock.owner()
    if (owner !== null && owner.pid !== 0) return owner.pid
    Atomics.wait(nap, 0, 0, 2)
  }
  return 0
}

/**
 * Make this process the only one running under `name` (default: the main script's path) on this
 * machine, until it exits. Returns the held Lock (file backend: the kernel releases it when the
 * process dies in any way, so a crashed primary never blocks the next start).
 *
 * On conflict, with `onConflict: 'exit'` (the default), prints
 * `Another '<name>' process is already running (pid <pid>).` to stderr and exits with code 1;
 * with `'throw'`, throws AlreadyRunningError (code 'EALREADYRUNNING', `.pid`).
 */
export function singleInstance(name?: string, options?: SingleInstanceOptions): Lock {
  const lockName = name === undefined ? defaultName() : checkName(name)
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw invalidArgType('options', 'of type object', options)
  }
  const { onConflict = 'exit', dir } = options ?? {}
  if (onConflict !== 'exit' && onConflict !== 'throw') {
    throw invalidArgValue('options.onConflict', `must be 'exit' or 'throw'. Received ${String(onConflict)}`)
  }
  const lock = new Lock(lockName, { backend: 'file', dir, description: `singleInstance (pid ${process.pid})` })
  if (lock.tryAcquire()) {
    primaries.add(lock)
    return lock
  }
  const pid = primaryPid(lock)
  lock.close()
  const message = `Another '${lockName}' process is already running (pid ${pid}).`
  if (onConflict === 'throw') throw new AlreadyRunningError(message, pid)
  // Written synchronously: process.exit() does not wait for a piped stderr to drain.
  writeSync(2, `${message}\n`)
  process.exit(1)
}
