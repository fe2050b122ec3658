// A Hold ends only its own acquisition; singleInstance() names a program by the file Node ran,
// however it was typed; descriptions are refused where names are (lone surrogates).
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'ava'
import { Lock, LockNotHeldError, RwLock } from 'proclock'
import { lockDir } from './helpers/procs.mjs'

for (const backend of ['shm', 'file'] as const) {
  test(`${backend}: disposing or releasing a Hold whose acquisition ended leaves a later hold alone`, async (t) => {
    const dir = lockDir()
    const lock = new Lock('h', { dir, backend })
    const other = new Lock('h', { dir, backend })

    // Ended by lock.release(), then the lock acquired again.
    const first = await lock.hold()
    lock.release()
    await lock.acquire()
    const token = lock.token
    first[Symbol.dispose]()
    t.true(lock.held, 'disposing the ended hold did nothing')
    t.is(lock.token, token)
    await first[Symbol.asyncDispose]()
    t.true(lock.held)
    t.false(other.tryAcquire())

    // release() of an ended hold throws, and still leaves the later hold alone.
    lock.release()
    const second = lock.holdSync()
    lock.release()
    lock.acquireSync()
    t.throws(() => second.release(), { instanceOf: LockNotHeldError })
    t.true(lock.held)
    second[Symbol.dispose]()
    t.true(lock.held)
    lock.release()

    // A Hold still current ends its acquisition, once.
    const third = lock.holdSync()
    third[Symbol.dispose]()
    t.false(lock.held)
    t.true(other.tryAcquire())
    other.release()
    t.throws(() => third.release(), { instanceOf: LockNotHeldError })

    // Ended by close: a later hold of another handle is not touched either.
    const fourth = lock.holdSync()
    lock.close()
    t.true(other.tryAcquire())
    fourth[Symbol.dispose]()
    t.true(other.held)
    other.close()
  })

  test(`${backend}: reentrant: nested Holds end one level each, and never a later acquisition`, (t) => {
    const dir = lockDir()
    const lock = new Lock('r', { dir, backend, reentrant: true })
    const other = new Lock('r', { dir, backend })
    const outer = lock.holdSync()
    const inner = lock.holdSync()
    inner[Symbol.dispose]()
    t.true(lock.held, 'the outer level still holds')
    inner[Symbol.dispose]()
    t.true(lock.held, 'a second disposal of the inner hold does nothing')
    outer[Symbol.dispose]()
    t.false(lock.held)

    // Both levels ended by release(); the lock taken again; the old Holds do nothing.
    const a = lock.holdSync()
    const b = lock.holdSync()
    lock.release()
    lock.release()
    lock.acquireSync()
    b[Symbol.dispose]()
    t.throws(() => a.release(), { instanceOf: LockNotHeldError })
    t.true(lock.held)
    t.false(other.tryAcquire())
    lock.close()
    other.close()
  })
}

test('descriptions with lone surrogates are refused everywhere a description enters, as names are', async (t) => {
  const dir = lockDir()
  const bad = 'half \ud800 a pair'
  const code = (e: unknown) => (e as { code?: string }).code
  const refused = { code: 'ERR_INVALID_ARG_VALUE' }
  t.is(code(t.throws(() => new Lock('d', { dir, description: bad }), refused)), 'ERR_INVALID_ARG_VALUE')
  t.throws(() => new RwLock('d', { dir, description: bad }), refused)
  for (const backend of ['shm', 'file'] as const) {
    const lock = new Lock('d', { dir, backend })
    t.throws(() => lock.tryAcquire({ description: bad }), refused)
    t.throws(() => lock.acquireSync({ description: bad }), refused)
    await t.throwsAsync(lock.acquire({ description: bad }), refused)
    await t.throwsAsync(lock.acquire({ description: bad, timeout: 0 }), refused)
    t.false(lock.held, 'nothing was taken')
    t.true(lock.tryAcquire({ description: 'whole \ud800\udc00 pair' }))
    t.is(lock.owner()?.description, 'whole \ud800\udc00 pair')
    lock.close()
  }
  const rw = new RwLock('d', { dir })
  t.throws(() => rw.tryRead({ description: bad }), refused)
  rw.close()
})

/** Start `node ...args` in `cwd`; resolves with its exit code and stderr, or 'running' after `ms`. */
function startNode(args: string[], cwd: string, env: Record<string, string>) {
  const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  let stdout = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })))
  const started = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', () => stdout.includes('primary') && resolve())
    void exited.then((e) => reject(new Error(`exited ${e.code}: ${e.stderr}`)))
  })
  // Only the first instance's start is awaited: the others are expected to exit.
  started.catch(() => {})
  return { child, exited, started }
}

test('singleInstance(): node app, node app.js, ./app.js and a symlink are one program (CommonJS and ES module mains)', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'proclock-instance-'))
  const dir = join(root, 'locks')
  const index = fileURLToPath(new URL('../../dist/index.js', import.meta.url))
  const body = `singleInstance(undefined, { dir: process.env.LOCKS }); console.log('primary'); setInterval(() => {}, 1 << 30)\n`
  writeFileSync(join(root, 'app.js'), `const { singleInstance } = require(${JSON.stringify(index)})\n${body}`)
  writeFileSync(join(root, 'app.mjs'), `import { singleInstance } from ${JSON.stringify(index)}\n${body}`)
  symlinkSync(join(root, 'app.js'), join(root, 'link.js'))
  symlinkSync(join(root, 'app.mjs'), join(root, 'link.mjs'))
  const env = { LOCKS: dir }
  for (const [primary, ...others] of [
    ['app.js', 'app', './app', join(root, 'app.js'), 'link.js', 'link'],
    ['app', 'app.js'],
    ['link.mjs', 'app.mjs', join(root, 'app.mjs')],
    ['app.mjs', 'link.mjs'],
  ]) {
    const first = startNode([primary], root, env)
    await first.started
    for (const other of others) {
      // A second primary would run for ever: one still running after 10 s was not refused.
      const started = startNode([other], root, env)
      const timer = setTimeout(() => started.child.kill('SIGKILL'), 10_000)
      const second = await started.exited
      clearTimeout(timer)
      t.is(second.code, 1, `node ${other} after node ${primary}: ${second.stderr}`)
      t.regex(second.stderr, new RegExp(`^Another '.*app\\.m?js' process is already running \\(pid ${first.child.pid}\\)\\.\\n$`))
    }
    first.child.kill('SIGKILL')
    await first.exited
  }
})

test('singleInstance(): a main script whose path is longer than a lock name may be gets a shortened name within 255 UTF-8 bytes, whole characters only', (t) => {
  // Deep directories and a base name of 80 characters of 3 UTF-8 bytes each (243 bytes with the
  // extension, within a file name's 255): a cut at 100 characters would keep all 243 bytes, and
  // with the hash the name would be over 255.
  let root = mkdtempSync(join(tmpdir(), 'proclock-instance-'))
  for (let i = 0; i < 3; i++) {
    root = join(root, 'd'.repeat(100))
    mkdirSync(root)
  }
  const index = fileURLToPath(new URL('../../dist/index.js', import.meta.url))
  const script = `${'€'.repeat(80)}.js`
  writeFileSync(
    join(root, script),
    `const lock = require(${JSON.stringify(index)}).singleInstance(undefined, { dir: process.env.LOCKS })\nconsole.log(JSON.stringify(lock.name))\n`,
  )
  const ended = spawnSync(process.execPath, [script], { cwd: root, env: { ...process.env, LOCKS: join(root, 'locks') }, encoding: 'utf8' })
  t.is(ended.status, 0, ended.stderr)
  const name = JSON.parse(ended.stdout.trim()) as string
  t.true(Buffer.byteLength(name) <= 255, `${Buffer.byteLength(name)} bytes`)
  t.true(name.isWellFormed(), 'no lone surrogate')
  t.regex(name, /^€{33}#[0-9a-f]{32}$/u, 'the longest whole-character prefix of 100 bytes, then the hash')
})
