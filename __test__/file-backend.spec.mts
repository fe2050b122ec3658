// The file backend (kernel file locks) across real processes: SIGKILL recovery, death by clean
// exit, a spawned child outliving its parent, the close() hazard, owner info read without
// taking the lock, a frozen holder, waiting without the libuv pool, timeouts and aborts.
import { readdirSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'ava'
import { Lock } from 'proclock'
import { lockDir, percentile, sleep, start } from './helpers/procs.mjs'

const ROUNDS = Number(process.env.PROCLOCK_KILL_ROUNDS ?? 20)
const backend = 'file' as const

function lockFileOf(dir: string): string {
  const files = readdirSync(dir).filter((f) => /^file-[0-9a-f]{32}\.lock$/.test(f))
  if (files.length !== 1) throw new Error(`expected one lock file in ${dir}, found ${files.join(', ')}`)
  return join(dir, files[0])
}

test.serial(`file: a SIGKILLed holder's lock goes to the waiter (${ROUNDS} rounds)`, async (t) => {
  const dir = lockDir()
  const lock = new Lock('victim', { dir, backend })
  const latencies: number[] = []
  let lastToken = 0n
  for (let round = 0; round < ROUNDS; round++) {
    const holder = start('holder', { dir, name: 'victim', then: 'hold', backend, description: `round ${round}` })
    const held = await holder.next('held')
    const holderToken = held.token as bigint
    t.true(holderToken > lastToken, 'tokens increase across rounds, takeovers included')
    t.false(lock.tryAcquire(), 'the live holder is not stolen from')
    const owner = lock.owner()
    t.is(owner?.pid, holder.proc.pid)
    t.is(owner?.description, `round ${round}`)
    t.is(owner?.token, holderToken)
    t.true(owner?.alive)
    const waiting = lock.acquire({ timeout: 10_000 })
    await sleep(20 + (round % 5) * 7)
    const killedAt = performance.now()
    holder.kill('SIGKILL')
    await waiting
    latencies.push(performance.now() - killedAt)
    t.true(lock.ownerDied, 'the next holder is told the owner died')
    t.true(lock.token! > holderToken)
    lastToken = lock.token!
    lock.release()
    await holder.exited
  }
  t.log(
    `file recovery after SIGKILL over ${ROUNDS} rounds: p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms`,
  )
  t.true(percentile(latencies, 99) < 1000, 'the kernel frees the lock when the holder dies')
  lock.close()
})

test.serial('file: a holder that exits cleanly while holding has died holding; a clean release has not', async (t) => {
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'exit', then: 'exit', backend })
  const held = await holder.next('held')
  const lock = new Lock('exit', { dir, backend })
  t.false(lock.tryAcquire())
  holder.send({ type: 'exit' })
  await holder.exited
  await lock.acquire({ timeout: 5000 })
  t.true(lock.ownerDied)
  t.true(lock.token! > (held.token as bigint))
  lock.release()

  const polite = start('holder', { dir, name: 'exit', then: 'release', backend })
  await polite.next('held')
  const waiting = lock.acquire({ timeout: 5000 })
  polite.send({ type: 'release' })
  await waiting
  t.false(lock.ownerDied)
  polite.kill()
  lock.close()
})

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

test.serial('file: a holder whose spawned child outlives it does not keep the lock (no inherited descriptors)', async (t) => {
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'parent', then: 'spawn', backend })
  const spawned = await holder.next('spawned')
  await holder.next('held')
  holder.kill('SIGKILL')
  await holder.exited
  const lock = new Lock('parent', { dir, backend })
  try {
    const started = performance.now()
    await lock.acquire({ timeout: 1000 })
    t.true(lock.ownerDied)
    t.log(`acquired ${(performance.now() - started).toFixed(1)} ms after the holder died, its child still running`)
    process.kill(spawned.pid as number, 0)
  } finally {
    try {
      process.kill(spawned.pid as number, 'SIGKILL')
    } catch {}
    lock.close()
  }
})

;(process.platform === 'win32' ? test.skip : test.serial)('file: a frozen holder (SIGSTOP) keeps its lock', async (t) => {
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'frozen', then: 'release', backend })
  await holder.next('held')
  holder.kill('SIGSTOP')
  const lock = new Lock('frozen', { dir, backend })
  try {
    await t.throwsAsync(lock.acquire({ timeout: 300 }), { code: 'ELOCKTIMEOUT' })
    t.throws(() => lock.acquireSync({ timeout: 100 }), { code: 'ELOCKTIMEOUT' })
    t.false(lock.tryAcquire())
    t.true(lock.owner()?.alive)
  } finally {
    holder.kill('SIGCONT')
  }
  const waiting = lock.acquire({ timeout: 5000 })
  holder.send({ type: 'release' })
  await holder.next('released')
  await waiting
  t.false(lock.ownerDied)
  holder.kill()
  lock.close()
})

test.serial('file: a dead holder shows as not alive until someone takes over', async (t) => {
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'ghost', then: 'hold', backend, description: 'nightly job' })
  await holder.next('held')
  holder.kill('SIGKILL')
  await holder.exited
  const lock = new Lock('ghost', { dir, backend })
  const owner = lock.owner()
  t.is(owner?.description, 'nightly job')
  t.is(owner?.pid, holder.proc.pid)
  t.false(owner?.alive)
  t.false(lock.isLocked())
  t.true(lock.tryAcquire())
  t.true(lock.ownerDied)
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
