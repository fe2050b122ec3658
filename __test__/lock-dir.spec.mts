// Where locks live: one default directory per user whatever the environment says, and nobody
// else can take it over silently; a relative `dir` follows chdir; a worker thread's
// PROCLOCK_DIR counts; every ancestor of the lock directory is checked; root refuses system
// directories; and looking at locks writes nothing. Each of these once let two processes hold
// one lock, or wrote where it should not.
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import test from 'ava'
import { inspect, list, Lock, LockPermissionError } from 'proclock'
import { lockDir, start } from './helpers/procs.mjs'

const entry = fileURLToPath(new URL('../../dist/index.js', import.meta.url))
const isRoot = process.getuid?.() === 0
const NOBODY = 65534
const backends = ['shm', 'file'] as const

/** The environment of a child with no lock-directory settings at all, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !['PROCLOCK_DIR', 'XDG_RUNTIME_DIR', 'TMPDIR', 'TMP', 'TEMP'].includes(k)) env[k] = v
  }
  return { ...env, ...extra }
}

/** Run `source` (CommonJS, with `proclock` bound to the package) in a new node process; its stdout parsed as JSON. */
function run(source: string, env: Record<string, string> = cleanEnv(), cwd?: string): unknown {
  const r = spawnSync(process.execPath, ['-e', `const proclock = require(${JSON.stringify(entry)});\n${source}`], { env, cwd, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

/** Start a process that holds `name` (default directory unless `dir`) until killed; resolves once it holds. */
async function holder(name: string, backend: 'shm' | 'file', env: Record<string, string>, dir?: string) {
  const proc = spawn(
    process.execPath,
    [
      '-e',
      `const { Lock } = require(${JSON.stringify(entry)})
       const l = new Lock(${JSON.stringify(name)}, { backend: ${JSON.stringify(backend)}, dir: ${JSON.stringify(dir)} })
       l.acquireSync(); console.log('held'); setInterval(() => {}, 1000)`,
    ],
    { env, stdio: ['ignore', 'pipe', 'inherit'] },
  )
  await new Promise<void>((resolve, reject) => {
    proc.stdout.once('data', () => resolve())
    proc.once('exit', (code) => reject(new Error(`holder exited (${code})`)))
  })
  return proc
}

const TRY = (name: string, backend: string, dir?: string) =>
  `const l = new proclock.Lock(${JSON.stringify(name)}, { backend: ${JSON.stringify(backend)}, dir: ${JSON.stringify(dir)} })
   console.log(JSON.stringify(l.tryAcquire()))`

for (const backend of backends) {
  test(`${backend}: the default directory is the same with and without XDG_RUNTIME_DIR and TMPDIR (cron and a login shell exclude each other)`, async (t) => {
    const name = `default-dir-${backend}-${process.pid}-${Date.now()}`
    const xdg = mkdtempSync(join(tmpdir(), 'proclock-xdg-'))
    chmodSync(xdg, 0o700)
    const otherTmp = mkdtempSync(join(tmpdir(), 'proclock-tmpdir-'))
    // As a login session would run it, and as cron (no XDG_RUNTIME_DIR) would.
    const session = await holder(name, backend, cleanEnv({ XDG_RUNTIME_DIR: xdg, TMPDIR: otherTmp }))
    try {
      t.false(run(TRY(name, backend)) as boolean, 'a cron-like process (no XDG_RUNTIME_DIR, no TMPDIR) sees the lock held')
      t.false(run(TRY(name, backend), cleanEnv({ TMPDIR: otherTmp })) as boolean, 'another TMPDIR: the same lock')
      t.false(run(TRY(name, backend), cleanEnv({ XDG_RUNTIME_DIR: xdg })) as boolean, 'XDG_RUNTIME_DIR alone: the same lock')
      t.deepEqual(readdirSync(xdg), [], 'nothing is put in XDG_RUNTIME_DIR')
      t.deepEqual(readdirSync(otherTmp), [], 'nothing is put in TMPDIR')
    } finally {
      session.kill('SIGKILL')
    }
  })
}

test('a squatted default directory, or a parent another user made, fails closed, naming the owner and the remedy (root: runs a child as nobody in a private /tmp)', (t) => {
  if (!isRoot) {
    t.log('skipped: needs root (to own a directory as another user and run a child as nobody)')
    t.pass()
    return
  }
  // A private mount namespace with a tmpfs on /tmp: the machine's real /tmp is never touched.
  const child = `
    const { Lock, list } = require(${JSON.stringify(entry)})
    const out = {}
    for (const backend of ['shm', 'file']) {
      try { new Lock('x', { backend }).tryAcquire(); out[backend] = 'acquired' }
      catch (e) { out[backend] = { name: e.name, code: e.code, message: e.message } }
    }
    try { list(); out.list = 'listed' } catch (e) { out.list = { code: e.code } }
    // PROCLOCK_DIR under a parent another user made: open to us (0777), or closed (0700).
    for (const parent of ['/tmp/theirs-open', '/tmp/theirs-closed']) {
      try { new Lock('x', { dir: parent + '/locks' }).tryAcquire(); out[parent] = 'acquired' }
      catch (e) { out[parent] = { code: e.code, message: e.message } }
    }
    console.log(JSON.stringify(out))`
  // The tmpfs is mounted aside first and moved onto /tmp only after the project (which may
  // itself live under /tmp, as a fresh clone in /tmp does) is bound back to its own path in it.
  const script = `
    set -e
    aside=$(mktemp -d)
    mount -t tmpfs -o mode=1777 tmpfs "$aside"
    case "$REPO" in /tmp/*) mkdir -p "$aside\${REPO#/tmp}"; mount --bind "$REPO" "$aside\${REPO#/tmp}";; esac
    mount --move "$aside" /tmp
    mkdir -m 700 /tmp/proclock-${NOBODY}
    chown 1:1 /tmp/proclock-${NOBODY}
    mkdir -m 777 /tmp/theirs-open && chown 1:1 /tmp/theirs-open
    mkdir -m 700 /tmp/theirs-closed && chown 1:1 /tmp/theirs-closed
    setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups env -u PROCLOCK_DIR -u XDG_RUNTIME_DIR -u TMPDIR ${process.execPath} -e "$CHILD"
    echo "entries:$(ls -A /tmp/proclock-${NOBODY} | tr '\\n' ' ')"
    echo "owner:$(stat -c %u /tmp/proclock-${NOBODY})"`
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { env: { ...cleanEnv(), CHILD: child, REPO: resolve(dirname(entry), '..') }, encoding: 'utf8' })
  t.is(r.status, 0, r.stderr)
  const [json, entries, owner] = r.stdout.trim().split('\n')
  const out = JSON.parse(json) as Record<string, { name: string; code: string; message: string } | string>
  for (const backend of backends) {
    const e = out[backend] as { name: string; code: string; message: string }
    t.is(e.code, 'ELOCKPERM', `${backend}: ${JSON.stringify(e)}`)
    t.is(e.name, 'LockPermissionError')
    t.true(e.message.includes(`/tmp/proclock-${NOBODY}`), e.message)
    t.true(e.message.includes('uid 1 (daemon)'), `names the squatter: ${e.message}`)
    t.true(e.message.includes('administrator removes') && e.message.includes('PROCLOCK_DIR'), `gives the remedy: ${e.message}`)
  }
  t.deepEqual(out.list, { code: 'ELOCKPERM' })
  for (const parent of ['/tmp/theirs-open', '/tmp/theirs-closed']) {
    const e = out[parent] as { code: string; message: string }
    t.is(e.code, 'ELOCKPERM', `${parent}: ${JSON.stringify(e)}`)
    t.true(e.message.includes(`ancestor ${parent}`) && e.message.includes('uid 1 (daemon)'), e.message)
  }
  t.is(entries, 'entries:', 'nothing is written into the squatted directory')
  t.is(owner, 'owner:1')
})

for (const backend of backends) {
  test(`${backend}: a relative dir is resolved when each handle is created, so after chdir it means the new directory`, async (t) => {
    const base = mkdtempSync(join(tmpdir(), 'proclock-rel-'))
    mkdirSync(join(base, 'a'), { mode: 0o700 })
    mkdirSync(join(base, 'b'), { mode: 0o700 })
    // Another process holds x in b/rel, by its absolute path.
    const other = await holder('x', backend, cleanEnv(), join(base, 'b', 'rel'))
    try {
      const out = run(
        `const b = ${JSON.stringify(backend)}
         process.chdir('a')
         const first = new proclock.Lock('x', { dir: 'rel', backend: b })
         const inA = first.tryAcquire()
         first.release(); first.close()
         process.chdir('../b')
         const second = new proclock.Lock('x', { dir: 'rel', backend: b })
         console.log(JSON.stringify({ inA, inB: second.tryAcquire(), seen: proclock.inspect('x', { dir: 'rel', backend: b }).locked,
           listed: proclock.list({ dir: 'rel' }).filter((s) => s.locked).map((s) => s.name) }))`,
        cleanEnv(),
        base,
      )
      t.deepEqual(out, { inA: true, inB: false, seen: true, listed: ['x'] })
    } finally {
      other.kill('SIGKILL')
    }
  })
}

for (const backend of backends) {
  test(`${backend}: a worker thread's PROCLOCK_DIR (given through new Worker's env, or set by the worker) is where its locks live`, async (t) => {
    t.is(process.env.PROCLOCK_DIR, undefined, 'this test process has no PROCLOCK_DIR')
    const given = lockDir()
    const own = lockDir()
    const source = (setOwn: boolean) =>
      `const { Lock } = require(${JSON.stringify(entry)})
       const { parentPort } = require('node:worker_threads')
       ${setOwn ? `process.env.PROCLOCK_DIR = ${JSON.stringify(own)}` : ''}
       const l = new Lock('w', { backend: ${JSON.stringify(backend)} })
       l.acquireSync()
       parentPort.postMessage('held')
       setInterval(() => {}, 1000)`
    const workers = [
      new Worker(source(false), { eval: true, env: { ...process.env, PROCLOCK_DIR: given } }),
      new Worker(source(true), { eval: true }),
    ]
    try {
      for (const w of workers) {
        await new Promise((resolve, reject) => {
          w.once('message', resolve)
          w.once('error', reject)
        })
      }
      for (const dir of [given, own]) {
        const l = new Lock('w', { dir, backend })
        t.false(l.tryAcquire(), `the worker's lock is in ${dir}`)
        l.close()
        t.true(inspect('w', { dir, backend }).locked)
      }
      t.is(process.env.PROCLOCK_DIR, undefined, "the worker's setting stays in the worker")
    } finally {
      for (const w of workers) await w.terminate()
    }
  })
}

function refusedWith(t: import('ava').ExecutionContext, make: () => unknown, ...parts: string[]): boolean {
  const e = t.throws(make, { instanceOf: LockPermissionError }, parts.join(' '))
  if (!e) return false
  t.is((e as Error & { code?: string }).code, 'ELOCKPERM')
  for (const part of parts) t.true(e.message.includes(part), `${JSON.stringify(part)} in ${e.message}`)
  return true
}

for (const backend of backends) {
  test(`${backend}: every ancestor of the lock directory is checked (root: chown)`, (t) => {
    if (!isRoot) {
      t.log('skipped: needs root (to make a parent directory owned by another user)')
      t.pass()
      return
    }
    const base = mkdtempSync(join(tmpdir(), 'proclock-anc-'))
    const mk = (name: string, mode: number, uid = 0) => {
      const p = join(base, name)
      mkdirSync(p)
      chmodSync(p, mode)
      chownSync(p, uid, uid)
      return p
    }
    // A parent owned by another user: they could rename our lock directory away.
    const owned = mk('owned', 0o755, NOBODY)
    refusedWith(t, () => new Lock('x', { dir: join(owned, 'locks'), backend }), owned, 'nobody', '755')
    t.deepEqual(readdirSync(owned), [], 'nothing created under it')
    // A grandparent owned by another user.
    mkdirSync(join(owned, 'mid'), { mode: 0o700 })
    refusedWith(t, () => new Lock('x', { dir: join(owned, 'mid', 'locks'), backend }), owned)
    // Group-writable, not sticky.
    const gw = mk('gw', 0o775)
    refusedWith(t, () => new Lock('x', { dir: join(gw, 'locks'), backend }), gw, '775')
    // Sticky and world-writable, as /tmp: accepted.
    const sticky = mk('sticky', 0o1777)
    const s = new Lock('x', { dir: join(sticky, 'locks'), backend })
    t.true(s.tryAcquire())
    s.close()
    // A symlinked parent is resolved, and accepted when the real chain is sound: the same lock
    // by either spelling.
    const real = mk('real', 0o755)
    symlinkSync(real, join(base, 'link'))
    const viaLink = new Lock('y', { dir: join(base, 'link', 'locks'), backend })
    t.true(viaLink.tryAcquire())
    const viaReal = new Lock('y', { dir: join(real, 'locks'), backend })
    t.false(viaReal.tryAcquire(), 'the same lock through the real path')
    viaLink.close()
    viaReal.close()
    // A symlink whose real chain is not sound is refused, naming the real ancestor.
    symlinkSync(owned, join(base, 'badlink'))
    refusedWith(t, () => new Lock('x', { dir: join(base, 'badlink', 'locks2'), backend }), owned)
    t.false(existsSync(join(owned, 'locks2')))
  })
}

test('as root, system directories (/, /dev, /usr) are refused and nothing is created in them', (t) => {
  if (!isRoot) {
    t.log('skipped: the rule is about running as root')
    t.pass()
    return
  }
  for (const dir of ['/', '/dev', '/usr']) {
    const before = readdirSync(dir).sort()
    // Looking first (it creates nothing even where it is wrongly accepted), then opening.
    if (!refusedWith(t, () => list({ dir }), dir, 'system directory', '0700')) return
    if (!refusedWith(t, () => inspect('x', { dir }), dir)) return
    for (const backend of backends) if (!refusedWith(t, () => new Lock('x', { dir, backend }), dir, 'system directory')) return
    t.deepEqual(readdirSync(dir).sort(), before, `nothing created in ${dir}`)
  }
})

/** Every file of `dir`: name -> size, mtime and a hash of its bytes. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const f of readdirSync(dir).sort()) {
    const st = statSync(join(dir, f))
    out[f] = `${st.size} ${st.mtimeMs} ${createHash('sha256').update(readFileSync(join(dir, f))).digest('hex')}`
  }
  return out
}

const LOOK = (dir: string) =>
  `const dir = ${JSON.stringify(dir)}
   console.log(JSON.stringify({
     list: proclock.list({ dir }).map((s) => ({ name: s.name, locked: s.locked, pid: s.owner?.pid ?? null })),
     held: proclock.inspect('held', { dir }).locked,
     never: proclock.inspect('never', { dir }).locked,
   }))`

test('looking (list, inspect) from a fresh process writes nothing: no blank segment repaired, no registration, no file created', async (t) => {
  const dir = lockDir()
  const h = start('holder', { dir, name: 'held', then: 'hold' })
  const { pid } = await h.next('held')
  try {
    // A blank segment (empty, as `touch` makes one) after the one in use.
    writeFileSync(join(dir, 'shm-locks-1.seg'), '', { mode: 0o600 })
    const before = snapshot(dir)
    t.deepEqual(run(LOOK(dir)), { list: [{ name: 'held', locked: true, pid }], held: true, never: false })
    t.deepEqual(snapshot(dir), before, 'every file unchanged (bytes and mtime), and no file created')
  } finally {
    h.kill()
  }
  // A directory whose only shm file is a blank segment: no shm locks, and nothing written.
  for (const blank of [Buffer.alloc(0), Buffer.alloc(8192)]) {
    const only = lockDir()
    mkdirSync(only, { mode: 0o700 })
    writeFileSync(join(only, 'shm-locks-0.seg'), blank, { mode: 0o600 })
    const before = snapshot(only)
    t.deepEqual(run(LOOK(only)), { list: [], held: false, never: false })
    t.deepEqual(snapshot(only), before, `a ${blank.length}-byte blank segment stays as it is, and nothing is created`)
  }
})
