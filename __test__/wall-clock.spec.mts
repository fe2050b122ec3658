// Wall-clock jumps must not change timeouts (the README: timeouts count "on a monotonic
// clock"). NTP steps, a user setting the date, a VM resumed from a snapshot or a laptop waking
// up all move the wall clock; a deadline computed on it would then fire at once or hours late.
//
// A child (fixtures/wall-clock.mts) runs under an LD_PRELOAD shim (crates/wallclock-jump,
// built by `npm test`) that flips the wall clock between +1 hour and -1 hour every 60 ms of
// monotonic time, for Node (Date.now()) and for the native module alike. The child first proves
// the shim is active, so these tests cannot pass vacuously. Then, on both backends:
// acquire({timeout: 300}) and acquireSync({timeout: 300}) on a lock this process holds time out
// after 300 ms (monotonic, performance.now()), started just after a jump to either side; and
// acquire({timeout: 3000}) gets the lock when this process releases it after 400 ms.
//
// Linux only: the shim interposes libc's clock functions through LD_PRELOAD.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import test, { type ExecutionContext } from 'ava'
import { Lock } from 'proclock'
import { lockDir, sleep, start, type Child } from './helpers/procs.mjs'

const HOUR = 3_600_000
const TIMEOUT = 300
// How late a timeout may end and still count as on time: generous, because this machine may
// be busy with other tests, and the failures looked for are "at once" and "an hour late".
const LATE = 700
const root = fileURLToPath(new URL('../..', import.meta.url))

/** The shim, where `cargo build -p wallclock-jump` puts it (honouring CARGO_TARGET_DIR, the
 * workspace's configured target dir and CARGO_BUILD_TARGET). */
function shimPath(): string {
  let targetDir: string
  try {
    const metadata = execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps', '--offline'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    targetDir = JSON.parse(metadata).target_directory
  } catch {
    targetDir = process.env.CARGO_TARGET_DIR ?? join(root, 'target')
  }
  const triple = process.env.CARGO_BUILD_TARGET
  return join(targetDir, ...(triple ? [triple] : []), 'debug', 'libwallclock_jump.so')
}

/** Is `wall` an hour away from the real time `real`, either way (within 5 minutes)? */
const hourOff = (wall: number, real: number) => Math.abs(Math.abs(wall - real) - HOUR) < 5 * 60_000

/** A child running under the shim, which has proved that its wall clock jumps. */
async function shimmed(t: ExecutionContext, dir: string): Promise<Child> {
  const shim = shimPath()
  if (!existsSync(shim)) throw new Error(`${shim} is missing: build it with \`cargo build -p wallclock-jump\` (npm test does)`)
  const child = start('wall-clock', { dir }, { LD_PRELOAD: shim })
  const { reads } = (await child.next('shim', 30_000)) as unknown as { reads: number[] }
  const real = Date.now()
  const jumps = reads.slice(1).map((r, i) => r - reads[i])
  t.log(`Date.now() in the child, read 60 ms apart: ${reads.map((r) => `${((r - real) / HOUR).toFixed(2)} h`).join(', ')} from the real time`)
  if (!jumps.some((j) => Math.abs(j) > 30 * 60_000)) {
    child.kill()
    throw new Error(`the shim is not active: Date.now() did not jump by more than 30 minutes between reads 60 ms apart (${jumps.join(', ')} ms)`)
  }
  t.true(reads.every((r) => hourOff(r, real)), 'every read is an hour off')
  return child
}

if (process.platform !== 'linux') {
  test.skip('wall-clock jumps do not change timeouts: Linux only (the shim is an LD_PRELOAD library interposing libc clock functions)', () => {})
} else {
  test.serial("the shim reaches the native module: owner().since (the native module's wall clock) jumps too", async (t) => {
    const dir = lockDir()
    const child = await shimmed(t, dir)
    for (const backend of ['shm', 'file'] as const) {
      child.send({ type: 'since', backend, name: `since-${backend}` })
      const { since } = (await child.next('since', 30_000)) as unknown as { since: number[] }
      const real = Date.now()
      t.log(`${backend}: since, 60 ms apart: ${since.map((s) => `${((s - real) / HOUR).toFixed(2)} h`).join(', ')} from the real time`)
      t.true(since.every((s) => hourOff(s, real)), `${backend}: every since is an hour off`)
      t.true(since.some((s) => s > real) && since.some((s) => s < real), `${backend}: since seen on both sides of the real time`)
    }
    child.kill()
  })

  for (const backend of ['shm', 'file'] as const) {
    test.serial(`${backend}: acquire and acquireSync({timeout: ${TIMEOUT}}) take ${TIMEOUT} ms while the wall clock jumps by an hour`, async (t) => {
      const dir = lockDir()
      const name = `held-${backend}`
      const lock = new Lock(name, { dir, backend })
      t.true(lock.tryAcquire())
      const child = await shimmed(t, dir)
      child.send({ type: 'timeouts', backend, name })
      for (let i = 0; i < 4; i++) {
        const a = (await child.next('attempt', 15_000)) as unknown as { api: string; side: number }
        const what = `${a.api}({timeout: ${TIMEOUT}}) started just after a jump to ${a.side > 0 ? '+' : '-'}1 h`
        // A deadline an hour late would never end: the wait for it is bounded.
        let r: { ms: number; code: string | null }
        try {
          r = (await child.next('result', 5_000)) as unknown as typeof r
        } catch {
          child.kill()
          t.fail(`${backend}: ${what} had not ended 5 s later`)
          return
        }
        t.log(`${backend}: ${what}: ${r.ms.toFixed(1)} ms`)
        t.is(r.code, 'ELOCKTIMEOUT', `${what}: timed out (the lock is held here)`)
        t.true(r.ms >= TIMEOUT - 1, `${what}: ended after ${r.ms.toFixed(1)} ms, before its timeout`)
        t.true(r.ms <= TIMEOUT + LATE, `${what}: ended after ${r.ms.toFixed(1)} ms, far past its timeout`)
      }
      t.true(lock.held, 'never stolen')
      lock.close()
      child.kill()
    })

    test.serial(`${backend}: acquire({timeout: 3000}) gets the lock released 400 ms later while the wall clock jumps`, async (t) => {
      const dir = lockDir()
      const name = `handoff-${backend}`
      const lock = new Lock(name, { dir, backend })
      t.true(lock.tryAcquire())
      const child = await shimmed(t, dir)
      child.send({ type: 'handoff', backend, name })
      await child.next('waiting', 15_000)
      await sleep(400)
      lock.release()
      const { ms } = (await child.next('acquired', 15_000)) as unknown as { ms: number }
      t.log(`${backend}: acquired ${ms.toFixed(1)} ms after the wait began`)
      t.true(ms >= 400, `got the lock after ${ms.toFixed(1)} ms, before it was released`)
      t.true(ms <= 400 + LATE, `got the lock ${ms.toFixed(1)} ms after the wait began, long after the release at 400 ms`)
      lock.close()
      child.kill()
    })
  }
}
