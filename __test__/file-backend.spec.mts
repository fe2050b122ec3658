// What only the file backend needs checking for (holder death is in holder-death.spec, for both
// backends): the close() hazard, and waits on our own threads that time out, abort and pile up.
import { readdirSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'ava'
import { Lock } from 'proclock'
import { lockDir, sleep, start } from './helpers/procs.mjs'

const backend = 'file' as const

function lockFileOf(dir: string): string {
  const files = readdirSync(dir).filter((f) => /^file-[0-9a-f]{32}\.lock$/.test(f))
  if (files.length !== 1) throw new Error(`expected one lock file in ${dir}, found ${files.join(', ')}`)
  return join(dir, files[0])
}

test.serial('file: the close() hazard: the holder opening and closing the lock file keeps its lock', async (t) => {
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'hazard', then: 'release', backend })
  await holder.next('held')
  const path = lockFileOf(dir)
  holder.send({ type: 'touch', path })
  await holder.next('touched')
  // This process too opens, reads and closes the file: nothing here may drop the holder's lock.
  await readFile(path)
  const lock = new Lock('hazard', { dir, backend })
  t.false(lock.tryAcquire(), 'another process still sees the lock held')
  t.true(lock.isLocked())
  t.is(lock.owner()?.pid, holder.proc.pid)
  await t.throwsAsync(lock.acquire({ timeout: 100 }), { code: 'ELOCKTIMEOUT' })
  holder.send({ type: 'release' })
  await holder.next('released')
  t.true(lock.tryAcquire())
  holder.kill()
  lock.close()
})

test('file: many waits pending at once leave the libuv pool free; timeouts and aborts settle promptly', async (t) => {
  const dir = lockDir()
  const holder = new Lock('pool', { dir, backend })
  t.true(holder.tryAcquire())
  const waiters = Array.from({ length: 8 }, () => new Lock('pool', { dir, backend }))
  const pending = waiters.map((w) => w.acquire({ timeout: 5000 }))
  // 8 waits > 4 libuv threads: if any parked a pool thread, fs calls would queue behind them.
  const started = performance.now()
  await Promise.all(Array.from({ length: 8 }, () => readFile(new URL(import.meta.url))))
  const fsMs = performance.now() - started
  t.true(fsMs < 500, `fs calls took ${fsMs.toFixed(0)} ms with 8 lock waits pending`)

  const late = new Lock('pool', { dir, backend })
  let t0 = performance.now()
  await t.throwsAsync(late.acquire({ timeout: 50 }), { code: 'ELOCKTIMEOUT' })
  const timedOut = performance.now() - t0
  t.true(timedOut >= 45 && timedOut < 1000, `timeout after ${timedOut.toFixed(0)} ms`)
  const ac = new AbortController()
  const aborted = late.acquire({ signal: ac.signal })
  setTimeout(() => ac.abort(new Error('enough')), 20)
  t0 = performance.now()
  await t.throwsAsync(aborted, { name: 'AbortError' })
  t.true(performance.now() - t0 < 1000)
  t.false(late.held)
  // A handle that timed out and aborted repeatedly still keeps at most one request queued;
  // after the holder lets go, every waiter gets its turn and nothing is left held.
  for (let i = 0; i < 20; i++) await t.throwsAsync(late.acquire({ timeout: 1 }), { code: 'ELOCKTIMEOUT' })
  holder.release()
  // Every waiter gets its turn: whoever holds releases, the rest go on waiting.
  const served = new Set<Lock>()
  while (served.size < waiters.length) {
    const current = waiters.find((w) => w.held)
    if (current === undefined) {
      await sleep(1)
      continue
    }
    t.false(served.has(current))
    served.add(current)
    current.release()
  }
  await Promise.all(pending)
  t.true(late.tryAcquire(), 'nothing was left held by the abandoned requests')
  for (const l of [holder, late, ...waiters]) l.close()
})
