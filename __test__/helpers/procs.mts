// Helpers for tests that use real processes: fresh lock directories, forked fixtures with a
// message channel, and percentiles.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'ava'

export function fixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/${name}.mjs`, import.meta.url))
}

/** A fresh lock directory (not yet created: proclock creates it, private). */
export function lockDir(): string {
  return join(mkdtempSync(join(tmpdir(), 'proclock-test-')), 'locks')
}

export interface Message {
  type: string
  [key: string]: unknown
}

export interface Child {
  proc: ChildProcess
  /** The next message (of `type`, if given); rejects if the child exits first. */
  next(type?: string, timeoutMs?: number): Promise<Message>
  send(message: Message): void
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  kill(signal?: NodeJS.Signals): void
}

// Every fixture still running once a file's tests are done is killed: a test that fails before
// killing its holder must not leave it alive, keeping this process up (its IPC channel) and
// ava's pipes open (it inherited our stdout and stderr), which would make the run wait forever.
const running = new Set<ChildProcess>()
function killAll(): void {
  for (const child of running) child.kill('SIGKILL')
}
test.after.always(killAll)
process.on('exit', killAll)

const childOptions = (env: Record<string, string>) => ({
  env: { ...process.env, ...env },
  serialization: 'advanced' as const,
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'] as Array<'ignore' | 'inherit' | 'ipc'>,
})

/** Fork fixture `name` with `args` (JSON in argv[2]). */
export function start(name: string, args: Record<string, unknown>, env: Record<string, string> = {}): Child {
  return watch(name, fork(fixture(name), [JSON.stringify(args)], childOptions(env)), 60_000)
}

/**
 * `start`, through `prefix`: a command that ends by exec'ing what follows it (`prlimit ... --`,
 * `setpriv ... --`, `unshare ... sh -c '... exec "$@"' sh`), to run a fixture under a limit, as
 * another user, or in a namespace of its own. Such runs are slower to start: messages are awaited
 * for up to 120 s by default.
 */
export function startVia(prefix: string[], name: string, args: Record<string, unknown>, env: Record<string, string> = {}): Child {
  const argv = [...prefix.slice(1), process.execPath, fixture(name), JSON.stringify(args)]
  return watch(name, spawn(prefix[0], argv, childOptions(env)), 120_000)
}

function watch(name: string, proc: ChildProcess, defaultTimeoutMs: number): Child {
  running.add(proc)
  proc.on('exit', () => running.delete(proc))
  const queue: Message[] = []
  const waiters: Array<(m: Message | null) => void> = []
  proc.on('message', (m: Message) => {
    const w = waiters.shift()
    if (w) w(m)
    else queue.push(m)
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => {
      for (const w of waiters.splice(0)) w(null)
      resolve({ code, signal })
    })
  })
  let gone = false
  void exited.then(() => (gone = true))
  async function next(type?: string, timeoutMs = defaultTimeoutMs): Promise<Message> {
    for (;;) {
      const m =
        queue.shift() ??
        (gone
          ? null
          : await new Promise<Message | null>((resolve, reject) => {
              const timer = setTimeout(() => reject(new Error(`no '${type ?? 'any'}' message from ${name} within ${timeoutMs} ms`)), timeoutMs)
              waiters.push((msg) => {
                clearTimeout(timer)
                resolve(msg)
              })
            }))
      if (m === null) throw new Error(`${name} exited before sending '${type ?? 'any'}'`)
      if (m.type === 'error') throw new Error(`${name} failed: ${String(m.message)}`)
      if (type === undefined || m.type === type) return m
    }
  }
  return {
    proc,
    next,
    send: (m) => proc.send(m),
    exited,
    kill: (signal = 'SIGKILL') => void proc.kill(signal),
  }
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
