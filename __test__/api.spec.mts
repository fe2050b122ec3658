// The Lock contract (the README's API and "Rules every lock keeps"): timeouts, abort, reentry, release rules, close,
// disposal, tokens, owner info, and errors with their codes for bad input.
import test from 'ava'
import {
  Lock,
  LockClosedError,
  LockNotHeldError,
  LockReentryError,
  LockTimeoutError,
  ProcLockError,
  withLock,
} from 'proclock'
import { lockDir, sleep, start } from './helpers/procs.mjs'

const dir = lockDir()
let counter = 0
/** Two handles on a fresh lock name. */
function pair(options: { reentrant?: boolean; backend?: 'shm' | 'file' } = {}): [Lock, Lock] {
  const name = `api-${counter++}`
  return [new Lock(name, { dir, ...options }), new Lock(name, { dir, backend: options.backend })]
}

// The contract holds on both backends.
for (const backend of ['shm', 'file'] as const) {
  test(`${backend}: timeout 0 is one try, small timeouts time out on a monotonic clock, Infinity waits`, async (t) => {
    const [a, b] = pair({ backend })
    a.acquireSync()
    const e0 = t.throws(() => b.acquireSync({ timeout: 0 }), { instanceOf: LockTimeoutError })
    t.is(e0?.code, 'ELOCKTIMEOUT')
    t.true(e0 instanceof ProcLockError)
    await t.throwsAsync(b.acquire({ timeout: 0 }), { instanceOf: LockTimeoutError, code: 'ELOCKTIMEOUT' })

    let started = performance.now()
    t.throws(() => b.acquireSync({ timeout: 60 }), { code: 'ELOCKTIMEOUT' })
    const syncWaited = performance.now() - started
    started = performance.now()
    await t.throwsAsync(b.acquire({ timeout: 60 }), { code: 'ELOCKTIMEOUT' })
    const asyncWaited = performance.now() - started
    t.true(syncWaited >= 59 && syncWaited < 1000, `sync waited ${syncWaited} ms`)
    t.true(asyncWaited >= 59 && asyncWaited < 1000, `async waited ${asyncWaited} ms`)
    t.false(b.held)

    const waiting = b.acquire({ timeout: Infinity })
    setTimeout(() => a.release(), 80)
    await waiting
    t.true(b.held)
    b.release()
    a.close()
    b.close()
  })

  test(`${backend}: an aborted acquire rejects with AbortError and leaves nothing held`, async (t) => {
    const [a, b] = pair({ backend })
    a.acquireSync()
    const controller = new AbortController()
    const waiting = b.acquire({ signal: controller.signal })
    setTimeout(() => controller.abort(new Error('stop waiting')), 30)
    const started = performance.now()
    const error = await t.throwsAsync(waiting)
    t.is(error?.name, 'AbortError')
    t.is((error as Error & { code: string }).code, 'ABORT_ERR')
    t.is((error?.cause as Error).message, 'stop waiting')
    t.false(error instanceof ProcLockError)
    t.true(performance.now() - started < 500, 'the abort was prompt')
    t.false(b.held)
    a.release()
    const c = new Lock(a.name, { dir, backend })
    t.true(c.tryAcquire(), 'nothing stayed held after the abort')
    c.close()

    // An already-aborted signal fails at once, sync and async.
    const aborted = AbortSignal.abort('no')
    t.throws(() => b.acquireSync({ signal: aborted }), { name: 'AbortError' })
    await t.throwsAsync(b.acquire({ signal: aborted }), { name: 'AbortError' })
    t.false(b.held)

    // The handle is usable after an abort.
    await b.acquire({ timeout: 1000 })
    t.true(b.held)
    a.close()
    b.close()
  })

  test(`${backend}: abort racing the release never leaves the lock held`, async (t) => {
    const [a, b] = pair({ backend })
    for (let i = 0; i < 50; i++) {
      a.acquireSync()
      const controller = new AbortController()
      const waiting = b.acquire({ signal: controller.signal }).then(
        () => 'acquired',
        (e: Error) => e.name,
      )
      await sleep(1)
      a.release()
      controller.abort()
      const outcome = await waiting
      t.true(outcome === 'AbortError', `outcome ${outcome}`)
      t.false(b.held)
    }
    a.close()
    b.close()
  })

  test(`${backend}: acquiring again while holding throws LockReentryError unless reentrant`, async (t) => {
    const [a] = pair({ backend })
    a.acquireSync()
    t.throws(() => a.acquireSync(), { instanceOf: LockReentryError, code: 'ELOCKREENTRY' })
    t.throws(() => a.tryAcquire(), { instanceOf: LockReentryError })
    await t.throwsAsync(a.acquire(), { instanceOf: LockReentryError })
    t.true(a.held, 'the failed reentry did not disturb the hold')
    a.close()

    const [r, other] = pair({ reentrant: true, backend })
    r.acquireSync()
    const token = r.token
    t.true(r.tryAcquire())
    await r.acquire()
    t.is(r.token, token, 'a nested hold is the same hold')
    r.release()
    r.release()
    t.true(r.held, 'held until the last release')
    t.false(other.tryAcquire())
    r.release()
    t.false(r.held)
    t.true(other.tryAcquire())
    t.throws(() => r.release(), { instanceOf: LockNotHeldError })
    r.close()
    other.close()
  })

  test(`${backend}: one acquisition in flight per handle`, async (t) => {
    const [a, b] = pair({ backend })
    a.acquireSync()
    const first = b.acquire()
    await t.throwsAsync(b.acquire(), { instanceOf: LockReentryError })
    t.throws(() => b.tryAcquire(), { instanceOf: LockReentryError })
    a.release()
    await first
    t.true(b.held)
    a.close()
    b.close()
  })

  test(`${backend}: release without holding throws LockNotHeldError`, (t) => {
    const [a, b] = pair({ backend })
    t.throws(() => a.release(), { instanceOf: LockNotHeldError, code: 'ELOCKNOTHELD' })
    b.acquireSync()
    t.throws(() => a.release(), { instanceOf: LockNotHeldError }, "another handle's hold cannot be released")
    t.true(b.held)
    a.close()
    b.close()
  })

  test(`${backend}: close releases, rejects a pending acquire, and is idempotent`, async (t) => {
    const [a, b] = pair({ backend })
    a.acquireSync()
    const pending = b.acquire()
    b.close()
    await t.throwsAsync(pending, { instanceOf: LockClosedError, code: 'ELOCKCLOSED' })
    a.close()
    a.close()
    const c = new Lock(a.name, { dir, backend })
    t.true(c.tryAcquire(), 'close released the hold')
    for (const call of [() => a.tryAcquire(), () => a.acquireSync(), () => a.release(), () => a.isLocked(), () => a.owner()]) {
      t.throws(call, { instanceOf: LockClosedError })
    }
    await t.throwsAsync(a.acquire(), { instanceOf: LockClosedError })
    await t.throwsAsync(a.hold(), { instanceOf: LockClosedError })
    t.false(a.held)
    t.is(a.token, null)
    c.close()
  })

  test(`${backend}: Symbol.dispose and Symbol.asyncDispose on Lock and Hold, with using`, async (t) => {
    const [a, b] = pair({ backend })
    {
      using hold = a.holdSync()
      t.true(a.held)
      t.is(typeof hold.token, 'bigint')
      t.false(b.tryAcquire())
    }
    t.false(a.held, 'using released the hold')
    {
      await using hold = await a.hold({ timeout: 1000 })
      t.true(a.held)
      t.is(hold.ownerDied, false)
    }
    t.false(a.held)
    {
      using lock = new Lock(a.name, { dir, backend })
      lock.acquireSync()
    }
    t.true(b.tryAcquire(), 'disposing the Lock closed (and released) it')
    b.release()
    const hold = a.holdSync()
    hold.release()
    t.throws(() => hold.release(), { instanceOf: LockNotHeldError })
    hold[Symbol.dispose]() // disposing an ended hold is a no-op
    await a[Symbol.asyncDispose]()
    t.throws(() => a.tryAcquire(), { instanceOf: LockClosedError })
    b.close()
  })

  test(`${backend}: fencing tokens strictly increase across handles and processes`, async (t) => {
    const [a, b] = pair({ backend })
    const tokens: bigint[] = []
    for (let i = 0; i < 20; i++) {
      const lock = i % 2 ? a : b
      lock.acquireSync()
      tokens.push(lock.token!)
      lock.release()
    }
    const child = start('holder', { dir, name: a.name, then: 'release', backend })
    const held = await child.next('held')
    child.send({ type: 'release' })
    await child.next('released')
    child.kill()
    tokens.push(held.token as bigint)
    a.acquireSync()
    tokens.push(a.token!)
    for (let i = 1; i < tokens.length; i++) t.true(tokens[i] > tokens[i - 1], `token ${tokens[i]} after ${tokens[i - 1]}`)
    a.close()
    b.close()
  })

  test(`${backend}: owner() and isLocked() describe the holder`, async (t) => {
    const [a, b] = pair({ backend })
    t.is(b.owner(), null)
    t.false(b.isLocked())
    const before = Date.now()
    a.acquireSync({ description: 'writing the report' })
    const o = b.owner()!
    t.is(o.pid, process.pid)
    t.is(o.uuid, a.uuid)
    t.regex(a.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    t.not(a.uuid, b.uuid)
    t.is(o.description, 'writing the report')
    t.is(o.token, a.token!)
    t.true(o.alive)
    t.true(o.since >= before - 20 && o.since <= Date.now() + 20, `since ${o.since}`)
    t.true(b.isLocked())
    t.true(a.isLocked())
    a.release()
    t.is(b.owner(), null)
    a.close()
    b.close()

    const described = new Lock(`api-${counter++}`, { dir, backend, description: 'default text' })
    described.acquireSync()
    t.is(described.owner()?.description, 'default text')
    described.release()
    t.true(described.tryAcquire({ description: 'é'.repeat(128) }))
    t.is(described.owner()?.description, 'é'.repeat(128))
    described.close()
  })

  test(`${backend}: withLock and run hold the lock around the function and release on error`, async (t) => {
    const name = `api-${counter++}`
    const probe = new Lock(name, { dir, backend })
    const value = await withLock(name, () => {
      t.false(probe.tryAcquire())
      return 42
    }, { dir, backend })
    t.is(value, 42)
    t.true(probe.tryAcquire())
    probe.release()
    await t.throwsAsync(withLock(name, async () => { throw new Error('boom') }, { dir, backend }), { message: 'boom' })
    t.true(probe.tryAcquire(), 'released after the function threw')
    probe.release()
    const lock = new Lock(name, { dir, backend })
    t.is(await lock.run(async () => { await sleep(5); return lock.held }), true)
    t.false(lock.held)
    lock.close()
    probe.close()
  })
}

test('bad names get TypeError/RangeError with Node codes', (t) => {
  const cases: Array<[unknown, string, string]> = [
    [42, 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    [undefined, 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['', 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['a\0b', 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['\uD800', 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['x'.repeat(256), 'RangeError', 'ERR_INVALID_ARG_VALUE'],
    ['é'.repeat(128), 'RangeError', 'ERR_INVALID_ARG_VALUE'],
  ]
  for (const [name, type, code] of cases) {
    const e = t.throws(() => new Lock(name as string, { dir }))
    t.is(e?.constructor.name, type, `name ${JSON.stringify(name)}`)
    t.is((e as Error & { code: string }).code, code)
  }
  for (const ok of ['x'.repeat(255), 'é'.repeat(127), '../../etc/passwd', 'a/b', '..', 'CON', '日本語のロック']) {
    const lock = new Lock(ok, { dir })
    t.true(lock.tryAcquire(), ok)
    lock.close()
  }
})

test('bad options get TypeError/RangeError with Node codes', async (t) => {
  const [a] = pair()
  const code = (e: unknown) => (e as { code: string }).code
  t.is(code(t.throws(() => new Lock('x', 'nope' as never), { instanceOf: TypeError })), 'ERR_INVALID_ARG_TYPE')
  t.is(code(t.throws(() => new Lock('x', { dir, reentrant: 'yes' as never }), { instanceOf: TypeError })), 'ERR_INVALID_ARG_TYPE')
  t.is(code(t.throws(() => new Lock('x', { dir, backend: 'nfs' as never }), { instanceOf: TypeError })), 'ERR_INVALID_ARG_VALUE')
  t.is(code(t.throws(() => new Lock('x', { dir, description: 'd'.repeat(257) }), { instanceOf: RangeError })), 'ERR_INVALID_ARG_VALUE')
  t.is(code(t.throws(() => new Lock('x', { dir: '' }), { instanceOf: TypeError })), 'ERR_INVALID_ARG_VALUE')
  t.is(code(t.throws(() => a.acquireSync({ timeout: -1 }), { instanceOf: RangeError })), 'ERR_OUT_OF_RANGE')
  t.is(code(t.throws(() => a.acquireSync({ timeout: NaN }), { instanceOf: RangeError })), 'ERR_OUT_OF_RANGE')
  t.is(code(t.throws(() => a.acquireSync({ timeout: '5' as never }), { instanceOf: TypeError })), 'ERR_INVALID_ARG_TYPE')
  t.is(code(t.throws(() => a.acquireSync({ signal: {} as never }), { instanceOf: TypeError })), 'ERR_INVALID_ARG_TYPE')
  t.is(code(t.throws(() => a.tryAcquire({ description: 'd'.repeat(257) }), { instanceOf: RangeError })), 'ERR_INVALID_ARG_VALUE')
  t.is(code(t.throws(() => a.tryAcquire({ description: 7 as never }), { instanceOf: TypeError })), 'ERR_INVALID_ARG_TYPE')
  t.is(code(await t.throwsAsync(a.acquire({ timeout: NaN }), { instanceOf: RangeError })), 'ERR_OUT_OF_RANGE')
  t.is(code(await t.throwsAsync(a.acquire({ timeout: -5 }), { instanceOf: RangeError })), 'ERR_OUT_OF_RANGE')
  t.is(code(await t.throwsAsync(withLock('x', 'not a function' as never, { dir }), { instanceOf: TypeError })), 'ERR_INVALID_ARG_TYPE')
  t.false(a.held, 'nothing was acquired by a rejected call')
  a.close()
})
