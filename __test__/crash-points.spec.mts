// Crash at every step: a process is SIGKILLed at each numbered step of the protocols that
// change shared state (crates/proclock-core/src/crash_points.rs: process registration, creating
// a segment or lock file, naming a slot, acquire, sleep, wake, release, takeover, forced
// release, and the file backend's record), and the lock must then be free or recoverable, with
// `ownerDied` exactly as stated for that step and a token larger than any handed out before.
// "Takeover" cases crash a process in the middle of recovering from an earlier crash.
//
// The children load the native module built with the `crash-points` feature
// (target/crash-points/proclock.node, built by scripts/test.mjs); everything else here, the
// checking included, uses the normal build. A child that reaches the end without crashing fails
// its case: its step was not on the path the case claims to take. The last test checks that the
// cases visit every step the build knows of, so a new step cannot go untested.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import test, { type ExecutionContext } from 'ava'
import { inspect, list, Lock } from 'proclock'
import { lockDir, type Message, sleep, start } from './helpers/procs.mjs'

const crashModule = fileURLToPath(new URL('../../target/crash-points/proclock.node', import.meta.url))

type Backend = 'shm' | 'file'
interface Case {
  step: string
  /** Crash at the n-th arrival at the step (default 1). */
  nth?: number
  backend: Backend
  /**
   * acquire: a fresh directory, nobody else. takeover: a holder was SIGKILLed first, the child
   * crashes while taking over. wait: the test holds, the child waits, the test releases.
   * woken: as wait, with a second waiter in the test. release: the child holds, the test waits,
   * the child releases. force: a holder holds, the child force-releases.
   */
  scenario: 'acquire' | 'takeover' | 'wait' | 'woken' | 'release' | 'force'
  mode?: 'sync' | 'async'
  /** What the next holder must be told. */
  ownerDied: boolean
  why: string
}

const died = 'the child had won the lock, so the lock was held when it died'
const neverHeld = 'the child died before it held the lock'
const cases: Case[] = [
  // Process registration and the files a fresh directory needs.
  { step: 'register-liveness-locked', backend: 'shm', scenario: 'acquire', ownerDied: false, why: neverHeld },
  ...['publish-temp-created', 'publish-temp-sized', 'publish-temp-written', 'publish-renamed'].flatMap((step): Case[] => [
    // shm: the 1st file published in a fresh directory is the process table, the 2nd the lock table.
    { step, nth: 1, backend: 'shm', scenario: 'acquire', ownerDied: false, why: neverHeld },
    { step, nth: 2, backend: 'shm', scenario: 'acquire', ownerDied: false, why: neverHeld },
    // file: the lock file.
    { step, nth: 1, backend: 'file', scenario: 'acquire', ownerDied: false, why: neverHeld },
  ]),
  { step: 'slot-key-claimed', backend: 'shm', scenario: 'acquire', ownerDied: false, why: neverHeld },
  // Acquire: uncontended (the sync path is the raw fast path), after a wait, and as a takeover.
  ...(['async', 'sync'] as const).flatMap((mode): Case[] => [
    { step: 'word-won', backend: 'shm', scenario: 'acquire', mode, ownerDied: true, why: died },
    { step: 'token-stored', backend: 'shm', scenario: 'acquire', mode, ownerDied: true, why: died },
    { step: 'record-half-written', backend: 'shm', scenario: 'acquire', mode, ownerDied: true, why: died },
    { step: 'waiters-bit-set', backend: 'shm', scenario: 'wait', mode, ownerDied: false, why: neverHeld },
    { step: 'word-won', backend: 'shm', scenario: 'wait', mode, ownerDied: true, why: died },
  ]),
  { step: 'word-won', backend: 'shm', scenario: 'takeover', ownerDied: true, why: died },
  { step: 'token-stored', backend: 'shm', scenario: 'takeover', ownerDied: true, why: died },
  { step: 'record-half-written', backend: 'shm', scenario: 'takeover', ownerDied: true, why: died },
  // A sleeper woken by a release dies before using the wake-up: the other sleeper still gets the lock.
  { step: 'woken', backend: 'shm', scenario: 'woken', ownerDied: false, why: 'the lock was released cleanly; the dead child never held it' },
  // Release: the word is free but the sleepers are not woken yet.
  { step: 'word-freed', backend: 'shm', scenario: 'release', ownerDied: false, why: 'the release had completed' },
  // Forced release: the forcer dies holding the word it took.
  {
    step: 'force-took-word',
    backend: 'shm',
    scenario: 'force',
    ownerDied: true,
    why: 'the forced-out holder did not release, and the forcer died holding the word',
  },
  // The file backend's record.
  ...(['async', 'sync'] as const).flatMap((mode): Case[] => [
    {
      step: 'file-kernel-locked',
      backend: 'file',
      scenario: 'acquire',
      mode,
      ownerDied: false,
      why: 'the record still says "free": the child never ran under the lock',
    },
    { step: 'file-record-written', backend: 'file', scenario: 'acquire', mode, ownerDied: true, why: died },
    {
      step: 'file-kernel-locked',
      backend: 'file',
      scenario: 'wait',
      mode,
      ownerDied: false,
      why: 'the test released cleanly and the child never ran under the lock',
    },
    { step: 'file-record-written', backend: 'file', scenario: 'wait', mode, ownerDied: true, why: died },
  ]),
  {
    step: 'file-kernel-locked',
    backend: 'file',
    scenario: 'takeover',
    ownerDied: true,
    why: 'the record still says "held" by the first holder, which died holding',
  },
  { step: 'file-record-written', backend: 'file', scenario: 'takeover', ownerDied: true, why: died },
  { step: 'file-record-freed', backend: 'file', scenario: 'release', ownerDied: false, why: 'the record said "free": the release had completed' },
]

const title = (c: Case) => `${c.backend}: killed at ${c.step}${c.nth ? `@${c.nth}` : ''} during ${c.scenario}${c.mode ? ` (${c.mode})` : ''}`

async function crashAndRecover(t: ExecutionContext, c: Case): Promise<void> {
  t.true(existsSync(crashModule), `the crash-points build is missing (${crashModule}): run npm test`)
  const dir = lockDir()
  const name = 'crash'
  const { backend } = c
  const env = { PROCLOCK_CRASH_AT: `${c.step}@${c.nth ?? 1}`, NAPI_RS_NATIVE_LIBRARY_PATH: crashModule }
  const crasherArgs = { dir, name, backend, mode: c.mode ?? 'async' }
  // The largest token anyone was given before the crash; the next must be larger.
  let before = 0n
  // The acquisition whose ownerDied and token are checked, and when its clock starts. Made
  // before the crash only where it must wait during it: opening a lock creates the directory's
  // files, which the crashing child is meant to create.
  let lock: Lock | undefined
  let pending: Promise<unknown> | undefined
  let bound = 5000
  let startedAt = 0
  const cleanup: Array<() => void> = []
  let afterRecovery: (() => Promise<void>) | undefined

  let crasher
  if (c.scenario === 'acquire' || c.scenario === 'takeover') {
    if (c.scenario === 'takeover') {
      const first = start('holder', { dir, name, then: 'hold', backend })
      before = (await first.next('held')).token as bigint
      first.kill('SIGKILL')
      await first.exited
    }
    crasher = start('crasher', { ...crasherArgs, scenario: 'acquire' }, env)
  } else if (c.scenario === 'wait' || c.scenario === 'woken') {
    const holder = new Lock(name, { dir, backend })
    holder.acquireSync()
    before = holder.token!
    crasher = start('crasher', { ...crasherArgs, scenario: 'wait' }, env)
    await crasher.next('waiting')
    await sleep(250) // asleep in the kernel by now
    if (c.scenario === 'woken') {
      // Queued behind the child, so the release's one wake-up goes to the child, which dies with it.
      lock = new Lock(name, { dir, backend })
      pending = lock.acquire({ timeout: 10_000 })
      await sleep(150)
      // Without that wake-up this waiter finds the lock free at its next timed re-check (1 s).
      bound = 3000
    }
    startedAt = performance.now()
    holder.release()
    cleanup.push(() => holder.close())
  } else if (c.scenario === 'release') {
    crasher = start('crasher', { ...crasherArgs, scenario: 'release' }, env)
    before = (await crasher.next('held')).token as bigint
    lock = new Lock(name, { dir, backend })
    pending = lock.acquire({ timeout: 10_000 })
    await sleep(150)
    startedAt = performance.now()
    crasher.send({ type: 'release' })
    // The release died before waking anyone: the death watch on the child must wake us at once.
    bound = 800
  } else {
    const holder = start('holder', { dir, name, then: 'release', backend })
    before = (await holder.next('held')).token as bigint
    crasher = start('crasher', { ...crasherArgs, scenario: 'force' }, env)
    cleanup.push(() => holder.kill())
    // After recovery: the forced-out holder's release must fail, as after any forced release.
    afterRecovery = async () => {
      holder.send({ type: 'release' })
      const m = await holder.next()
      t.is(m.type, 'release-failed', 'the forced-out holder no longer holds')
      t.is(m.code, 'ELOCKNOTHELD')
    }
  }

  const said: Message[] = []
  crasher.proc.on('message', (m: Message) => said.push(m))
  const exit = await crasher.exited
  // Killed (on Windows, TerminateProcess with exit code 137), never ended by itself.
  const killed = exit.signal === 'SIGKILL' || (process.platform === 'win32' && exit.code === 137)
  t.true(killed, `the child died at ${c.step}; it said ${JSON.stringify(said, (_, v) => (typeof v === 'bigint' ? String(v) : v))}, exit ${JSON.stringify(exit)}`)
  if (startedAt === 0) startedAt = performance.now()

  // Looking at the damage never fails.
  t.notThrows(() => list({ dir }))
  t.notThrows(() => inspect(name, { dir, backend }))

  lock ??= new Lock(name, { dir, backend })
  await (pending ?? lock.acquire({ timeout: 5000 }))
  const took = performance.now() - startedAt
  t.is(lock.ownerDied, c.ownerDied, c.why)
  t.true(lock.token! > before, `token ${lock.token} after ${before}`)
  t.true(took < bound, `recovered in ${took.toFixed(1)} ms (bound ${bound} ms)`)
  const token = lock.token!
  lock.release()
  lock.close()
  await afterRecovery?.()

  // The directory stays healthy for everyone: a process on the normal build takes the lock,
  // is told nothing died, and gets the next token.
  const next = start('holder', { dir, name, then: 'release', backend })
  const held = await next.next('held')
  t.false(held.ownerDied)
  t.true((held.token as bigint) > token)
  next.send({ type: 'release' })
  await next.next('released')
  next.kill()
  for (const f of cleanup) f()
  t.log(`${title(c)}: recovered in ${took.toFixed(1)} ms, ownerDied ${c.ownerDied}`)
}

for (const c of cases) test.serial(title(c), (t) => crashAndRecover(t, c))

test('the cases visit every crash point the core has', (t) => {
  t.true(existsSync(crashModule), `the crash-points build is missing (${crashModule})`)
  const steps = (createRequire(import.meta.url)(crashModule) as { crashSteps(): string[] }).crashSteps()
  t.true(steps.length >= 16)
  t.deepEqual(
    steps.filter((s) => !cases.some((c) => c.step === s)),
    [],
    'crash points no case kills a process at',
  )
})
