#!/usr/bin/env node
// The `proclock` command: see and steer locks from a shell. Every command goes through the
// public API (Lock, inspect, list, forceRelease), plus two internal hooks that are not public:
// the descriptor that keeps a hold (for `run` to hand the hold to its command) and the entries
// `list` left out (to show them). This file only parses arguments, prints, and maps outcomes to
// exit codes.

import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { constants } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

import { type AcquireOptions, forceRelease, inspect, Lock, LockTimeoutError, type LockState, type OwnerInfo, RwLock } from './index'
import { listWithSkipped } from './inspect'
import { killChildrenOnExit } from './binding.cjs'
import { MAX_DESCRIPTION_BYTES } from './limits'
import { holdDescriptor } from './lock'
import { native } from './native'
import { rwHoldDescriptor } from './rw-lock'

/** Exit codes (README "Exit codes"). */
export const EXIT = {
  ok: 0,
  /** The lock is held by someone else (--nonblock) or the --timeout passed; `run --conflict-exit-code` changes it. */
  conflict: 1,
  /** Bad command line or bad argument value. */
  usage: 2,
  /** Any other failure: a lock directory that is not ours, a corrupt segment, an OS error. */
  failure: 4,
  /** `run`: the command exists but cannot be executed. */
  cannotExecute: 126,
  /** `run`: the command was not found. */
  notFound: 127,
} as const

class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message)
  }
}

class CliFailure extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly exitCode: number,
  ) {
    super(message)
  }
}

const common = {
  dir: { type: 'string', help: 'DIR', text: 'lock directory (default: $PROCLOCK_DIR, else the per-user one)' },
  help: { type: 'boolean', short: 'h', text: 'show this help' },
} as const
const backend = { type: 'string', help: 'NAME', text: "backend: 'shm' (default) or 'file'" } as const
const json = { type: 'boolean', text: 'print JSON (tokens as decimal strings)' } as const

interface OptionSpec {
  type: 'string' | 'boolean'
  short?: string
  help?: string
  text: string
}

interface Command {
  usage: string
  summary: string
  options: Record<string, OptionSpec>
  details?: string
  /**
   * The command takes a tail: everything after the first `--` is passed to `main` as `rest`,
   * untouched (the words of another command line, whose options are not ours to parse), and so
   * are any words after NAME when there is no `--`. A command without a tail refuses both.
   */
  tail?: true
  main(name: string | undefined, values: Record<string, string | boolean | undefined>, rest: string[]): Promise<number> | number
}

const commands: Record<string, Command> = {
  run: {
    usage: 'proclock run NAME [options] -- COMMAND [ARGS...]',
    summary: 'run a command while holding the lock (like flock(1))',
    options: {
      timeout: { type: 'string', short: 't', help: 'MS', text: 'give up after MS milliseconds (default: wait forever)' },
      nonblock: { type: 'boolean', short: 'n', text: 'fail at once if the lock is held' },
      'conflict-exit-code': { type: 'string', short: 'E', help: 'N', text: 'exit code when the lock cannot be had (default 1)' },
      shared: { type: 'boolean', short: 's', text: 'take a shared (read) lock: an RwLock reader (file backend); writers are plain `run` of the same name with --backend file' },
      message: { type: 'string', short: 'm', help: 'TEXT', text: 'description other processes see (default: the command line)' },
      backend,
      ...common,
    },
    details: `The lock is released when the command ends. Its exit code is passed through. If it is
killed by a signal, proclock releases the lock and then kills itself with the same signal, so
the caller sees what it would have seen without proclock (it exits with 128 + the signal number
instead for signals that would dump core or that Node ignores, such as SIGPIPE). SIGTERM and
SIGHUP sent to proclock are passed on to the command; SIGINT and SIGQUIT are not (the terminal
already sends them to the command), and proclock waits for the command to end.

The command never runs unlocked. On Unix it holds the lock too: it inherits the descriptor
that keeps the hold (fd 3), as with flock(1), so if proclock itself is killed (SIGKILL, the
OOM killer) the lock stays held until the command, and anything it started that kept fd 3,
has ended; the next holder then sees ownerDied. On Windows, where a lock cannot be handed to
another process, the command and anything it started are killed when proclock ends.`,
    tail: true,
    main: runCommand,
  },
  hold: {
    usage: 'proclock hold NAME [--for SECONDS] [--message TEXT] [options]',
    summary: 'take the lock and hold it until Ctrl-C (or SIGTERM) or the time is up',
    options: {
      for: { type: 'string', help: 'SECONDS', text: 'release after SECONDS seconds (default: hold until interrupted)' },
      message: { type: 'string', short: 'm', help: 'TEXT', text: 'description other processes see' },
      timeout: { type: 'string', short: 't', help: 'MS', text: 'give up taking it after MS milliseconds (default: wait forever)' },
      nonblock: { type: 'boolean', short: 'n', text: 'fail at once if the lock is held' },
      backend,
      ...common,
    },
    main: holdCommand,
  },
  state: {
    usage: 'proclock state NAME [--json] [options]',
    summary: 'show who holds the lock (exits 0 whether or not it is held)',
    options: { json, backend, ...common },
    main: stateCommand,
  },
  list: {
    usage: 'proclock list [--json] [--dir DIR]',
    summary: 'list every lock in the lock directory with its holder',
    options: { json, ...common },
    main: listCommand,
  },
  trace: {
    usage: 'proclock trace NAME [--interval MS] [--json] [options]',
    summary: 'print each change of holder until Ctrl-C',
    options: {
      interval: { type: 'string', short: 'i', help: 'MS', text: 'how often to look, in milliseconds (default 100)' },
      json: { type: 'boolean', text: 'print one JSON object a line' },
      backend,
      ...common,
    },
    details: `trace samples the lock: a hold shorter than the interval can pass unseen, but the fencing
token counts every acquisition, so a jump in the token says how many were missed.`,
    main: traceCommand,
  },
  release: {
    usage: 'proclock release NAME --force [options]',
    summary: 'DANGEROUS: end the current hold of the lock, whoever holds it',
    options: {
      force: { type: 'boolean', short: 'f', text: 'required: yes, take the lock away from its holder' },
      backend,
      ...common,
    },
    details: `The holder is not told. If it is alive it carries on as if it held the lock until its next
release() fails with LockNotHeldError, so two processes may then work at once. The next
holder sees ownerDied and a larger fencing token. Meant for a holder that is stuck, not dead
(a dead holder's lock is taken over without this). A file-backend lock held by a live process
cannot be taken away (the kernel does not allow it): that fails with ELOCKPERM and exit code 4.`,
    main: releaseCommand,
  },
}

function version(): string {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
  return pkg.version
}

function mainHelp(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length))
  return `Usage: proclock COMMAND [options]

Named inter-process locks, from the shell.

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}

Every command takes --dir DIR and --help. proclock --version prints the version.

Exit codes: 0 done; 1 the lock is held or the timeout passed (run: --conflict-exit-code);
2 bad usage; 4 any other failure (e.g. release --force of a live file lock); run: the
command's own status, 126 it cannot be executed, 127 it was not found.
`
}

function commandHelp(name: string): string {
  const c = commands[name]
  const lines = Object.entries(c.options).map(([long, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${long}${o.help ? ` ${o.help}` : ''}`
    return [flag, o.text] as const
  })
  const width = Math.max(...lines.map(([f]) => f.length))
  return `Usage: ${c.usage}

${c.summary[0].toUpperCase()}${c.summary.slice(1)}.

Options:
${lines.map(([f, t]) => `  ${f.padEnd(width)}  ${t}`).join('\n')}
${c.details ? `\n${c.details}\n` : ''}`
}

// --- argument values ---

/**
 * A finite number >= `min`. Infinity (and anything that overflows to it, such as 1e400) is
 * refused rather than taken as "for ever": each option has a way to say that (leave it out),
 * and a non-finite delay would otherwise reach a timer, which fires at once on values it
 * cannot hold.
 */
function number(value: string | boolean | undefined, option: string, min: number, integer = false): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${option} must be a finite ${integer ? 'integer' : 'number'} >= ${min}, not ${quote(String(value))}`)
  }
  return n
}

/** An explicit --message: refused, like any description over the limit, rather than cut. */
function message(value: string | boolean | undefined, command: string): string | undefined {
  const text = str(value)
  if (text === undefined) return undefined
  const bytes = Buffer.byteLength(text)
  if (bytes > MAX_DESCRIPTION_BYTES) {
    throw new UsageError(`--message must be at most ${MAX_DESCRIPTION_BYTES} UTF-8 bytes, not ${bytes}`, command)
  }
  return text
}

// Node's timers hold at most 2^31-1 ms (about 24.8 days); a longer delay fires after 1 ms.
const MAX_TIMER_MS = 2 ** 31 - 1

/** Call `fn` once, `ms` milliseconds from now, for any finite `ms`: long delays are chained timers. */
function after(ms: number, fn: () => void): { cancel(): void } {
  const end = performance.now() + ms
  let timer: NodeJS.Timeout
  const arm = (left: number) => {
    timer = setTimeout(() => {
      const rest = end - performance.now()
      if (rest > 0.5) arm(rest)
      else fn()
    }, Math.min(Math.max(left, 0), MAX_TIMER_MS))
  }
  arm(ms)
  return { cancel: () => clearTimeout(timer) }
}

function str(value: string | boolean | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined
}

function lockOptions(values: Record<string, string | boolean | undefined>) {
  return { dir: str(values.dir), backend: str(values.backend) as 'shm' | 'file' | undefined }
}

/** The first `max` UTF-8 bytes of `text`, cut on a character boundary. */
function truncate(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text
  let out = ''
  for (const ch of text) {
    if (Buffer.byteLength(out + ch) > max - 3) break
    out += ch
  }
  return `${out}...`
}

// --- output ---

// Characters that must not reach a terminal raw, beyond the C0 controls JSON.stringify already
// escapes: DEL, the C1 controls (U+009B is a one-character CSI to many terminals), the line and
// paragraph separators, and the bidirectional overrides that make text display in another order.
const UNSAFE = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g
const escape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`

/**
 * A name or description as the human-readable output shows it: a JSON string, with the few
 * characters JSON leaves raw escaped too. Names and descriptions are anyone's text: raw, an
 * escape sequence would reach the terminal and a newline would forge a row of the table.
 */
function quote(text: string): string {
  return JSON.stringify(text).replace(UNSAFE, escape)
}

/** A message that may contain anyone's text (an error naming a lock), made safe to print. */
function safe(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f]/g, escape).replace(UNSAFE, escape)
}

function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
}

function ago(since: number): string {
  const s = Math.max(0, (Date.now() - since) / 1000)
  return s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`
}

function describe(s: LockState): string {
  const o = s.owner
  if (o === null) return `${quote(s.name)}: free`
  const who = o.pid === 0 ? 'an unknown holder' : `pid ${o.pid}`
  const desc = o.description ? `, ${quote(o.description)}` : ''
  const since = o.since > 0 ? ` since ${new Date(o.since).toISOString()} (${ago(o.since)})` : ''
  if (!o.alive) return `${quote(s.name)}: free (its holder, ${who}, died holding it; the next acquirer takes it over), token ${o.token}${desc}`
  return `${quote(s.name)}: locked by ${who}${since}, token ${o.token}${desc}`
}

/** What `run` and `hold` acquire: a Lock, or the read side of an RwLock (`--shared`). */
interface Acquirable {
  readonly name: string
  acquire(options: AcquireOptions): Promise<void>
  owner(): OwnerInfo | null
  close(): void
}

/** What `run` acquires: it also hands the hold to its command. */
interface Runnable extends Acquirable {
  /** The descriptor that keeps the current hold (see lock.ts's holdDescriptor), or null. */
  holdDescriptor(): number | null
}

function conflictMessage(lock: Acquirable, error: LockTimeoutError, nonblock: boolean): string {
  const o = lock.owner()
  const by = o && o.alive ? ` by pid ${o.pid}${o.description ? ` (${quote(o.description)})` : ''}` : ''
  return nonblock ? `${quote(lock.name)} is locked${by}` : `${error.message}: ${quote(lock.name)} is locked${by}`
}

// --- commands ---

/** Resolves with the name of the first of SIGINT, SIGTERM, SIGHUP to arrive, or 'time is up' after `ms`. */
function untilSignal(ms?: number): Promise<string> {
  return new Promise((resolve) => {
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
    const done = (why: string) => {
      clearInterval(keepAlive)
      timer?.cancel()
      for (const signal of signals) process.removeListener(signal, handlers[signal])
      resolve(why)
    }
    // Without a time limit the timer only keeps the process alive until a signal comes.
    const keepAlive = ms === undefined ? setInterval(() => {}, 1 << 30) : undefined
    const timer = ms === undefined ? undefined : after(ms, () => done('time is up'))
    const handlers = Object.fromEntries(signals.map((signal) => [signal, () => done(signal)])) as Record<(typeof signals)[number], () => void>
    for (const signal of signals) process.on(signal, handlers[signal])
  })
}

async function acquire(lock: Acquirable, values: Record<string, string | boolean | undefined>, description: string | undefined, conflictCode: number) {
  const nonblock = values.nonblock === true
  const timeout = nonblock ? 0 : (number(values.timeout, 'timeout', 0) ?? Infinity)
  try {
    await lock.acquire({ timeout, description })
  } catch (error) {
    if (error instanceof LockTimeoutError) throw new CliFailure(conflictMessage(lock, error, nonblock), error.code, conflictCode)
    throw error
  }
}

// Signals whose default action dumps core: re-raising one would make proclock dump core too.
const coreSignals = new Set(['SIGQUIT', 'SIGILL', 'SIGTRAP', 'SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGSEGV', 'SIGSYS', 'SIGXCPU', 'SIGXFSZ'])

async function runCommand(name: string | undefined, values: Record<string, string | boolean | undefined>, rest: string[]): Promise<number> {
  if (name === undefined) throw new UsageError('missing NAME', 'run')
  if (rest.length === 0) throw new UsageError('missing the command to run (put it after --)', 'run')
  const conflictCode = number(values['conflict-exit-code'], 'conflict-exit-code', 0, true) ?? EXIT.conflict
  if (conflictCode > 255) throw new UsageError('--conflict-exit-code must be at most 255', 'run')
  const options = lockOptions(values)
  // The default description, the command line, may be long: it is shortened (ending in
  // "..."); an explicit --message is the user's own words, and is refused if too long.
  const description = message(values.message, 'run') ?? truncate(`proclock run ${rest.join(' ')}`, MAX_DESCRIPTION_BYTES)
  let lock: Runnable
  if (values.shared) {
    if (options.backend === 'shm') throw new UsageError("--shared takes a reader-writer lock, which only the file backend has (drop --backend shm)", 'run')
    const rw = new RwLock(name, { dir: options.dir })
    lock = { name, acquire: (o) => rw.read(o), owner: () => rw.owner(), holdDescriptor: () => rwHoldDescriptor(rw), close: () => rw.close() }
  } else {
    const plain = new Lock(name, options)
    lock = { name, acquire: (o) => plain.acquire(o), owner: () => plain.owner(), holdDescriptor: () => holdDescriptor(plain), close: () => plain.close() }
  }
  // Windows cannot hand a hold to another process (its locks belong to the process that took
  // them), so there the command is made to die with proclock instead (a kill-on-close job
  // object, see the core's child_lifetime.rs). Done before acquiring: if it cannot be done,
  // the command is not run at all rather than run where it could outlive its hold.
  native(() => killChildrenOnExit())
  await acquire(lock, values, description, conflictCode)

  // The command holds the lock too, as with flock(1): it inherits, as fd 3, the descriptor
  // whose lifetime keeps the hold (the file backend: the open file description that holds the
  // kernel lock; shm: this process's liveness registration, which makes its holds count as
  // alive). Node's spawn dup2()s it into the child without close-on-exec. So if proclock is
  // SIGKILLed or OOM-killed, the command does not run on unlocked: the hold lasts until the
  // command (and whatever it started that kept fd 3) has ended, and the next holder then sees
  // ownerDied. Our own release below still ends the hold at once when the command ends. On
  // Windows no descriptor can carry a hold (locks belong to the process), and this is null:
  // the job object above covers that case.
  const fd = lock.holdDescriptor()
  const child = spawn(rest[0], rest.slice(1), { stdio: fd === null ? 'inherit' : ['inherit', 'inherit', 'inherit', fd] })
  const forward = (signal: NodeJS.Signals) => () => void child.kill(signal)
  const handlers: Array<[NodeJS.Signals, () => void]> = [
    ['SIGTERM', forward('SIGTERM')],
    ['SIGHUP', forward('SIGHUP')],
    // The terminal sends these to the whole foreground group, the command included: passing
    // them on would deliver them twice. proclock just outlives them while the command runs.
    ['SIGINT', () => {}],
    ['SIGQUIT', () => {}],
  ]
  for (const [signal, handler] of handlers) process.on(signal, handler)
  const ended = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: NodeJS.ErrnoException }>((resolve) => {
    child.once('error', (error: NodeJS.ErrnoException) => resolve({ code: null, signal: null, error }))
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  for (const [signal, handler] of handlers) process.removeListener(signal, handler)
  lock.close()

  if (ended.error) {
    const code = ended.error.code ?? 'ELOCKIO'
    throw new CliFailure(`cannot run ${quote(rest[0])}: ${ended.error.message}`, code, code === 'ENOENT' ? EXIT.notFound : EXIT.cannotExecute)
  }
  if (ended.signal) {
    const n = constants.signals[ended.signal] ?? 0
    if (!coreSignals.has(ended.signal)) {
      // No listener is left for it, so this ends proclock the same way; the timer below only
      // runs if it did not (a signal Node ignores, such as SIGPIPE).
      process.kill(process.pid, ended.signal)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return 128 + n
  }
  return ended.code ?? EXIT.failure
}

async function holdCommand(name: string | undefined, values: Record<string, string | boolean | undefined>): Promise<number> {
  if (name === undefined) throw new UsageError('missing NAME', 'hold')
  const seconds = number(values.for, 'for', 0)
  if (seconds !== undefined && !Number.isFinite(seconds * 1000)) throw new UsageError(`--for ${seconds} is too long`, 'hold')
  const description = message(values.message, 'hold')
  const lock = new Lock(name, lockOptions(values))
  await acquire(lock, values, description, EXIT.conflict)
  // Listening before saying so: whoever reads the line may signal at once.
  const ended = untilSignal(seconds === undefined ? undefined : seconds * 1000)
  const until = seconds === undefined ? 'until interrupted (Ctrl-C)' : `for ${seconds} s`
  process.stdout.write(`holding ${quote(name)} (pid ${process.pid}, token ${lock.token}) ${until}\n`)
  const why = await ended
  lock.close()
  process.stdout.write(`released ${quote(name)} (${why})\n`)
  return EXIT.ok
}

function stateCommand(name: string | undefined, values: Record<string, string | boolean | undefined>): number {
  if (name === undefined) throw new UsageError('missing NAME', 'state')
  const s = inspect(name, lockOptions(values))
  process.stdout.write(`${values.json ? toJson(s) : describe(s)}\n`)
  return EXIT.ok
}

function listCommand(name: string | undefined, values: Record<string, string | boolean | undefined>): number {
  if (name !== undefined) throw new UsageError(`unexpected argument ${quote(name)}`, 'list')
  const { locks: all, skipped } = listWithSkipped({ dir: str(values.dir) })
  // Entries named like lock files that are not ours (a directory, a FIFO, a symlink, a file
  // with other owners' access or other hard links) are left out of the list, never fatal to
  // it: one line each on stderr says which and why.
  for (const s of skipped) process.stderr.write(`proclock: skipped ${quote(s.entry)}: ${safe(s.why)}\n`)
  if (values.json) {
    process.stdout.write(`${toJson(all)}\n`)
    return EXIT.ok
  }
  if (all.length === 0) {
    process.stdout.write('no locks\n')
    return EXIT.ok
  }
  const rows = all.map((s) => {
    const o = s.owner
    const state = o === null ? 'free' : o.alive ? 'locked' : 'dead holder'
    return [quote(s.name), state, o ? String(o.pid) : '-', o ? String(o.token) : '-', o && o.since > 0 ? new Date(o.since).toISOString() : '-', o?.description ? quote(o.description) : '']
  })
  const header = ['NAME', 'STATE', 'PID', 'TOKEN', 'SINCE', 'DESCRIPTION']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  for (const r of [header, ...rows]) process.stdout.write(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()}\n`)
  return EXIT.ok
}

async function traceCommand(name: string | undefined, values: Record<string, string | boolean | undefined>): Promise<number> {
  if (name === undefined) throw new UsageError('missing NAME', 'trace')
  const interval = number(values.interval, 'interval', 1) ?? 100
  const options = lockOptions(values)
  let last: string | undefined
  let lastToken: bigint | undefined
  const look = () => {
    const s = inspect(name, options)
    const o = s.owner
    const key = o === null ? 'free' : `${o.uuid}/${o.token}/${o.alive}`
    if (key === last) return
    last = key
    // Tokens count every acquisition: a jump of more than one is holds that came and went unseen.
    const unseen = o && lastToken !== undefined && o.token > lastToken + 1n ? o.token - lastToken - 1n : 0n
    if (o) lastToken = o.token
    const time = new Date()
    if (values.json) {
      process.stdout.write(`${toJson({ time: time.getTime(), ...s, unseen: Number(unseen) })}\n`)
    } else {
      process.stdout.write(`${time.toISOString()} ${describe(s)}${unseen > 0n ? ` (${unseen} hold${unseen > 1n ? 's' : ''} unseen since the last line)` : ''}\n`)
    }
  }
  const ended = untilSignal()
  look()
  // Chained one-shot timers rather than setInterval, which cannot hold an interval over 2^31-1 ms.
  let timer = after(interval, function tick() {
    look()
    timer = after(interval, tick)
  })
  await ended
  timer.cancel()
  return EXIT.ok
}

function releaseCommand(name: string | undefined, values: Record<string, string | boolean | undefined>): number {
  if (name === undefined) throw new UsageError('missing NAME', 'release')
  const options = lockOptions(values)
  if (values.force !== true) {
    throw new UsageError(
      `refusing to release ${quote(name)} without --force: its holder would not be told and would carry on as if it held it`,
      'release',
    )
  }
  const before = inspect(name, options).owner
  if (!forceRelease(name, options)) {
    process.stdout.write(`${quote(name)} was not held\n`)
    return EXIT.ok
  }
  const who = before && before.pid !== 0 ? ` (it was held by pid ${before.pid}, token ${before.token})` : ''
  process.stdout.write(`released ${quote(name)}${who}\n`)
  return EXIT.ok
}

// --- main ---

function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage
  if (error instanceof CliFailure) return error.exitCode
  const code = (error as { code?: unknown })?.code
  if (typeof code === 'string' && (code.startsWith('ERR_INVALID_ARG') || code === 'ERR_OUT_OF_RANGE' || code.startsWith('ERR_PARSE_ARGS'))) {
    return EXIT.usage
  }
  return EXIT.failure
}

function report(error: unknown, command: string | undefined): void {
  const e = error as { message?: string; code?: unknown }
  const code = typeof e?.code === 'string' ? ` (${e.code})` : ''
  let text = `proclock: ${safe(e?.message ?? String(error))}${code}\n`
  if (error instanceof UsageError || (typeof e?.code === 'string' && e.code.startsWith('ERR_PARSE_ARGS'))) {
    text += `Try 'proclock ${command} --help'.\n`
  }
  process.stderr.write(text)
}

export async function main(argv: string[]): Promise<number> {
  const [first, ...args] = argv
  if (first === '--version' || first === '-V') {
    process.stdout.write(`${version()}\n`)
    return EXIT.ok
  }
  if (first === '--help' || first === '-h' || (first === 'help' && args.length === 0)) {
    process.stdout.write(mainHelp())
    return EXIT.ok
  }
  if (first === 'help' && Object.hasOwn(commands, args[0])) {
    process.stdout.write(commandHelp(args[0]))
    return EXIT.ok
  }
  if (first === undefined || !Object.hasOwn(commands, first)) {
    process.stderr.write(first === undefined ? mainHelp() : `proclock: unknown command ${quote(first)}\nTry 'proclock --help'.\n`)
    return EXIT.usage
  }
  const command = commands[first]
  try {
    // A command with a tail: everything after the first `--` is its tail, untouched.
    const split = command.tail ? args.indexOf('--') : -1
    const ours = split < 0 ? args : args.slice(0, split)
    const options = Object.fromEntries(Object.entries(command.options).map(([k, o]) => [k, { type: o.type, ...(o.short ? { short: o.short } : {}) }]))
    let parsed
    try {
      parsed = parseArgs({ args: ours, options, allowPositionals: true, strict: true })
    } catch (error) {
      // Without `--`, an option of the tail's command (`run x ls -l`) reaches our parser: say
      // where it belongs rather than only that we do not know it.
      if (command.tail && split < 0 && (error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
        const option = /'([^']+)'/.exec((error as Error).message)?.[1] ?? 'option'
        throw new UsageError(`unknown option ${option}: put the command to run, with its own options, after --`, first)
      }
      throw error
    }
    const { values, positionals } = parsed as { values: Record<string, string | boolean | undefined>; positionals: string[] }
    if (values.help) {
      process.stdout.write(commandHelp(first))
      return EXIT.ok
    }
    const [name, ...more] = positionals
    if (more.length > 0 && (!command.tail || split >= 0)) {
      throw new UsageError(command.tail ? `unexpected ${quote(more[0])} before --` : `unexpected argument ${quote(more[0])}`, first)
    }
    const rest = !command.tail ? [] : split >= 0 ? args.slice(split + 1) : more
    return await command.main(name, values, rest)
  } catch (error) {
    report(error, first)
    return exitCodeOf(error)
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (error: unknown) => {
      process.stderr.write(`proclock: unexpected failure: ${(error as Error)?.stack ?? String(error)}\n`)
      process.exitCode = EXIT.failure
    },
  )
}
