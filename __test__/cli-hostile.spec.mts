// The `proclock` command where a hostile user or an unlucky operator would take it: proclock
// SIGKILLed while its command runs (the command must keep the lock, as with flock(1)), delays
// too long for a timer, stray entries named like lock files, names and descriptions that carry
// terminal escapes and newlines, and --message over the limit.
import { type ChildProcess, spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'ava'
import { inspect, list, Lock } from 'proclock'
import { cli, startCli } from './helpers/cli.mjs'
import { lockDir, sleep } from './helpers/procs.mjs'

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The signal that ended `proc` (its 'exit', not 'close': the command still has its stdout). */
function exited(proc: ChildProcess): Promise<NodeJS.Signals | null> {
  return new Promise((resolve) => proc.once('exit', (_code, signal) => resolve(signal)))
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const start = performance.now()
  while (!ok()) {
    if (performance.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(10)
  }
}

for (const backend of ['file', 'shm'] as const) {
  test.serial(`run (${backend}): proclock SIGKILLed while its command runs; the command keeps the lock until it ends`, async (t) => {
    const dir = lockDir()
    mkdirSync(join(dir, '..', 'rec'), { recursive: true })
    const pidFile = join(dir, '..', 'rec', 'pid')
    // The command records its pid and sleeps (exec: the pid stays the sleeper's).
    const run = startCli(['run', 'job', '--dir', dir, '--backend', backend, '--', 'sh', '-c', `echo $$ > ${pidFile}; exec sleep 60`])
    await until('the command started', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').endsWith('\n'))
    const command = Number(readFileSync(pidFile, 'utf8'))
    // A waiter from before the kill (shm: it watches proclock's pid, which dies first).
    const waiter = new Lock('job', { dir, backend })
    let got = 0
    const waited = waiter.acquire({ timeout: 60_000 }).then(() => (got = performance.now()))
    await sleep(200)
    run.proc.kill('SIGKILL')
    t.is(await exited(run.proc), 'SIGKILL')
    t.true(isAlive(command), 'the command runs on after proclock is killed')
    await sleep(300)

    // The lock is still held: a second run conflicts, state shows the holder, the waiter waits.
    const second = await cli(['run', 'job', '--dir', dir, '--backend', backend, '--nonblock', '--', 'true'])
    t.is(second.code, 1, second.stderr)
    t.regex(second.stderr, /"job" is locked by pid \d+/)
    const state = inspect('job', { dir, backend })
    t.true(state.locked)
    t.is(state.owner?.pid, run.proc.pid)
    t.is(got, 0, 'the waiter is still waiting')

    // The command ends: the lock is taken over, and the new holder is told its holder died.
    const ended = performance.now()
    process.kill(command, 'SIGKILL')
    await waited
    const ms = got - ended
    t.log(`${backend}: taken over ${ms.toFixed(0)} ms after the command died`)
    t.true(waiter.ownerDied, 'the next holder sees ownerDied')
    // file: the kernel ends the lock with the last descriptor. shm: the waiter watched
    // proclock's pid, which died first; the command's death is noticed by the 1 s re-check.
    t.true(ms < (backend === 'file' ? 1000 : 2500), `${ms} ms`)
    waiter.close()
  })

  test.serial(`run (${backend}): a run that had to wait for the lock hands its command the hold it waited for`, async (t) => {
    // file: a hold won by a wait is held on the wait request's own description, not the main one.
    const dir = lockDir()
    mkdirSync(join(dir, '..', 'rec'), { recursive: true })
    const pidFile = join(dir, '..', 'rec', 'pid')
    const first = new Lock('job', { dir, backend })
    t.true(first.tryAcquire())
    const run = startCli(['run', 'job', '--dir', dir, '--backend', backend, '--', 'sh', '-c', `echo $$ > ${pidFile}; exec sleep 60`])
    await sleep(500)
    first.release()
    await until('the command started', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').endsWith('\n'))
    const command = Number(readFileSync(pidFile, 'utf8'))
    run.proc.kill('SIGKILL')
    await exited(run.proc)
    await sleep(300)
    t.false(first.tryAcquire(), 'the command still holds the lock')
    process.kill(command, 'SIGKILL')
    await first.acquire({ timeout: 5000 })
    t.true(first.ownerDied)
    first.close()
  })

  test.serial(`run (${backend}): a normal run passes the exit code and releases, even if its command leaves a child with the descriptor`, async (t) => {
    const dir = lockDir()
    mkdirSync(join(dir, '..', 'rec'), { recursive: true })
    const pidFile = join(dir, '..', 'rec', 'bg')
    // The command leaves a background process that inherited fd 3, and exits 7.
    const r = await cli(['run', 'job', '--dir', dir, '--backend', backend, '--', 'sh', '-c', `sleep 60 >/dev/null 2>&1 & echo $! > ${pidFile}; exit 7`])
    t.is(r.code, 7, r.stderr)
    const bg = Number(readFileSync(pidFile, 'utf8'))
    t.true(isAlive(bg))
    const next = new Lock('job', { dir, backend })
    t.true(next.tryAcquire(), 'released when the command ended')
    t.false(next.ownerDied)
    next.close()
    process.kill(bg, 'SIGKILL')
  })
}

test('run --shared: the command keeps the read lock after proclock is SIGKILLed', async (t) => {
  const dir = lockDir()
  mkdirSync(join(dir, '..', 'rec'), { recursive: true })
  const pidFile = join(dir, '..', 'rec', 'pid')
  const run = startCli(['run', 'rw', '--dir', dir, '--shared', '--', 'sh', '-c', `echo $$ > ${pidFile}; exec sleep 60`])
  await until('the command started', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').endsWith('\n'))
  const command = Number(readFileSync(pidFile, 'utf8'))
  run.proc.kill('SIGKILL')
  await exited(run.proc)
  const writer = await cli(['run', 'rw', '--dir', dir, '--backend', 'file', '--nonblock', '--', 'true'])
  t.is(writer.code, 1, 'a writer is still kept out')
  process.kill(command, 'SIGKILL')
  const lock = new Lock('rw', { dir, backend: 'file' })
  await lock.acquire({ timeout: 5000 })
  lock.close()
  t.pass()
})

test('hold --for longer than a timer can hold still holds; non-finite durations are usage errors', async (t) => {
  const dir = lockDir()
  const long = startCli(['hold', 'h', '--dir', dir, '--for', '3000000'])
  t.regex(await long.line(), /^holding "h" .* for 3000000 s$/)
  await sleep(3000)
  t.true(inspect('h', { dir }).locked, 'still held after 3 s')
  long.proc.kill('SIGTERM')
  const r = await long.done
  t.is(r.code, 0)
  t.regex(r.stdout, /released "h" \(SIGTERM\)/)

  for (const args of [
    ['hold', 'h', '--for', '1e400'],
    ['hold', 'h', '--for', 'Infinity'],
    ['hold', 'h', '--for', '1e306'],
    ['hold', 'h', '--timeout', 'Infinity'],
    ['run', 'h', '--timeout', '1e400', '--', 'true'],
    ['trace', 'h', '--interval', '1e400'],
    ['trace', 'h', '--interval', 'Infinity'],
  ]) {
    const bad = await cli([...args, '--dir', dir])
    t.is(bad.code, 2, `${args.join(' ')}: ${bad.stderr}`)
    t.regex(bad.stderr, /finite|too long/)
  }
  t.false(inspect('h', { dir }).locked)
})

test('trace --interval longer than a timer can hold does not sample every millisecond', async (t) => {
  const dir = lockDir()
  const trace = startCli(['trace', 't', '--dir', dir, '--interval', '3000000000'])
  t.regex(await trace.line(), /"t": free$/)
  const lock = new Lock('t', { dir })
  t.true(lock.tryAcquire())
  await sleep(1500)
  trace.proc.kill('SIGINT')
  const r = await trace.done
  lock.close()
  t.is(r.code, 0)
  t.is(r.stdout.split('\n').filter(Boolean).length, 1, `no second sample within 1.5 s: ${r.stdout}`)
})

test('list: stray entries named like lock files are left out and reported, never fatal', async (t) => {
  const dir = lockDir()
  const real = new Lock('real', { dir, backend: 'file' })
  t.true(real.tryAcquire())
  const lockFile = readdirSync(dir).find((f) => f.startsWith('file-'))!
  const stray = (n: number) => join(dir, `file-${String(n).repeat(32)}.lock`)
  mkdirSync(stray(1))
  t.is(spawnSync('mkfifo', [stray(2)]).status, 0)
  symlinkSync(join(dir, lockFile), stray(3))
  copyFileSync(join(dir, lockFile), stray(4))
  chmodSync(stray(4), 0o644)
  copyFileSync(join(dir, lockFile), stray(5))
  linkSync(stray(5), stray(6))

  t.deepEqual(
    list({ dir }).map((s) => s.name),
    ['real'],
  )
  const r = await cli(['list', '--dir', dir])
  t.is(r.code, 0, r.stderr)
  t.true(r.ms < 20_000, 'a FIFO does not hang the listing')
  t.regex(r.stdout, /^"real" +locked /m)
  const skipped = r.stderr.split('\n').filter(Boolean)
  t.is(skipped.length, 6, r.stderr)
  for (const [n, why] of [
    [1, /directory/],
    [2, /not a regular file/],
    [3, /symlink/],
    [4, /mode 644/],
    [5, /2 hard links/],
    [6, /2 hard links/],
  ] as const) {
    const line = skipped.find((l) => l.includes(`file-${String(n).repeat(32)}.lock`))
    t.truthy(line, `entry ${n} reported`)
    t.regex(line ?? '', why)
  }
  const json = await cli(['list', '--dir', dir, '--json'])
  t.is(json.code, 0)
  t.deepEqual(
    (JSON.parse(json.stdout) as Array<{ name: string }>).map((s) => s.name),
    ['real'],
  )
  // The facade logs what it skipped under NODE_DEBUG=proclock.
  const debug = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(fileURLToPath(new URL('../../dist/index.js', import.meta.url)))}).list({ dir: ${JSON.stringify(dir)} })`], {
    env: { ...process.env, NODE_DEBUG: 'proclock' },
    encoding: 'utf8',
  })
  t.is(debug.status, 0, debug.stderr)
  t.is(debug.stderr.split('\n').filter((l) => l.includes('list: skipped')).length, 6, debug.stderr)
  real.close()
})

test('names and descriptions with newlines, tabs and escape sequences are quoted in every human-readable output', async (t) => {
  const dir = lockDir()
  const name = 'evil\nrow\x1b[31mred\tx\u009b2J'
  const description = 'desc\nNAME  STATE\x1b]0;title\x07\ttab\u202e'
  const holder = new Lock(name, { dir, description })
  t.true(holder.tryAcquire())
  new Lock('plain', { dir }).close()
  // Raw control characters (C0 except the newlines that end lines, DEL, C1) and bidi overrides.
  const raw = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/
  const table = await cli(['list', '--dir', dir])
  t.is(table.code, 0)
  const lines = table.stdout.split('\n').filter(Boolean)
  t.is(lines.length, 3, `a header and one line per lock:\n${table.stdout}`)
  t.false(raw.test(table.stdout), JSON.stringify(table.stdout))
  t.true(lines[1].startsWith(JSON.stringify(name).replace('\u009b', '\\u009b')), lines[1])
  const outputs = [
    table,
    await cli(['state', name, '--dir', dir]),
    await cli(['hold', name, '--dir', dir, '--nonblock']),
    await cli(['run', name, '--dir', dir, '--nonblock', '--', 'true']),
    await cli(['release', name, '--dir', dir]),
    await cli(['list', name, '--dir', dir]),
  ]
  for (const o of outputs) {
    t.false(raw.test(o.stdout) || raw.test(o.stderr), JSON.stringify(o))
    t.true((o.stdout + o.stderr).includes('evil\\nrow\\u001b[31mred\\tx\\u009b2J'), JSON.stringify(o))
  }
  const trace = startCli(['trace', name, '--dir', dir])
  const line = await trace.line()
  trace.proc.kill('SIGINT')
  await trace.done
  t.false(raw.test(line), line)
  t.true(line.includes('desc\\nNAME  STATE\\u001b]0;title\\u0007\\ttab\\u202e'), line)
  holder.close()
})

test('--message: over 256 UTF-8 bytes is a usage error for run and hold; run shortens only its default', async (t) => {
  const dir = lockDir()
  const long = 'é'.repeat(129) // 258 bytes
  const ranFile = join(dir, '..', 'ran')
  const run = await cli(['run', 'm', '--dir', dir, '--message', long, '--', 'sh', '-c', `touch ${ranFile}`])
  t.is(run.code, 2, run.stderr)
  t.regex(run.stderr, /--message must be at most 256 UTF-8 bytes, not 258/)
  t.false(existsSync(ranFile), 'the command did not run')
  const hold = await cli(['hold', 'm', '--dir', dir, '--message', long, '--for', '0'])
  t.is(hold.code, 2, hold.stderr)
  t.regex(hold.stderr, /--message must be at most 256 UTF-8 bytes, not 258/)
  const fits = await cli(['run', 'm', '--dir', dir, '--message', 'é'.repeat(128), '--', 'true'])
  t.is(fits.code, 0, fits.stderr)

  // The default description, the command line, is shortened with a trailing "...".
  const running = startCli(['run', 'm', '--dir', dir, '--', 'sh', '-c', `echo; exec sleep 60 # ${'x'.repeat(400)}`])
  t.is(await running.line(), '')
  const owner = inspect('m', { dir }).owner!
  t.true(owner.description.startsWith('proclock run sh -c echo; exec sleep 60 # xxx'), owner.description)
  t.true(owner.description.endsWith('...'), owner.description)
  t.true(Buffer.byteLength(owner.description) <= 256)
  running.proc.kill('SIGTERM')
  await running.done
})
