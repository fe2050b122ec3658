#!/usr/bin/env node
// The `proclock` command: see and steer locks from a shell. Every command goes through the
// public API (Lock, inspect, list, forceRelease); this file only parses arguments, prints, and
// maps outcomes to exit codes.

import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { constants } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

import { type AcquireOptions, forceRelease, inspect, list, Lock, LockTimeoutError, type LockState, type OwnerInfo, RwLock } from './index'

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
already sends them to the command), and proclock waits for the command to end.`,
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

function number(value: string | boolean | undefined, option: string, min: number, integer = false): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (typeof value !== 'string' || value.trim() === '' || Number.isNaN(n) || n < min || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${option} must be ${integer ? 'an integer' : 'a number'} >= ${min}, not ${JSON.stringify(value)}`)
  }
  return n
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

function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
}

function ago(since: number): string {
  const s = Math.max(0, (Date.now() - since) / 1000)
  return s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`
}

function describe(s: LockState): string {
  const o = s.owner
  if (o === null) return `${JSON.stringify(s.name)}: free`
  const who = o.pid === 0 ? 'an unknown holder' : `pid ${o.pid}`
  const desc = o.description ? `, ${JSON.stringify(o.description)}` : ''
  const since = o.since > 0 ? ` since ${new Date(o.since).toISOString()} (${ago(o.since)})` : ''
  if (!o.alive) return `${JSON.stringify(s.name)}: free (its holder, ${who}, died holding it; the next acquirer takes it over), token ${o.token}${desc}`
  return `${JSON.stringify(s.name)}: locked by ${who}${since}, token ${o.token}${desc}`
}

/** What `run` and `hold` acquire: a Lock, or the read side of an RwLock (`--shared`). */
interface Acquirable {
  readonly name: string
  acquire(options: AcquireOptions): Promise<void>
  owner(): OwnerInfo | null
  close(): void
}

function conflictMessage(lock: Acquirable, error: LockTimeoutError, nonblock: boolean): string {
  const o = lock.owner()
  const by = o && o.alive ? ` by pid ${o.pid}${o.description ? ` (${JSON.stringify(o.description)})` : ''}` : ''
  return nonblock ? `${JSON.stringify(lock.name)} is locked${by}` : `${error.message}: ${JSON.stringify(lock.name)} is locked${by}`
}

// --- commands ---

/** Resolves with the name of the first of SIGINT, SIGTERM, SIGHUP to arrive, or 'time is up' after `ms`. */
function untilSignal(ms?: number): Promise<string> {
  return new Promise((resolve) => {
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
    const done = (why: string) => {
      clearTimeout(timer)
      for (const signal of signals) process.removeListener(signal, handlers[signal])
      resolve(why)
    }
    // Without a time limit the timer only keeps the process alive until a signal comes.
    const timer = ms === undefined ? setInterval(() => {}, 1 << 30) : setTimeout(() => done('time is up'), ms)
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
  let lock: Acquirable
  if (values.shared) {
    if (options.backend === 'shm') throw new UsageError("--shared takes a reader-writer lock, which only the file backend has (drop --backend shm)", 'run')
    const rw = new RwLock(name, { dir: options.dir })
    lock = { name, acquire: (o) => rw.read(o), owner: () => rw.owner(), close: () => rw.close() }
  } else {
    lock = new Lock(name, options)
  }
  await acquire(lock, values, truncate(str(values.message) ?? `proclock run ${rest.join(' ')}`, 256), conflictCode)

  const child = spawn(rest[0], rest.slice(1), { stdio: 'inherit' })
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
    throw new CliFailure(`cannot run ${JSON.stringify(rest[0])}: ${ended.error.message}`, code, code === 'ENOENT' ? EXIT.notFound : EXIT.cannotExecute)
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
  const lock = new Lock(name, lockOptions(values))
  await acquire(lock, values, str(values.message), EXIT.conflict)
  // Listening before saying so: whoever reads the line may signal at once.
  const ended = untilSignal(seconds === undefined ? undefined : seconds * 1000)
  const until = seconds === undefined ? 'until interrupted (Ctrl-C)' : `for ${seconds} s`
  process.stdout.write(`holding ${JSON.stringify(name)} (pid ${process.pid}, token ${lock.token}) ${until}\n`)
  const why = await ended
  lock.close()
  process.stdout.write(`released ${JSON.stringify(name)} (${why})\n`)
  return EXIT.ok
}

function stateCommand(name: string | undefined, values: Record<string, string | boolean | undefined>): number {
  if (name === undefined) throw new UsageError('missing NAME', 'state')
  const s = inspect(name, lockOptions(values))
  process.stdout.write(`${values.json ? toJson(s) : describe(s)}\n`)
  return EXIT.ok
}

function listCommand(name: string | undefined, values: Record<string, string | boolean | undefined>): number {
  if (name !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(name)}`, 'list')
  const all = list({ dir: str(values.dir) })
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
    return [s.name, state, o ? String(o.pid) : '-', o ? String(o.token) : '-', o && o.since > 0 ? new Date(o.since).toISOString() : '-', o?.description ?? '']
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
  const timer = setInterval(look, interval)
  await ended
  clearInterval(timer)
  return EXIT.ok
}

function releaseCommand(name: string | undefined, values: Record<string, string | boolean | undefined>): number {
  if (name === undefined) throw new UsageError('missing NAME', 'release')
  const options = lockOptions(values)
  if (values.force !== true) {
    throw new UsageError(
      `refusing to release ${JSON.stringify(name)} without --force: its holder would not be told and would carry on as if it held it`,
      'release',
    )
  }
  const before = inspect(name, options).owner
  if (!forceRelease(name, options)) {
    process.stdout.write(`${JSON.stringify(name)} was not held\n`)
    return EXIT.ok
  }
  const who = before && before.pid !== 0 ? ` (it was held by pid ${before.pid}, token ${before.token})` : ''
  process.stdout.write(`released ${JSON.stringify(name)}${who}\n`)
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
  let text = `proclock: ${e?.message ?? String(error)}${code}\n`
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
    process.stderr.write(first === undefined ? mainHelp() : `proclock: unknown command ${JSON.stringify(first)}\nTry 'proclock --help'.\n`)
    return EXIT.usage
  }
  const command = commands[first]
  try {
    // `run`: everything after the first `--` is the command, untouched.
    const split = first === 'run' ? args.indexOf('--') : -1
    const ours = split < 0 ? args : args.slice(0, split)
    const options = Object.fromEntries(Object.entries(command.options).map(([k, o]) => [k, { type: o.type, ...(o.short ? { short: o.short } : {}) }]))
    let parsed
    try {
      parsed = parseArgs({ args: ours, options, allowPositionals: true, strict: true })
    } catch (error) {
      if (first === 'run' && split < 0 && (error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
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
    let rest: string[] = []
    if (first === 'run') {
      if (split >= 0 && more.length > 0) throw new UsageError(`unexpected ${JSON.stringify(more[0])} before --`, first)
      rest = split >= 0 ? args.slice(split + 1) : more
    } else if (more.length > 0) {
      throw new UsageError(`unexpected argument ${JSON.stringify(more[0])}`, first)
    }
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
