// inspect, list and forceRelease (the README's "Looking at locks") against holders in this process and in
// other processes: state without acquiring, nothing created by looking, dead holders, and the
// forced release's promises (the old holder's release throws, the next holder sees ownerDied
// and a larger token, a waiter gets the lock).
import { existsSync, mkdirSync, mkdtempSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import { forceRelease, inspect, list, Lock, LockNotHeldError, LockPermissionError } from 'proclock'
import { lockDir, start } from './helpers/procs.mjs'

test('a name never used is free, and looking creates nothing: no directory, no lock', (t) => {
  const fresh = lockDir()
  t.deepEqual(inspect('never', { dir: fresh }), { name: 'never', locked: false, owner: null })
  t.deepEqual(list({ dir: fresh }), [])
  t.false(forceRelease('never', { dir: fresh }))
  t.false(existsSync(fresh), 'no lock directory was created')

  const dir = lockDir()
  new Lock('used', { dir }).close()
  t.deepEqual(inspect('never', { dir }), { name: 'never', locked: false, owner: null })
  t.false(forceRelease('never', { dir }))
  t.deepEqual(
    list({ dir }).map((s) => s.name),
    ['used'],
    'inspecting or force-releasing a name did not claim a lock for it',
  )
})

test('inspect shows a holder in another process exactly as owner() does', async (t) => {
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'shown', then: 'hold', description: 'résumé builder' })
  const held = await holder.next('held')
  const s = inspect('shown', { dir })
  t.deepEqual(Object.keys(s), ['name', 'locked', 'owner'])
  t.is(s.name, 'shown')
  t.true(s.locked)
  t.like(s.owner, { pid: held.pid, uuid: held.uuid, description: 'résumé builder', token: held.token, alive: true })
  t.is(typeof s.owner?.token, 'bigint')
  const lock = new Lock('shown', { dir })
  t.deepEqual(s.owner, lock.owner())
  t.false(lock.held, 'inspect took nothing')

  holder.kill('SIGKILL')
  await holder.exited
  const dead = inspect('shown', { dir })
  t.false(dead.locked)
  t.like(dead.owner, { pid: held.pid, alive: false })
  await lock.acquire({ timeout: 5000 })
  t.true(lock.ownerDied)
  t.like(inspect('shown', { dir }).owner, { pid: process.pid, uuid: lock.uuid, token: lock.token!, alive: true })
  lock.close()
})

test('list returns every lock of the directory, sorted, with holders', async (t) => {
  const dir = lockDir()
  const other = start('holder', { dir, name: 'b-remote', then: 'hold' })
  const held = await other.next('held')
  const mine = new Lock('a-local', { dir, description: 'mine' })
  mine.acquireSync()
  new Lock('c-idle', { dir }).close()
  const all = list({ dir })
  t.deepEqual(
    all.map((s) => [s.name, s.locked, s.owner?.pid ?? null]),
    [
      ['a-local', true, process.pid],
      ['b-remote', true, held.pid],
      ['c-idle', false, null],
    ],
  )
  t.like(all[0].owner, { description: 'mine', token: mine.token!, uuid: mine.uuid })
  t.deepEqual(all[1], inspect('b-remote', { dir }))
  mine.close()
  other.kill()
})

test('forceRelease: the old holder (same process) finds its release throws; the next holder sees ownerDied and a larger token', (t) => {
  const dir = lockDir()
  const a = new Lock('forced', { dir })
  const b = new Lock('forced', { dir })
  let last = 0n
  for (let round = 0; round < 20; round++) {
    t.true(a.tryAcquire())
    const token = a.token!
    t.true(token > last)
    t.true(forceRelease('forced', { dir }))
    t.false(inspect('forced', { dir }).locked)
    t.true(a.held, 'the old holder is not told...')
    t.throws(() => a.release(), { instanceOf: LockNotHeldError, code: 'ELOCKNOTHELD' }, '...until it releases')
    t.false(a.held)
    t.true(b.tryAcquire())
    t.true(b.ownerDied)
    t.true(b.token! > token, 'tokens keep increasing across a forced release')
    last = b.token!
    b.release()
  }
  t.false(forceRelease('forced', { dir }), 'nothing held: nothing to do')
  a.close()
  b.close()
})

test('forceRelease across processes: a waiter gets the lock at once; the holder cannot release it', async (t) => {
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'x-proc', then: 'release' })
  const held = await holder.next('held')
  const waiter = new Lock('x-proc', { dir })
  const waiting = waiter.acquire({ timeout: 10_000 })
  t.true(forceRelease('x-proc', { dir }))
  const started = performance.now()
  await waiting
  t.true(performance.now() - started < 2000)
  t.true(waiter.ownerDied)
  t.true(waiter.token! > (held.token as bigint))
  holder.send({ type: 'release' })
  t.like(await holder.next('release-failed'), { name: 'LockNotHeldError', code: 'ELOCKNOTHELD' })
  t.like(inspect('x-proc', { dir }).owner, { pid: process.pid, alive: true })
  waiter.close()
  holder.kill()
})

test('forceRelease of a dead holder frees it too', async (t) => {
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'gone', then: 'hold' })
  await holder.next('held')
  holder.kill('SIGKILL')
  await holder.exited
  t.true(forceRelease('gone', { dir }))
  t.is(inspect('gone', { dir }).owner, null)
})

test('bad arguments and refused directories get clear errors', (t) => {
  t.throws(() => inspect(''), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => inspect(5 as unknown as string), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => inspect('x', { backend: 'bogus' as 'shm' }), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => forceRelease('x'.repeat(256)), { instanceOf: RangeError, code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => list('dir' as unknown as { dir: string }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => list({ dir: 5 as unknown as string }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  const base = mkdtempSync(join(tmpdir(), 'proclock-inspect-'))
  mkdirSync(join(base, 'real'), { mode: 0o700 })
  new Lock('x', { dir: join(base, 'real') }).close()
  symlinkSync(join(base, 'real'), join(base, 'link'))
  t.throws(() => list({ dir: join(base, 'link') }), { instanceOf: LockPermissionError, code: 'ELOCKPERM' })
  t.throws(() => inspect('x', { dir: join(base, 'link') }), { instanceOf: LockPermissionError })
})

test('file backend: inspect and list show holders in other processes, readers and dead holders; nothing is created by looking; forceRelease refuses a live holder', async (t) => {
  const fresh = lockDir()
  t.deepEqual(inspect('never', { dir: fresh, backend: 'file' }), { name: 'never', locked: false, owner: null })
  t.false(forceRelease('never', { dir: fresh, backend: 'file' }))
  t.false(existsSync(fresh), 'no lock directory was created')

  const dir = lockDir()
  const holder = start('holder', { dir, name: 'report/α', then: 'hold', backend: 'file', description: 'nightly' })
  const held = await holder.next('held')
  const reader = start('holder', { dir, name: 'doc', then: 'hold', kind: 'read' })
  await reader.next('held')
  new Lock('idle', { dir, backend: 'file' }).close()
  const shm = new Lock('report/α', { dir })
  t.true(shm.tryAcquire(), 'the same name on the other backend is another lock')

  const s = inspect('report/α', { dir, backend: 'file' })
  t.true(s.locked)
  t.is(s.owner?.pid, holder.proc.pid)
  t.is(s.owner?.description, 'nightly')
  t.is(s.owner?.token, held.token as bigint)
  t.true(s.owner?.alive)
  const listed = list({ dir })
  t.deepEqual(
    listed.map((l) => [l.name, l.locked, l.owner?.pid ?? null]),
    [
      ['doc', true, null], // held by a reader: locked, no owner record
      ['idle', false, null],
      ['report/α', true, holder.proc.pid], // file
      ['report/α', true, process.pid], // shm
    ],
    'both backends, by name then backend, with readable names and holders (readers have no owner record)',
  )
  const refused = t.throws(() => forceRelease('report/α', { dir, backend: 'file' }), { instanceOf: LockPermissionError })
  t.regex(refused!.message, new RegExp(`live process \\(pid ${holder.proc.pid}\\)`))
  t.true(inspect('report/α', { dir, backend: 'file' }).locked, 'the refused forced release changed nothing')

  holder.kill('SIGKILL')
  await holder.exited
  const dead = inspect('report/α', { dir, backend: 'file' })
  t.false(dead.locked)
  t.false(dead.owner?.alive)
  t.is(dead.owner?.pid, holder.proc.pid)
  t.false(forceRelease('report/α', { dir, backend: 'file' }), 'a dead holder holds nothing to end')
  const next = new Lock('report/α', { dir, backend: 'file' })
  t.true(next.tryAcquire())
  t.true(next.ownerDied)
  reader.kill()
  next.close()
  shm.close()
})
