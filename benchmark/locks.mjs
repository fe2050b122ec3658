// Every lock the benchmark measures, in one list, each called the way its users call it.
//
// A contestant is one library used in one way (synchronously or asynchronously). It says how to
// open a lock by key in the current process and, for each workload it cannot do, why not: the
// tables then show "n/a" with that reason instead of a number. The parent (run.mjs) and the
// child processes (child.mjs) both read this list, so a workload in a child opens exactly the
// lock the parent asked for.
//
// `open(key, ctx)` returns:
//   try()      one uncontended attempt (never waits); used by the uncontended workloads
//   acquire()  wait for the lock (blocks for sync contestants, a promise for async ones)
//   release()  let go (may return a promise for async contestants)
//   direct     { raw, pair }: for the uncontended workloads, the statement(s) of one acquire +
//              release pair exactly as a user writes them, over the library's own objects in
//              `raw` (named `l` in `pair`); run.mjs compiles a loop of it for this lock alone
// `ctx` is { scratch, dir, stale? }: a scratch directory for lock files, proclock's lock
// directory, and a staleness setting the recovery workload gives lock-file libraries.
import { mkdirSync, openSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { promisify } from 'node:util'

const require = createRequire(import.meta.url)
const lazy = (id) => {
  let mod
  return () => (mod ??= require(id))
}
const fsExt = lazy('fs-ext')
const fsx = lazy('fs-native-extensions')
const osLock = lazy('os-lock')
const properLockfile = lazy('proper-lockfile')
const lockfile = lazy('lockfile')
const bare = lazy('./build/bare.cjs')

let proclockModule
/** proclock's API, imported once per process. */
export async function loadProclock() {
  proclockModule ??= await import('../dist/index.mjs')
  return proclockModule
}

/** The path of the plain file that file-based peers lock for `key` (created if missing). */
function lockFile(ctx, key) {
  const files = join(ctx.scratch, 'files')
  mkdirSync(files, { recursive: true })
  return join(files, key.replace(/[^\w.-]/g, '_'))
}
function openFd(ctx, key) {
  const fd = openSync(lockFile(ctx, key), 'a+')
  return fd
}

const NO_CRASH_RECOVERY = 'no crash recovery: a holder that dies wedges the lock forever'
const LOCKFILE_STALE =
  'measured with stale: 2000 ms (its holders are judged by file age; a live holder older than that is robbed)'

function proclock(backend, mode) {
  const label = `proclock${backend === 'file' ? ' (file)' : ''} ${mode === 'sync' ? 'acquireSync' : 'await acquire'}`
  return {
    id: `proclock${backend === 'file' ? '-file' : ''}-${mode}`,
    label,
    library: backend === 'file' ? 'proclock (file)' : 'proclock',
    family: 'proclock',
    mode,
    backend,
    uncontendedLabel: mode === 'sync' ? 'tryAcquire + release' : 'await acquire + release',
    // The file backend is being built; its rows appear on their own once `new Lock(name,
    // { backend: 'file' })` works (see available()).
    async available(ctx) {
      if (backend === 'shm') return true
      const { Lock } = await loadProclock()
      try {
        new Lock('benchmark-feature-test', { backend, dir: ctx.dir }).close()
        return true
      } catch (error) {
        return `not available in this build (${error.code ?? error.message})`
      }
    },
    async open(key, ctx) {
      const { Lock } = await loadProclock()
      const lock = new Lock(key, { dir: ctx.dir, backend })
      if (mode === 'sync') {
        return {
          try: () => lock.tryAcquire(),
          acquire: () => lock.acquireSync(),
          release: () => lock.release(),
          direct: { raw: lock, pair: "if (!l.tryAcquire()) throw new Error('busy'); l.release()" },
        }
      }
      return { acquire: () => lock.acquire(), release: () => lock.release(), direct: { raw: lock, pair: 'await l.acquire(); l.release()' } }
    },
  }
}

/** The contestants, in table order: the floor first, then proclock, then the peers. */
export const contestants = [
  {
    id: 'no-lock',
    label: 'no lock',
    library: 'no lock',
    family: 'none',
    mode: 'sync',
    only: ['run_perf'],
    open: () => ({ try: () => true, acquire() {}, release() {} }),
  },
  {
    id: 'floor',
    label: 'bare futex (floor)',
    library: 'bare futex (floor)',
    family: 'floor',
    mode: 'sync',
    uncontendedLabel: 'tryLock + unlock',
    available: () => (process.platform === 'linux' ? true : 'Linux only (it is a futex)'),
    na: { recovery: NO_CRASH_RECOVERY },
    open(key, ctx) {
      const l = bare().openBareLock(join(ctx.scratch, `bare-${key.replace(/[^\w.-]/g, '_')}`))
      return { try: l.tryLock, acquire: l.lock, release: l.unlock, direct: { raw: l, pair: "if (!l.tryLock()) throw new Error('busy'); l.unlock()" } }
    },
  },
  {
    id: 'floor-async',
    label: 'bare futex (floor)',
    library: 'bare futex (floor)',
    family: 'floor',
    mode: 'async',
    only: ['uncontended_async'],
    na: { all: 'no asynchronous API (a few lines of synchronous Rust)' },
  },
  proclock('shm', 'sync'),
  proclock('shm', 'async'),
  proclock('file', 'sync'),
  proclock('file', 'async'),
  {
    id: 'fs-ext-sync',
    label: 'fs-ext flockSync',
    library: 'fs-ext',
    family: 'peer',
    mode: 'sync',
    uncontendedLabel: "flockSync('exnb') + flockSync('un')",
    open(key, ctx) {
      const fd = openFd(ctx, key)
      return {
        try: () => {
          try {
            fsExt().flockSync(fd, 'exnb')
            return true
          } catch {
            return false
          }
        },
        acquire: () => fsExt().flockSync(fd, 'ex'),
        release: () => fsExt().flockSync(fd, 'un'),
        direct: { raw: { f: fsExt(), fd }, pair: "l.f.flockSync(l.fd, 'exnb'); l.f.flockSync(l.fd, 'un')" },
      }
    },
  },
  {
    id: 'fs-ext-async',
    label: 'fs-ext flock (callback)',
    library: 'fs-ext',
    family: 'peer',
    mode: 'async',
    uncontendedLabel: "flock('ex') + flock('un'), promisified",
    open(key, ctx) {
      const fd = openFd(ctx, key)
      const flock = promisify(fsExt().flock)
      return { acquire: () => flock(fd, 'ex'), release: () => flock(fd, 'un'), direct: { raw: { flock, fd }, pair: "await l.flock(l.fd, 'ex'); await l.flock(l.fd, 'un')" } }
    },
  },
  {
    id: 'fsx-sync',
    label: 'fs-native-extensions waitForLockSync',
    library: 'fs-native-extensions',
    family: 'peer',
    mode: 'sync',
    uncontendedLabel: 'tryLock + unlock',
    open(key, ctx) {
      const fd = openFd(ctx, key)
      const x = fsx()
      return {
        try: () => x.tryLock(fd),
        acquire: () => x.waitForLockSync(fd),
        release: () => x.unlock(fd),
        direct: { raw: { x, fd }, pair: "if (!l.x.tryLock(l.fd)) throw new Error('busy'); l.x.unlock(l.fd)" },
      }
    },
  },
  {
    id: 'fsx-async',
    label: 'fs-native-extensions waitForLock',
    library: 'fs-native-extensions',
    family: 'peer',
    mode: 'async',
    uncontendedLabel: 'await waitForLock + unlock',
    open(key, ctx) {
      const fd = openFd(ctx, key)
      const x = fsx()
      return { acquire: () => x.waitForLock(fd), release: () => x.unlock(fd), direct: { raw: { x, fd }, pair: 'await l.x.waitForLock(l.fd); l.x.unlock(l.fd)' } }
    },
  },
  {
    id: 'os-lock-sync',
    label: 'os-lock (sync)',
    library: 'os-lock',
    family: 'peer',
    mode: 'sync',
    only: [],
    na: { all: 'no synchronous API (Promise only)' },
  },
  {
    id: 'os-lock-async',
    label: 'os-lock lock',
    library: 'os-lock',
    family: 'peer',
    mode: 'async',
    uncontendedLabel: 'await lock + await unlock',
    // fcntl record locks belong to the process: two handles in one process never exclude each
    // other, which only the many-locks workload could notice (it never contends).
    open(key, ctx) {
      const fd = openFd(ctx, key)
      const { lock, unlock } = osLock()
      return {
        acquire: () => lock(fd, { exclusive: true }),
        release: () => unlock(fd),
        direct: { raw: { lock, unlock, fd }, pair: 'await l.lock(l.fd, { exclusive: true }); await l.unlock(l.fd)' },
      }
    },
  },
  {
    id: 'proper-lockfile-sync',
    label: 'proper-lockfile lockSync',
    library: 'proper-lockfile',
    family: 'peer',
    mode: 'sync',
    uncontendedLabel: 'lockSync + release',
    na: { contended: "lockSync cannot wait (it rejects retries: 'ESYNC')" },
    open(key, ctx) {
      const file = lockFile(ctx, key)
      const opts = { realpath: false, ...(ctx.stale ? { stale: ctx.stale } : {}) }
      let release = null
      return {
        try: () => {
          try {
            release = properLockfile().lockSync(file, opts)
            return true
          } catch {
            return false
          }
        },
        release: () => release(),
        direct: { raw: { p: properLockfile(), file, opts }, pair: 'l.p.lockSync(l.file, l.opts)()' },
      }
    },
  },
  {
    id: 'proper-lockfile-async',
    label: 'proper-lockfile lock (retries)',
    library: 'proper-lockfile',
    family: 'peer',
    mode: 'async',
    uncontendedLabel: 'await lock + await release',
    stale: true,
    // How its users wait: retries with back-off. `forever: true` (not a large count, which
    // makes every lock() precompute a huge timeout table); 1 to 10 ms between tries.
    open(key, ctx) {
      const file = lockFile(ctx, key)
      const opts = {
        realpath: false,
        retries: { forever: true, minTimeout: 1, maxTimeout: 10 },
        ...(ctx.stale ? { stale: ctx.stale } : {}),
      }
      let release = null
      return {
        acquire: async () => {
          release = await properLockfile().lock(file, opts)
        },
        release: () => release(),
        direct: { raw: { p: properLockfile(), file, opts }, pair: 'const release = await l.p.lock(l.file, l.opts); await release()' },
      }
    },
  },
  {
    id: 'lockfile-sync',
    label: 'lockfile lockSync',
    library: 'lockfile',
    family: 'peer',
    mode: 'sync',
    uncontendedLabel: 'lockSync + unlockSync',
    na: { contended: "lockSync cannot wait ('opts.wait not supported sync')" },
    open(key, ctx) {
      const file = `${lockFile(ctx, key)}.lock`
      const opts = ctx.stale ? { stale: ctx.stale } : {}
      return {
        try: () => {
          try {
            lockfile().lockSync(file, opts)
            return true
          } catch {
            return false
          }
        },
        release: () => lockfile().unlockSync(file),
        direct: { raw: { lf: lockfile(), file, opts }, pair: 'l.lf.lockSync(l.file, l.opts); l.lf.unlockSync(l.file)' },
      }
    },
  },
  {
    id: 'lockfile-async',
    label: 'lockfile lock (wait, 1 ms poll)',
    library: 'lockfile',
    family: 'peer',
    mode: 'async',
    uncontendedLabel: 'lock + unlock, promisified',
    stale: true,
    // How its users wait: `wait` with polling. The default poll is 100 ms; 1 ms is its best case.
    open(key, ctx) {
      const file = `${lockFile(ctx, key)}.lock`
      const opts = { wait: 1e9, pollPeriod: 1, ...(ctx.stale ? { stale: ctx.stale } : {}) }
      const lock = promisify(lockfile().lock)
      const unlock = promisify(lockfile().unlock)
      return { acquire: () => lock(file, opts), release: () => unlock(file), direct: { raw: { lock, unlock, file, opts }, pair: 'await l.lock(l.file, l.opts); await l.unlock(l.file)' } }
    },
  },
]

export const byId = (id) => {
  const c = contestants.find((x) => x.id === id)
  if (!c) throw new Error(`no contestant ${id}`)
  return c
}

/**
 * Whether `c` takes part in `workload`: null if it does, a string (why not; its row says n/a)
 * if it cannot, false if it has no row there at all (a synchronous call in the asynchronous
 * table, and so on).
 */
export function notApplicable(c, workload) {
  if (c.only && !c.only.includes(workload)) return false
  if (workload === 'uncontended_sync' && c.mode !== 'sync') return false
  if (workload === 'uncontended_async' && c.mode !== 'async') return false
  if (c.na?.all) return c.na.all
  if (c.na?.[workload]) return c.na[workload]
  const contended = ['run_perf', 'handoff', 'scaling', 'recovery'].includes(workload)
  if (contended && c.na?.contended) return c.na.contended
  return null
}

export const LOCKFILE_STALE_NOTE = LOCKFILE_STALE
