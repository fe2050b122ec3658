// RwLock (file backend) across real processes: readers share, a writer excludes them, a
// waiting writer gets in once the readers leave, a dead reader frees its share.
import test from 'ava'
import { Lock, RwLock } from 'proclock'
import { lockDir, sleep, start } from './helpers/procs.mjs'

test.serial('two readers in two processes at once; a writer excludes both and gets in after they leave', async (t) => {
  const dir = lockDir()
  const r1 = start('holder', { dir, name: 'doc', then: 'release', kind: 'read' })
  const r2 = start('holder', { dir, name: 'doc', then: 'release', kind: 'read' })
  // Both processes hold the read lock at the same time.
  await Promise.all([r1.next('held'), r2.next('held')])
  const reader = new RwLock('doc', { dir })
  t.true(reader.tryRead(), 'a third reader joins')
  t.is(reader.held, 'read')
  reader.release()

  const writer = new RwLock('doc', { dir })
  t.false(writer.tryWrite(), 'readers exclude a writer')
  t.true(writer.isLocked())
  t.is(writer.owner(), null, 'readers have no owner record')
  let wrote = false
  const waiting = writer.write({ timeout: 10_000 }).then(() => (wrote = true))
  r1.send({ type: 'release' })
  await r1.next('released')
  await sleep(50)
  t.false(wrote, 'the writer waits while one reader remains')
  r2.send({ type: 'release' })
  await r2.next('released')
  await waiting
  t.is(writer.held, 'write')

  // While the writer holds, readers in other processes and a plain file-backend Lock wait.
  t.false(reader.tryRead())
  const lock = new Lock('doc', { dir, backend: 'file' })
  t.false(lock.tryAcquire(), 'a file Lock of the same name excludes like a writer')
  t.is(lock.owner()?.pid, process.pid)
  const r3 = start('holder', { dir, name: 'doc', then: 'release', kind: 'read' })
  await sleep(100)
  writer.release()
  await r3.next('held')
  t.false(writer.tryWrite())
  for (const c of [r1, r2, r3]) c.kill()
  await r3.exited
  t.true(writer.tryWrite())
  for (const l of [reader, writer, lock]) l.close()
})

test.serial('a SIGKILLed reader frees its share; a SIGKILLed writer frees the lock', async (t) => {
  const dir = lockDir()
  const writer = new RwLock('crash', { dir })
  const reader = start('holder', { dir, name: 'crash', then: 'hold', kind: 'read' })
  await reader.next('held')
  t.false(writer.tryWrite())
  const waiting = writer.write({ timeout: 5000 })
  reader.kill('SIGKILL')
  await waiting
  writer.release()

  const w2 = start('holder', { dir, name: 'crash', then: 'hold', kind: 'write', description: 'migrating' })
  await w2.next('held')
  const r = new RwLock('crash', { dir })
  t.false(r.tryRead())
  t.is(r.owner()?.description, 'migrating')
  const reading = r.read({ timeout: 5000 })
  w2.kill('SIGKILL')
  await reading
  t.is(r.held, 'read')
  for (const l of [writer, r]) l.close()
})

test('one mode at a time per handle; bad use gets clear errors', async (t) => {
  const dir = lockDir()
  const rw = new RwLock('modes', { dir })
  t.throws(() => rw.release(), { code: 'ELOCKNOTHELD' })
  t.true(rw.tryRead())
  t.throws(() => rw.tryWrite(), { code: 'ELOCKREENTRY' })
  t.throws(() => rw.tryRead(), { code: 'ELOCKREENTRY' })
  await t.throwsAsync(rw.write(), { code: 'ELOCKREENTRY' })
  rw.release()
  rw.writeSync({ timeout: 0 })
  t.is(rw.held, 'write')
  rw.release()
  await rw.read({ timeout: 0 })
  rw.close()
  t.is(rw.held, null)
  t.throws(() => rw.tryRead(), { code: 'ELOCKCLOSED' })
  t.throws(() => new RwLock('x', { dir, backend: 'shm' }), { code: 'ERR_INVALID_ARG_VALUE', message: /backend: 'file'/ })
  t.throws(() => new RwLock('x', { dir, reentrant: true }), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => new RwLock('', { dir }), { code: 'ERR_INVALID_ARG_VALUE' })
  const ac = new AbortController()
  const holder = new RwLock('abort', { dir })
  holder.writeSync()
  const other = new RwLock('abort', { dir })
  const p = other.read({ signal: ac.signal })
  ac.abort()
  await t.throwsAsync(p, { name: 'AbortError' })
  t.is(other.held, null)
  t.throws(() => other.readSync({ timeout: 20 }), { code: 'ELOCKTIMEOUT' })
  holder.close()
  other.close()
})
