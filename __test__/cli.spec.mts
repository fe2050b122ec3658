// The `proclock` command against real processes: exit codes, pass-through of the command's
// status and signals, conflicts and timeouts, JSON output checked against a holder this test
// started, trace seeing holders change, forced release, hold.
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import { inspect, Lock } from 'proclock'
import { cli, cliPath, startCli, version } from './helpers/cli.mjs'
import { lockDir, sleep, start } from './helpers/procs.mjs'

const node = process.execPath
const json = (text: string) => JSON.parse(text) as { name: string; locked: boolean; owner: null | Record<string, unknown> }

test('--version, --help, help for each command, and usage errors exit 2 with a hint', async (t) => {
  const v = await cli(['--version'])
  t.is(v.code, 0)
  t.is(v.stdout.trim(), version)
  const help = await cli(['--help'])
  t.is(help.code, 0)
  for (const command of ['run', 'hold', 'state', 'list', 'trace', 'release']) {
    t.regex(help.stdout, new RegExp(`^  ${command} `, 'm'))
    const h = await cli([command, '--help'])
    t.is(h.code, 0, command)
    t.true(h.stdout.startsWith(`Usage: proclock ${command}`), h.stdout)
    t.regex(h.stdout, /--dir DIR/)
  }
  t.regex((await cli(['help', 'trace'])).stdout, /^Usage: proclock trace/)

  const unknown = await cli(['frobnicate'])
  t.is(unknown.code, 2)
  t.regex(unknown.stderr, /unknown command "frobnicate"/)
  const none = await cli([])
  t.is(none.code, 2)
  t.regex(none.stderr, /^Usage: proclock COMMAND/)
  const missing = await cli(['state'])
  t.is(missing.code, 2)
  t.regex(missing.stderr, /missing NAME[\s\S]*Try 'proclock state --help'/)
  const badOption = await cli(['state', 'x', '--bogus'])
  t.is(badOption.code, 2)
  t.regex(badOption.stderr, /ERR_PARSE_ARGS_UNKNOWN_OPTION/)
  const badNumber = await cli(['run', 'x', '--timeout', 'soon', '--', node, '-e', ''])
  t.is(badNumber.code, 2)
  t.regex(badNumber.stderr, /--timeout must be a finite number >= 0/)
  const noDash = await cli(['run', 'x', '--dir', lockDir(), 'ls', '-l'])
  t.is(noDash.code, 2)
  t.regex(noDash.stderr, /unknown option -l: put the command to run, with its own options, after --/)
})

test('run: the command runs holding the lock, its exit code passes through, and the lock is released after', async (t) => {
  const dir = lockDir()
  // Tokens start time-based: the one before proclock's holds.
  const first = new Lock('job', { dir })
  t.true(first.tryAcquire())
  const base = first.token!
  first.release()
  first.close()
  // The command checks from inside that the lock is held by its parent (proclock) and says
  // what it saw; it exits 7 only if so.
  const check = `
    const { inspect } = require(${JSON.stringify(join(cliPath, '..', 'index.js'))})
    const s = inspect('job', { dir: ${JSON.stringify(dir)} })
    console.log(JSON.stringify({ locked: s.locked, pid: s.owner && s.owner.pid, description: s.owner && s.owner.description }))
    process.exit(s.locked && s.owner.pid === process.ppid ? 7 : 9)`
  const r = await cli(['run', 'job', '--dir', dir, '--', node, '-e', check])
  t.is(r.code, 7, r.stderr)
  const seen = JSON.parse(r.stdout) as { locked: boolean; pid: number; description: string }
  t.true(seen.locked)
  t.true(seen.description.startsWith(`proclock run ${node} -e`), 'the default description is the command line')
  const after = inspect('job', { dir })
  t.false(after.locked)
  t.is(after.owner, null)

  const ok = await cli(['run', 'job', '--dir', dir, '--message', 'nightly', '--', node, '-e', 'process.exit(0)'])
  t.is(ok.code, 0)
  const lock = new Lock('job', { dir })
  t.true(lock.tryAcquire())
  t.false(lock.ownerDied, 'proclock released the lock rather than dying with it')
  t.is(lock.token, base + 3n, 'two holds by proclock, then ours')
  lock.close()
})

test('run: a command killed by a signal makes proclock end the same way, after releasing the lock', async (t) => {
  const dir = lockDir()
  const term = await cli(['run', 'sig', '--dir', dir, '--', node, '-e', "process.kill(process.pid, 'SIGTERM')"])
  t.is(term.signal, 'SIGTERM')
  t.is(term.code, null)
  const usr2 = await cli(['run', 'sig', '--dir', dir, '--', node, '-e', "process.kill(process.pid, 'SIGUSR2')"])
  t.is(usr2.signal, 'SIGUSR2')
  // A signal that would dump core: proclock exits 128 + n instead of dumping core itself.
  const abrt = await cli(['run', 'sig', '--dir', dir, '--', 'sh', '-c', 'ulimit -c 0; kill -ABRT $$'])
  t.is(abrt.code, 134)
  t.is(abrt.signal, null)
  // A signal Node ignores (SIGPIPE) cannot end proclock: it exits 128 + n.
  const pipe = await cli(['run', 'sig', '--dir', dir, '--', 'sh', '-c', 'kill -PIPE $$'])
  t.is(pipe.code, 141)
  const lock = new Lock('sig', { dir })
  t.true(lock.tryAcquire())
  t.false(lock.ownerDied, 'released, not died holding')
  lock.close()
})

test('run: SIGTERM sent to proclock reaches the command, which still ends holding the lock', async (t) => {
  const dir = lockDir()
  const script = `
    process.on('SIGTERM', () => { console.log('term'); setTimeout(() => process.exit(5), 100) })
    console.log('ready'); setInterval(() => {}, 1000)`
  const run = startCli(['run', 'fwd', '--dir', dir, '--', node, '-e', script])
  t.is(await run.line(), 'ready')
  run.proc.kill('SIGTERM')
  t.is(await run.line(), 'term')
  // proclock outlived the signal and still holds the lock while the command finishes.
  t.is(inspect('fwd', { dir }).owner?.pid, run.proc.pid)
  const r = await run.done
  t.is(r.code, 5)
  t.false(inspect('fwd', { dir }).locked)
})

test('run: a held lock is a conflict (exit 1, or --conflict-exit-code) with --nonblock and after --timeout', async (t) => {
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'busy', then: 'release', description: 'the holder' })
  const held = await holder.next('held')
  const marker = join(mkdtempSync(join(tmpdir(), 'proclock-cli-')), 'ran')
  const command = ['--', node, '-e', `require('fs').writeFileSync(${JSON.stringify(marker)}, 'x')`]

  const nonblock = await cli(['run', 'busy', '--dir', dir, '--nonblock', ...command])
  t.is(nonblock.code, 1)
  t.regex(nonblock.stderr, new RegExp(`"busy" is locked by pid ${held.pid} \\("the holder"\\) \\(ELOCKTIMEOUT\\)`))
  t.true(nonblock.ms < 5000)
  const custom = await cli(['run', 'busy', '--dir', dir, '-n', '-E', '75', ...command])
  t.is(custom.code, 75)
  const timeout = await cli(['run', 'busy', '--dir', dir, '--timeout', '300', ...command])
  t.is(timeout.code, 1)
  t.regex(timeout.stderr, /timed out after 300 ms/)
  t.true(timeout.ms >= 290, `gave up after ${timeout.ms} ms`)
  t.false(existsSync(marker), 'the command never ran')

  // With time enough, it waits for the holder to let go and then runs.
  const waiting = cli(['run', 'busy', '--dir', dir, '--timeout', '20000', ...command])
  await sleep(300)
  t.false(existsSync(marker))
  holder.send({ type: 'release' })
  await holder.next('released')
  t.is((await waiting).code, 0)
  t.true(existsSync(marker))
  holder.kill()
})

test('run: --shared takes a read lock next to other readers and waits for a writer; bad backends are usage errors; a missing command is 127', async (t) => {
  const dir = lockDir()
  const reader = start('holder', { dir, name: 'x', then: 'release', kind: 'read' })
  await reader.next('held')
  const shared = await cli(['run', 'x', '--dir', dir, '--shared', '--nonblock', '--', node, '-e', 'process.exit(7)'])
  t.is(shared.code, 7, `a second reader runs at once: ${shared.stderr}`)
  const exclusive = await cli(['run', 'x', '--dir', dir, '--backend', 'file', '--nonblock', '--', node, '-e', ''])
  t.is(exclusive.code, 1, 'a writer (a file-backend run) conflicts with the reader')
  reader.send({ type: 'release' })
  await reader.next('released')
  const writer = start('holder', { dir, name: 'x', then: 'release', backend: 'file' })
  await writer.next('held')
  const blocked = await cli(['run', 'x', '--dir', dir, '--shared', '--timeout', '100', '--', node, '-e', ''])
  t.is(blocked.code, 1)
  t.regex(blocked.stderr, new RegExp(`locked by pid ${writer.proc.pid}`))
  writer.kill()
  const shm = await cli(['run', 'x', '--dir', dir, '--shared', '--backend', 'shm', '--', node, '-e', ''])
  t.is(shm.code, 2)
  t.regex(shm.stderr, /only the file backend/)
  const bogus = await cli(['state', 'x', '--dir', dir, '--backend', 'bogus'])
  t.is(bogus.code, 2)
  t.regex(bogus.stderr, /ERR_INVALID_ARG_VALUE/)
  const missing = await cli(['run', 'x', '--dir', dir, '--', 'proclock-no-such-command'])
  t.is(missing.code, 127)
  t.regex(missing.stderr, /cannot run "proclock-no-such-command".*\(ENOENT\)/)
  const notExecutable = join(mkdtempSync(join(tmpdir(), 'proclock-cli-')), 'script')
  writeFileSync(notExecutable, '#!/bin/sh\n', { mode: 0o600 })
  const denied = await cli(['run', 'x', '--dir', dir, '--', notExecutable])
  t.is(denied.code, 126)
  t.regex(denied.stderr, /\(EACCES\)/)
  t.false(inspect('x', { dir }).locked)
})

test('state: JSON of a holder this test started, and of a name never used (nothing created)', async (t) => {
  const dir = lockDir()
  const before = Date.now()
  const holder = start('holder', { dir, name: 'report', then: 'hold', description: 'nightly report' })
  const held = await holder.next('held')
  const r = await cli(['state', 'report', '--dir', dir, '--json'])
  t.is(r.code, 0)
  const s = json(r.stdout)
  t.deepEqual(Object.keys(s), ['name', 'locked', 'owner'])
  t.deepEqual(Object.keys(s.owner!), ['pid', 'uuid', 'description', 'since', 'token', 'alive'])
  t.is(s.name, 'report')
  t.true(s.locked)
  t.is(s.owner!.pid, held.pid)
  t.is(s.owner!.uuid, held.uuid)
  t.is(s.owner!.description, 'nightly report')
  t.is(s.owner!.token, String(held.token), 'the token is a decimal string')
  t.true((s.owner!.since as number) >= before - 1000 && (s.owner!.since as number) <= Date.now())
  t.true(s.owner!.alive)
  const human = await cli(['state', 'report', '--dir', dir])
  t.regex(human.stdout, new RegExp(`^"report": locked by pid ${held.pid} since .*, token ${held.token}, "nightly report"$`, 'm'))

  // A holder that died: not locked, its record still shown with alive false; still exit 0.
  holder.kill('SIGKILL')
  await holder.exited
  const dead = json((await cli(['state', 'report', '--dir', dir, '--json'])).stdout)
  t.false(dead.locked)
  t.is(dead.owner!.pid, held.pid)
  t.false(dead.owner!.alive)
  t.regex((await cli(['state', 'report', '--dir', dir])).stdout, /free \(its holder, pid \d+, died holding it/)

  const fresh = join(mkdtempSync(join(tmpdir(), 'proclock-cli-')), 'never')
  const none = await cli(['state', 'nobody', '--dir', fresh, '--json'])
  t.is(none.code, 0)
  t.deepEqual(JSON.parse(none.stdout), { name: 'nobody', locked: false, owner: null })
  t.false(existsSync(fresh), 'state created no lock directory')
  t.is((await cli(['state', 'nobody', '--dir', fresh])).stdout, '"nobody": free\n')
})

test('list: JSON and a table of every lock in the directory', async (t) => {
  const dir = lockDir()
  const a = start('holder', { dir, name: 'alpha', then: 'hold', description: 'first' })
  const b = start('holder', { dir, name: 'beta', then: 'hold' })
  const [ha, hb] = [await a.next('held'), await b.next('held')]
  new Lock('gamma', { dir }).close()
  const r = await cli(['list', '--dir', dir, '--json'])
  t.is(r.code, 0)
  const all = JSON.parse(r.stdout) as ReturnType<typeof json>[]
  t.deepEqual(
    all.map((s) => [s.name, s.locked, s.owner?.pid ?? null, s.owner?.token ?? null]),
    [
      ['alpha', true, ha.pid, String(ha.token)],
      ['beta', true, hb.pid, String(hb.token)],
      ['gamma', false, null, null],
    ],
  )
  t.is(all[0].owner!.description, 'first')
  const table = (await cli(['list', '--dir', dir])).stdout.split('\n')
  t.regex(table[0], /^NAME +STATE +PID +TOKEN +SINCE +DESCRIPTION$/)
  t.regex(table[1], new RegExp(`^"alpha" +locked +${ha.pid} +${ha.token} +\\S+ +"first"$`))
  t.regex(table[3], /^"gamma" +free +- +- +-$/)
  const empty = await cli(['list', '--dir', join(mkdtempSync(join(tmpdir(), 'proclock-cli-')), 'none')])
  t.is(empty.stdout, 'no locks\n')
  t.deepEqual(JSON.parse((await cli(['list', '--json', '--dir', join(tmpdir(), 'proclock-no-such-dir-x')])).stdout), [])
  a.kill()
  b.kill()
})

test('trace: prints each change of holder until interrupted', async (t) => {
  const dir = lockDir()
  const trace = startCli(['trace', 'watched', '--dir', dir, '--interval', '10', '--json'])
  const first = JSON.parse(await trace.line()) as { locked: boolean; owner: null }
  t.false(first.locked)
  const one = start('holder', { dir, name: 'watched', then: 'release' })
  const h1 = await one.next('held')
  const seen1 = JSON.parse(await trace.line()) as { locked: boolean; owner: { pid: number; token: string }; time: number }
  t.true(seen1.locked)
  t.is(seen1.owner.pid, h1.pid as number)
  t.is(seen1.owner.token, String(h1.token))
  one.send({ type: 'release' })
  await one.next('released')
  t.deepEqual(JSON.parse(await trace.line()).owner, null)
  const two = start('holder', { dir, name: 'watched', then: 'hold' })
  const h2 = await two.next('held')
  const seen2 = JSON.parse(await trace.line()) as { owner: { pid: number; token: string }; unseen: number }
  t.is(seen2.owner.pid, h2.pid as number)
  t.true(BigInt(seen2.owner.token) > BigInt(seen1.owner.token))
  t.is(seen2.unseen, 0, 'no hold came and went between the two')
  trace.proc.kill('SIGINT')
  const r = await trace.done
  t.is(r.code, 0)
  t.is(r.stderr, '')
  two.kill()
  one.kill()

  // The human format says the same.
  const human = startCli(['trace', 'watched', '--dir', dir, '--interval', '10'])
  t.regex(await human.line(), /^\d{4}-\d\d-\d\dT[\d:.]+Z "watched": (free|locked)/)
  human.proc.kill('SIGTERM')
  t.is((await human.done).code, 0)
})

test('release --force: refuses without --force; with it, the lock is free and the old holder cannot release', async (t) => {
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'stuck', then: 'release' })
  const held = await holder.next('held')
  const refused = await cli(['release', 'stuck', '--dir', dir])
  t.is(refused.code, 2)
  t.regex(refused.stderr, /without --force/)
  t.true(inspect('stuck', { dir }).locked)

  const forced = await cli(['release', 'stuck', '--dir', dir, '--force'])
  t.is(forced.code, 0, forced.stderr)
  t.is(forced.stdout, `released "stuck" (it was held by pid ${held.pid}, token ${held.token})\n`)
  const lock = new Lock('stuck', { dir })
  t.true(lock.tryAcquire(), 'acquirable at once')
  t.true(lock.ownerDied, 'the next holder is told its predecessor did not release')
  t.true(lock.token! > (held.token as bigint))
  holder.send({ type: 'release' })
  const failed = await holder.next('release-failed')
  t.is(failed.name, 'LockNotHeldError')
  t.is(failed.code, 'ELOCKNOTHELD')
  t.false(failed.held)
  lock.release()
  const again = await cli(['release', 'stuck', '--dir', dir, '-f'])
  t.is(again.code, 0)
  t.is(again.stdout, '"stuck" was not held\n')
  lock.close()
  holder.kill()
})

test('hold: holds with a message for the time given, or until interrupted; --nonblock conflicts', async (t) => {
  const dir = lockDir()
  const timed = startCli(['hold', 'h', '--dir', dir, '--for', '1', '--message', 'maintenance'])
  t.regex(await timed.line(), /^holding "h" \(pid \d+, token \d+\) for 1 s$/)
  const s = inspect('h', { dir })
  t.is(s.owner?.pid, timed.proc.pid)
  t.is(s.owner?.description, 'maintenance')
  const r = await timed.done
  t.is(r.code, 0)
  t.regex(r.stdout, /released "h" \(time is up\)\n$/)
  t.true(r.ms >= 1000 && r.ms < 20_000, `held for ${r.ms} ms`)
  t.false(inspect('h', { dir }).locked)

  const open = startCli(['hold', 'h', '--dir', dir, '-m', 'maintenance'])
  t.regex(await open.line(), /until interrupted/)
  t.true(inspect('h', { dir }).locked)
  // Checked against the hold that lasts until interrupted: a process that starts slowly must
  // still find it held. (--for: if it ever got the lock, it would not hold on to it.)
  const busy = await cli(['hold', 'h', '--dir', dir, '--nonblock', '--for', '0'])
  t.is(busy.code, 1)
  t.regex(busy.stderr, /"h" is locked by pid \d+ \("maintenance"\) \(ELOCKTIMEOUT\)/)
  open.proc.kill('SIGINT')
  const ended = await open.done
  t.is(ended.code, 0)
  t.regex(ended.stdout, /released "h" \(SIGINT\)/)
  const lock = new Lock('h', { dir })
  t.true(lock.tryAcquire())
  t.false(lock.ownerDied, 'released on Ctrl-C, not died holding')
  lock.close()
})
