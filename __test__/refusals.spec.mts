// What proclock refuses, and how it says so: a shared segment or lock file it did not write is
// reported (LockCorruptError) and never reset; a lock directory that is a symlink or open to
// other users is refused (LockPermissionError). security.spec has the full security suite;
// these check that the refusals reach JavaScript with their class and code.
import { chmodSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'ava'
import { Lock, LockCorruptError, LockPermissionError, ProcLockError } from 'proclock'
import { lockDir } from './helpers/procs.mjs'

const posix = process.platform !== 'win32'

test('a lock table that proclock did not write is reported, not reset', (t) => {
  const dir = lockDir()
  // Another process creates the directory and the tables (this one must open them fresh:
  // a segment is validated when a process maps it).
  const entry = fileURLToPath(new URL('../../dist/index.js', import.meta.url))
  execFileSync(process.execPath, ['-e', `new (require(${JSON.stringify(entry)}).Lock)('warm-up', { dir: ${JSON.stringify(dir)} }).close()`])
  const table = join(dir, 'shm-locks-0.seg')
  const garbage = Buffer.alloc(readFileSync(table).length, 0xab)
  writeFileSync(table, garbage)
  const error = t.throws(() => new Lock('x', { dir }), { instanceOf: LockCorruptError })
  t.is(error?.code, 'ELOCKCORRUPT')
  t.true(error instanceof ProcLockError)
  t.regex(error!.message, /shm-locks-0\.seg/)
  t.true(readFileSync(table).equals(garbage), 'the file was left as it was')
})

test('a file lock whose record or header proclock did not write is reported, not reset', (t) => {
  const dir = lockDir()
  new Lock('x', { dir, backend: 'file' }).close()
  const [name] = readdirSync(dir).filter((f) => f.startsWith('file-'))
  const path = join(dir, name)
  const damaged = readFileSync(path)
  damaged.fill(0xab, 512, 832) // the holder record
  writeFileSync(path, damaged)
  const lock = new Lock('x', { dir, backend: 'file' })
  const error = t.throws(() => lock.tryAcquire(), { instanceOf: LockCorruptError })
  t.regex(error!.message, new RegExp(name.replace('.', '\\.')))
  t.false(lock.held)
  t.false(lock.isLocked(), 'the failed acquisition gave the kernel lock back')
  t.throws(() => lock.owner(), { instanceOf: LockCorruptError })
  t.true(readFileSync(path).equals(damaged), 'the file was left as it was')
  lock.close()
  writeFileSync(path, Buffer.alloc(4096, 0x5a)) // the header too
  t.throws(() => new Lock('x', { dir, backend: 'file' }), { instanceOf: LockCorruptError, code: 'ELOCKCORRUPT' })
})

;(posix ? test : test.skip)('a lock directory that is a symlink or world-writable is refused', (t) => {
  const base = dirname(lockDir())
  const real = join(base, 'real')
  mkdirSync(real, { mode: 0o700 })
  const link = join(base, 'link')
  symlinkSync(real, link)
  const e1 = t.throws(() => new Lock('x', { dir: link }), { instanceOf: LockPermissionError })
  t.is(e1?.code, 'ELOCKPERM')
  t.regex(e1!.message, /symlink/)

  const open = join(base, 'open')
  mkdirSync(open)
  chmodSync(open, 0o777)
  const e2 = t.throws(() => new Lock('x', { dir: open }), { instanceOf: LockPermissionError })
  t.regex(e2!.message, /other users/)
})
