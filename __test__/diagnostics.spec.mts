// Diagnostics: diagnostics_channel subscribers receive acquired, released, owner-died and
// timeout events with their documented shapes; NODE_DEBUG=proclock logs through util.debuglog
// and nothing is logged without it.
import { spawnSync } from 'node:child_process'
import diagnosticsChannel from 'node:diagnostics_channel'
import { fileURLToPath } from 'node:url'
import test from 'ava'
import { forceRelease, Lock } from 'proclock'
import { lockDir, sleep, start } from './helpers/procs.mjs'

const names = ['acquired', 'released', 'owner-died', 'timeout'] as const
type Event = [string, Record<string, unknown>]

/** Record every proclock event published while `fn` runs. */
async function recording(fn: () => Promise<void> | void): Promise<Event[]> {
  const events: Event[] = []
  const subscribers = names.map((n) => {
    const s = (message: unknown) => events.push([n, message as Record<string, unknown>])
    diagnosticsChannel.subscribe(`proclock:${n}`, s)
    return [n, s] as const
  })
  try {
    await fn()
  } finally {
    for (const [n, s] of subscribers) diagnosticsChannel.unsubscribe(`proclock:${n}`, s)
  }
  return events
}

// Channels are process-wide, so these tests run one at a time.
test.serial('acquired and released, from every way of taking a lock, with the documented shapes', async (t) => {
  const dir = lockDir()
  const lock = new Lock('ch', { dir, reentrant: true })
  const other = new Lock('ch', { dir })
  const events = await recording(async () => {
    lock.tryAcquire()
    lock.tryAcquire() // reentrant: counted, not a new hold
    lock.release()
    lock.release()
    lock.acquireSync()
    lock.release()
    await lock.acquire()
    // A waiting acquire reports how long it waited.
    const waiting = other.acquire()
    setTimeout(() => lock.release(), 60)
    await waiting
    other.close()
  })
  // Tokens count from a time-based start (so that they keep growing across a re-created lock
  // directory): shown here relative to the one before the first.
  const base = (events[0][1].token as bigint) - 1n
  const shapes = events.map(([n, m]) => [n, m.name, (m.token as bigint) - base, m.ownerDied])
  t.deepEqual(shapes, [
    ['acquired', 'ch', 1n, false], // the nested tryAcquire of the reentrant lock is not a new hold
    ['released', 'ch', 1n, undefined], // ...and only its last release releases
    ['acquired', 'ch', 2n, false],
    ['released', 'ch', 2n, undefined],
    ['acquired', 'ch', 3n, false],
    ['released', 'ch', 3n, undefined],
    ['acquired', 'ch', 4n, false],
    ['released', 'ch', 4n, undefined],
  ])
  t.deepEqual(Object.keys(events[0][1]), ['lock', 'name', 'token', 'ownerDied', 'waitedMs'])
  t.deepEqual(Object.keys(events[1][1]), ['lock', 'name', 'token'])
  t.is(events[0][1].lock, lock)
  t.is(events[0][1].waitedMs, 0)
  t.is(events[6][1].lock, other)
  t.true((events[6][1].waitedMs as number) >= 40, `waited ${String(events[6][1].waitedMs)} ms`)
  t.is(events[7][1].lock, other, 'close() of a holding lock is a release')

  // Once nobody listens, nothing more is recorded.
  const count = events.length
  lock.tryAcquire()
  lock.release()
  t.is(events.length, count)
  lock.close()
})

test.serial('timeout: from acquire, acquireSync and a zero timeout; tryAcquire failing is not a timeout', async (t) => {
  const dir = lockDir()
  const holder = new Lock('busy', { dir })
  holder.acquireSync()
  const lock = new Lock('busy', { dir })
  const events = await recording(async () => {
    t.false(lock.tryAcquire())
    await t.throwsAsync(lock.acquire({ timeout: 30 }), { code: 'ELOCKTIMEOUT' })
    t.throws(() => lock.acquireSync({ timeout: 20 }), { code: 'ELOCKTIMEOUT' })
    await t.throwsAsync(lock.acquire({ timeout: 0 }), { code: 'ELOCKTIMEOUT' })
  })
  t.deepEqual(
    events.map(([n, m]) => [n, m.name, m.timeout, m.lock === lock]),
    [
      ['timeout', 'busy', 30, true],
      ['timeout', 'busy', 20, true],
      ['timeout', 'busy', 0, true],
    ],
  )
  holder.close()
  lock.close()
})

test.serial('owner-died: a takeover from a killed holder, and from a forced release', async (t) => {
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'victim', then: 'hold' })
  const held = await holder.next('held')
  const lock = new Lock('victim', { dir })
  const events = await recording(async () => {
    const waiting = lock.acquire({ timeout: 10_000 })
    await sleep(20)
    holder.kill('SIGKILL')
    await waiting
    lock.release()
    const again = start('holder', { dir, name: 'victim', then: 'hold' })
    await again.next('held')
    forceRelease('victim', { dir })
    t.true(lock.tryAcquire())
    lock.release()
    again.kill()
  })
  const got = events.filter(([n]) => n !== 'released').map(([n, m]) => [n, m.ownerDied])
  t.deepEqual(got, [
    ['acquired', true],
    ['owner-died', undefined],
    ['acquired', true],
    ['owner-died', undefined],
  ])
  const died = events.find(([n]) => n === 'owner-died')![1]
  t.deepEqual(Object.keys(died), ['lock', 'name', 'token'])
  t.is(died.lock, lock)
  t.true((died.token as bigint) > (held.token as bigint))
  lock.close()
})

const script = (dir: string) => `
  const { Lock } = require(${JSON.stringify(fileURLToPath(new URL('../../dist/index.js', import.meta.url)))})
  const a = new Lock('logged', { dir: ${JSON.stringify(dir)} })
  const b = new Lock('logged', { dir: ${JSON.stringify(dir)} })
  a.tryAcquire()
  try { b.acquireSync({ timeout: 10 }) } catch {}
  a.release()
  a.close(); b.close()`

test.serial('NODE_DEBUG=proclock logs through util.debuglog; nothing without it', (t) => {
  const dir = lockDir()
  const logged = spawnSync(process.execPath, ['-e', script(dir)], { env: { ...process.env, NODE_DEBUG: 'proclock' }, encoding: 'utf8' })
  t.is(logged.status, 0, logged.stderr)
  const pid = logged.pid
  const lines = logged.stderr.trim().split('\n')
  t.deepEqual(
    lines.map((l) => l.replace(/waited=[\d.]+ms/, 'waited=Nms').replace(/token=\d+/, 'token=T')),
    [
      `PROCLOCK ${pid}: acquired "logged" token=T ownerDied=false waited=Nms`,
      `PROCLOCK ${pid}: waiting for "logged" (timeout 10 ms)`,
      `PROCLOCK ${pid}: timeout: "logged" not acquired within 10 ms`,
      `PROCLOCK ${pid}: released "logged" token=T`,
    ],
  )
  const [acquiredToken, releasedToken] = [lines[0], lines[3]].map((l) => l.match(/token=(\d+)/)?.[1])
  t.is(acquiredToken, releasedToken)
  const silent = spawnSync(process.execPath, ['-e', script(lockDir())], { env: { ...process.env, NODE_DEBUG: '' }, encoding: 'utf8' })
  t.is(silent.status, 0)
  t.is(silent.stderr, '')
})
