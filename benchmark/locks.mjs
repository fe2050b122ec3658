// Every lock the benchmark measures, in one list, each called the fastest way it allows.
//
// The rule, for every row: where a library has a non-blocking try, its acquire tries first on
// the calling thread and only then waits (`tryLock(fd) || await waitForLock(fd)`), because
// proclock's `acquire()` and `acquireSync()` do exactly that; a row that waits at once (always a
// thread hop for an asynchronous peer) would compare a different call shape. Releases use the
// library's synchronous unlock where it has one (an unlock never waits). Polling libraries get
// the shortest poll that is still a wait. Each contestant's `how` says how it is called, and the
// tables print it.
//
// A contestant is one library used in one way (synchronously or asynchronously). It says how to
// open a lock by key in the current process and, for each workload it cannot do, why not: the
// tables then show "n/a" with that reason instead of a number. The parent (run.mjs) and the
// child processes (child.mjs) both read this list, so a workload in a child opens exactly the
// lock the parent asked for.
//
// Contestants with `python` run in Python processes (py_child.py, the run_perf workload only),
// with the virtual environment setup.mjs makes.
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

// The spin of the spinning floor variant: how many times a contender re-reads the word before
// it sleeps (bare-futex/src/lib.rs). 100 re-reads with a pause between them take a few
// microseconds on current x86 and ARM cores, about as long as the run_perf critical section
// (a read and a write system call): long enough for a holder on another core to let go, short
// enough that a contender whose holder is descheduled soon gives up and sleeps.
export const FLOOR_SPIN = 100

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

/**
 * A peer's non-blocking try as a boolean: `attempt` takes the lock or throws (fs-ext's
 * `flockSync(fd, 'exnb')`, proper-lockfile's and lockfile's `lockSync`).
 */
function tryBy(attempt) {
  return () => {
    try {
      attempt()
      return true
    } catch {
      return false
    }
  }
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
    how: mode === 'sync' ? '`acquireSync()` (tries on the JS thread, then waits); `release()`' : '`await acquire()` (tries on the JS thread, then waits on a thread); `release()`',
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

const CONTENDED = ['run_perf', 'run_perf_warm', 'handoff', 'scaling']

/**
 * The floor, Drepper's futex mutex (bare-futex), in four forms: synchronous (`lock()`, the JS
 * thread sleeps in the futex) or asynchronous (`await lockAsync()`: tries on the JS thread, else
 * a waiter thread sleeps and settles the promise through a thread-safe function), each without
 * and with a bounded spin before sleeping. Every row is compared with the better of the two of
 * its own mode, trial by trial. The spinning forms only take part where there is contention to
 * spin on, and the uncontended rows are the same code for both.
 */
function floor(mode, spin) {
  const sync = mode === 'sync'
  return {
    id: `floor${sync ? '' : '-async'}${spin ? '-spin' : ''}`,
    label: `bare futex ${sync ? 'lock' : 'await lockAsync'}${spin ? `, spin ${spin}` : ''} (${sync ? '' : 'async '}floor)`,
    library: 'bare futex (floor)',
    family: 'floor',
    mode,
    spin,
    uncontendedLabel: sync ? 'tryLock + unlock' : 'await lockAsync + unlock',
    how: `${sync ? '`lock()`: CAS, then' : '`await lockAsync()`: CAS on the JS thread, then on a waiter thread'}${spin ? ` up to ${spin} re-reads,` : ''} mark and \`FUTEX_WAIT\`${sync ? '' : ', settled through a thread-safe function'}; \`unlock()\``,
    only: spin ? CONTENDED : [...CONTENDED, ...(sync ? ['uncontended_sync', 'many', 'recovery'] : ['uncontended_async'])],
    na: { recovery: NO_CRASH_RECOVERY },
    available: () => (process.platform === 'linux' ? true : 'Linux only (it is a futex)'),
    open(key, ctx) {
      const l = bare().openBareLock(join(ctx.scratch, `bare-${key.replace(/[^\w.-]/g, '_')}`), spin)
      if (sync) return { try: l.tryLock, acquire: l.lock, release: l.unlock, direct: { raw: l, pair: "if (!l.tryLock()) throw new Error('busy'); l.unlock()" } }
      return { acquire: l.lockAsync, release: l.unlock, direct: { raw: l, pair: 'await l.lockAsync(); l.unlock()' } }
    },
  }
}

/**
 * A Python lock (py_child.py says how each is called), in the run_perf workload only: the
 * seeds of the comparison (shmlock) and its Python peers.
 */
function python(kind, how) {
  return {
    id: `py-${kind}`,
    label: `${kind} (Python)`,
    library: `${kind} (Python)`,
    family: 'peer',
    mode: 'sync',
    python: kind,
    how,
    only: ['run_perf'],
    async available() {
      if (process.platform === 'win32') return 'POSIX only (py_child.py uses os.pread and os.pwrite)'
      const { pythonStatus } = await import('./setup.mjs')
      const status = pythonStatus()
      return status.python ? true : `skipped: ${status.skip}`
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
    only: ['run_perf', 'run_perf_warm'],
    how: 'no lock at all: shows that the workload races',
    open: () => ({ try: () => true, acquire() {}, release() {} }),
  },
  floor('sync', 0),
  floor('sync', FLOOR_SPIN),
  floor('async', 0),
  floor('async', FLOOR_SPIN),
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
    how: "`flockSync(fd, 'exnb')`, if refused `flockSync(fd, 'ex')`; `flockSync(fd, 'un')`",
    open(key, ctx) {
      const fd = openFd(ctx, key)
      const f = fsExt()
      const tryLock = tryBy(() => f.flockSync(fd, 'exnb'))
      return {
        try: tryLock,
        acquire: () => tryLock() || f.flockSync(fd, 'ex'),
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
    uncontendedLabel: "flockSync('exnb') || await flock('ex'), flockSync('un')",
    how: "`flockSync(fd, 'exnb')`, if refused `await` the callback `flock(fd, 'ex')` (promisified); `flockSync(fd, 'un')`",
    open(key, ctx) {
      const fd = openFd(ctx, key)
      const f = fsExt()
      const flock = promisify(f.flock)
      const tryLock = tryBy(() => f.flockSync(fd, 'exnb'))
      return {
        acquire: () => tryLock() || flock(fd, 'ex'),
        release: () => f.flockSync(fd, 'un'),
        direct: { raw: { flock, tryLock, f, fd }, pair: "l.tryLock() || (await l.flock(l.fd, 'ex')); l.f.flockSync(l.fd, 'un')" },
      }
    },
  },
  {
    id: 'fsx-sync',
    label: 'fs-native-extensions waitForLockSync',
    library: 'fs-native-extensions',
    family: 'peer',
    mode: 'sync',
    uncontendedLabel: 'tryLock + unlock',
    how: '`tryLock(fd) || waitForLockSync(fd)`; `unlock(fd)`',
    open(key, ctx) {
      const fd = openFd(ctx, key)
      const x = fsx()
      return {
        try: () => x.tryLock(fd),
        acquire: () => x.tryLock(fd) || x.waitForLockSync(fd),
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
    uncontendedLabel: 'tryLock || await waitForLock, unlock',
    how: '`tryLock(fd) || await waitForLock(fd)`; `unlock(fd)`',
    open(key, ctx) {
      const fd = openFd(ctx, key)
      const x = fsx()
      return { acquire: () => x.tryLock(fd) || x.waitForLock(fd), release: () => x.unlock(fd), direct: { raw: { x, fd }, pair: 'l.x.tryLock(l.fd) || (await l.x.waitForLock(l.fd)); l.x.unlock(l.fd)' } }
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
    how: '`await lock(fd, { exclusive: true })`; `await unlock(fd)` (no synchronous call at all, so no try on the JS thread: its `immediate` try is a thread hop too)',
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
    how: '`lockSync(file)`; its `release()`',
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
    uncontendedLabel: 'lockSync (try) || await lock, unlockSync',
    how: '`lockSync(file)`, if refused `await lock(file, { retries: { forever, 1-10 ms } })`; `unlockSync(file)`',
    stale: true,
    // How its users wait: retries with back-off. `forever: true` (not a large count, which
    // makes every lock() precompute a huge timeout table); 1 to 10 ms between tries. The
    // synchronous lockSync (no retries) is its try on the JS thread.
    open(key, ctx) {
      const file = lockFile(ctx, key)
      const base = { realpath: false, ...(ctx.stale ? { stale: ctx.stale } : {}) }
      const opts = { ...base, retries: { forever: true, minTimeout: 1, maxTimeout: 10 } }
      const p = properLockfile()
      const tryLock = tryBy(() => p.lockSync(file, base))
      return {
        acquire: () => tryLock() || p.lock(file, opts),
        release: () => p.unlockSync(file, base),
        direct: { raw: { p, tryLock, file, opts, base }, pair: 'l.tryLock() || (await l.p.lock(l.file, l.opts)); l.p.unlockSync(l.file, l.base)' },
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
    how: '`lockSync(file)`; `unlockSync(file)`',
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
    uncontendedLabel: 'lockSync (try) || await lock, unlockSync',
    how: '`lockSync(file)`, if refused `await lock(file, { wait, pollPeriod: 1 })` (promisified); `unlockSync(file)`',
    stale: true,
    // How its users wait: `wait` with polling. The default poll is 100 ms; 1 ms is its best case.
    // The synchronous lockSync is its try on the JS thread.
    open(key, ctx) {
      const file = `${lockFile(ctx, key)}.lock`
      const base = ctx.stale ? { stale: ctx.stale } : {}
      const opts = { wait: 1e9, pollPeriod: 1, ...base }
      const lf = lockfile()
      const lock = promisify(lf.lock)
      const tryLock = tryBy(() => lf.lockSync(file, base))
      return {
        acquire: () => tryLock() || lock(file, opts),
        release: () => lf.unlockSync(file),
        direct: { raw: { lock, tryLock, lf, file, opts }, pair: 'l.tryLock() || (await l.lock(l.file, l.opts)); l.lf.unlockSync(l.file)' },
      }
    },
  },
  python('portalocker', '`lock(f, LOCK_EX | LOCK_NB)`, if refused `lock(f, LOCK_EX)` (a kernel `flock` wait); `unlock(f)`'),
  python('fasteners', '`InterProcessLock.acquire(delay=0.001, max_delay=0.001)` (tries, then polls every 1 ms); `release()`'),
  python('filelock', '`FileLock.acquire(poll_interval=0.001)` (tries, then polls every 1 ms); `release()`'),
  python('shmlock', "`ShmLock(name, poll_interval=0.001).acquire()` (tries, then polls every 1 ms), kept out of Python's resource tracker as its run_perf does; `release()`"),
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
  if (workload === 'run_perf_warm') workload = 'run_perf'
  if (workload === 'uncontended_sync' && c.mode !== 'sync') return false
  if (workload === 'uncontended_async' && c.mode !== 'async') return false
  if (c.na?.all) return c.na.all
  if (c.na?.[workload]) return c.na[workload]
  const contended = ['run_perf', 'handoff', 'scaling', 'recovery'].includes(workload)
  if (contended && c.na?.contended) return c.na.contended
  return null
}

export const LOCKFILE_STALE_NOTE = LOCKFILE_STALE
