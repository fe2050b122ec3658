// singleInstance() across real processes: the second instance's message and exit code, 'throw',
// takeover after the primary is SIGKILLed, 20 processes started at once, the default name.
import { spawn } from 'node:child_process'
import { realpathSync } from 'node:fs'
import test from 'ava'
import { singleInstance } from 'proclock'
import { fixture, lockDir, start } from './helpers/procs.mjs'

/** Run the instance fixture without IPC, capturing stderr. */
function runPlain(args: Record<string, unknown>): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [fixture('instance'), JSON.stringify(args)], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr })))
}

test.serial('a second instance prints the exact message to stderr and exits with code 1', async (t) => {
  const dir = lockDir()
  const primary = start('instance', { name: 'my-daemon', dir })
  const p = await primary.next('primary')
  const second = await runPlain({ name: 'my-daemon', dir })
  t.is(second.code, 1)
  t.is(second.stderr, `Another 'my-daemon' process is already running (pid ${p.pid}).\n`)
  primary.kill()
})

test.serial("onConflict 'throw' throws AlreadyRunningError with the primary's pid; takeover after SIGKILL", async (t) => {
  const dir = lockDir()
  const primary = start('instance', { name: 'svc', dir })
  const p = await primary.next('primary')
  t.false(p.ownerDied)
  const second = start('instance', { name: 'svc', dir, onConflict: 'throw' })
  const conflict = await second.next('conflict')
  t.is(conflict.code, 'EALREADYRUNNING')
  t.is(conflict.name, 'AlreadyRunningError')
  t.is(conflict.pid, p.pid)
  t.is(conflict.message, `Another 'svc' process is already running (pid ${p.pid}).`)
  primary.kill('SIGKILL')
  await primary.exited
  const next = start('instance', { name: 'svc', dir })
  const took = await next.next('primary')
  t.true(took.ownerDied, 'the new primary is told the old one died holding')
  next.kill()
})

test.serial('20 processes started at once give exactly one primary', async (t) => {
  const dir = lockDir()
  const children = Array.from({ length: 20 }, () => start('instance', { name: 'race', dir, onConflict: 'throw' }))
  const outcomes = await Promise.all(children.map((c) => c.next()))
  const primaries = outcomes.filter((m) => m.type === 'primary')
  const conflicts = outcomes.filter((m) => m.type === 'conflict')
  t.is(primaries.length, 1, `primaries: ${JSON.stringify(primaries)}`)
  t.is(conflicts.length, 19)
  for (const c of conflicts) {
    t.is(c.code, 'EALREADYRUNNING')
    t.is(c.pid, primaries[0].pid, 'every loser names the primary')
  }
  for (const c of children) c.kill()
})

test.serial("the default name is the main script's real path", async (t) => {
  const dir = lockDir()
  const primary = start('instance', { dir })
  const p = await primary.next('primary')
  const second = await runPlain({ dir })
  t.is(second.code, 1)
  t.is(second.stderr, `Another '${realpathSync(fixture('instance'))}' process is already running (pid ${p.pid}).\n`)
  // A process running another script is not a second instance.
  const other = singleInstance(undefined, { dir, onConflict: 'throw' })
  t.true(other.held)
  other.close()
  primary.kill()
})

test('bad arguments get clear errors', (t) => {
  t.throws(() => singleInstance('', { onConflict: 'throw' }), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => singleInstance('x', { onConflict: 'ignore' as 'exit' }), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => singleInstance('x', 5 as never), { code: 'ERR_INVALID_ARG_TYPE' })
})
