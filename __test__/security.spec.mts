// The lock directory against other local users and hostile input: pre-planted symlinks,
// foreign-owned or world-writable directories and files, umask 000, hostile names. Every
// refusal is a LockPermissionError (ELOCKPERM), and nothing outside the lock directory is
// created or changed.
import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'ava'
import { Lock, LockPermissionError, RwLock } from 'proclock'
import { lockDir } from './helpers/procs.mjs'

const backends = ['shm', 'file'] as const
const isRoot = process.getuid?.() === 0
const NOBODY = 65534

/** A sandbox: `root/locks` will be the lock directory; `root/victim` a file that must stay untouched. */
function sandbox(): { root: string; dir: string; victim: string } {
  const root = mkdtempSync(join(tmpdir(), 'proclock-sec-'))
  const victim = join(root, 'victim')
  writeFileSync(victim, 'precious', { mode: 0o600 })
  return { root, dir: join(root, 'locks'), victim }
}

function open(name: string, dir: string, backend: 'shm' | 'file'): Lock {
  const lock = new Lock(name, { dir, backend })
  lock.tryAcquire()
  return lock
}

/** The files `backend` creates for `name`, learnt by opening it in a scratch directory. */
function filesOf(name: string, backend: 'shm' | 'file'): string[] {
  const dir = lockDir()
  open(name, dir, backend).close()
  return readdirSync(dir).filter((f) => f !== 'dir.lock' && !f.startsWith('shm-live-'))
}

function refused(t: import('ava').ExecutionContext, make: () => unknown, what: string) {
  const error = t.throws(make, { instanceOf: LockPermissionError }, what)
  t.is(error?.code, 'ELOCKPERM')
}

for (const backend of backends) {
  test(`${backend}: a symlink planted under a lock file's name is refused and its target untouched`, (t) => {
    for (const file of [...filesOf('planted', backend), 'dir.lock']) {
      const { dir, victim } = sandbox()
      mkdirSync(dir, { mode: 0o700 })
      symlinkSync(victim, join(dir, file))
      refused(t, () => open('planted', dir, backend), `symlink at ${file}`)
      t.is(readFileSync(victim, 'utf8'), 'precious')
      t.is(statSync(victim).mode & 0o777, 0o600)
    }
  })

  test(`${backend}: a lock directory that is a symlink, world-writable, or foreign-owned is refused`, (t) => {
    const { root, dir } = sandbox()
    mkdirSync(dir, { mode: 0o700 })
    const link = join(root, 'link')
    symlinkSync(dir, link)
    refused(t, () => open('x', link, backend), 'symlinked directory')
    t.deepEqual(readdirSync(dir), [], 'nothing was created through the symlink')

    const open777 = join(root, 'open')
    mkdirSync(open777)
    chmodSync(open777, 0o777)
    refused(t, () => open('x', open777, backend), '0777 directory')
    t.deepEqual(readdirSync(open777), [])

    const foreign = join(root, 'foreign')
    if (isRoot) {
      mkdirSync(foreign, { mode: 0o700 })
      chownSync(foreign, NOBODY, NOBODY)
      refused(t, () => open('x', foreign, backend), 'directory owned by another user')
      t.deepEqual(readdirSync(foreign), [])
    } else {
      // Not root: "/" is owned by another user (root).
      refused(t, () => open('x', '/', backend), 'directory owned by root')
    }
  })

  test(`${backend}: a lock file that is world-readable, hard-linked or foreign-owned is refused`, (t) => {
    const files = filesOf('shared', backend)
    const cases: Array<[string, (path: string, root: string) => void]> = [
      [
        'mode 0666',
        (p) => {
          writeFileSync(p, '')
          chmodSync(p, 0o666)
        },
      ],
      [
        'a second hard link',
        (p, root) => {
          writeFileSync(join(root, 'other'), '', { mode: 0o600 })
          linkSync(join(root, 'other'), p)
        },
      ],
    ]
    if (isRoot) {
      cases.push([
        'owned by another user',
        (p) => {
          writeFileSync(p, '', { mode: 0o600 })
          chownSync(p, NOBODY, NOBODY)
        },
      ])
    }
    for (const [what, plant] of cases) {
      for (const file of files) {
        const { root, dir } = sandbox()
        mkdirSync(dir, { mode: 0o700 })
        plant(join(dir, file), root)
        refused(t, () => open('shared', dir, backend), `${file}: ${what}`)
      }
    }
  })
}

test('under umask 000 the directory is 0700 and every file 0600', (t) => {
  const { dir } = sandbox()
  const entry = fileURLToPath(new URL('../../dist/index.js', import.meta.url))
  const script = `
    const { Lock, RwLock } = require(${JSON.stringify(entry)})
    for (const backend of ['shm', 'file']) { const l = new Lock('u', { dir: ${JSON.stringify(dir)}, backend }); l.acquireSync(); l.release() }
    const rw = new RwLock('rw', { dir: ${JSON.stringify(dir)} }); rw.readSync(); rw.release()`
  const run = spawnSync('sh', ['-c', `umask 000 && exec "${process.execPath}" -e "$0"`, script], { encoding: 'utf8' })
  t.is(run.status, 0, run.stderr)
  t.is(statSync(dir).mode & 0o777, 0o700)
  const files = readdirSync(dir)
  t.true(files.length >= 4, files.join(' '))
  for (const f of files) t.is(statSync(join(dir, f)).mode & 0o777, 0o600, f)
})

test('hostile names stay inside the lock directory and keep their exact text', (t) => {
  const { root, dir } = sandbox()
  const before = readdirSync(root).sort()
  const names = ['../../x', 'a/b', '..', '.', 'CON', 'nul', 'COM1.txt', '\\\\?\\C:\\x', 'x'.repeat(255), 'é'.repeat(127), '锁/🔒', 'line\nbreak', ' ', '*?<>|"']
  for (const backend of backends) {
    for (const [i, name] of names.entries()) {
      const a = new Lock(name, { dir, backend, description: `holder ${i}` })
      t.true(a.tryAcquire(), `${backend} ${JSON.stringify(name)}`)
      const b = new Lock(name, { dir, backend })
      t.false(b.tryAcquire(), 'the same name is the same lock')
      t.is(b.owner()?.description, `holder ${i}`)
      a.close()
      b.close()
    }
  }
  const rw = new RwLock('../../rw', { dir })
  t.true(rw.tryWrite())
  rw.close()
  t.deepEqual(readdirSync(root).sort(), [...before, 'locks'].sort(), 'nothing but the lock directory was created')
  for (const f of readdirSync(dir)) {
    t.regex(f, /^(dir\.lock|shm-procs\.seg|shm-locks-\d+\.seg|shm-live-\d+\.lock|file-[0-9a-f]{32}\.lock)$/)
  }
  t.is(readdirSync(dir).filter((f) => f.startsWith('file-')).length, names.length + 1, 'one lock file per name')
  t.is(readFileSync(join(root, 'victim'), 'utf8'), 'precious')
  for (const backend of backends) {
    t.throws(() => new Lock('x'.repeat(256), { dir, backend }), { code: 'ERR_INVALID_ARG_VALUE' })
    t.throws(() => new Lock('a\0b', { dir, backend }), { code: 'ERR_INVALID_ARG_VALUE' })
  }
})
