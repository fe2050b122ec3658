// Running the `proclock` command as a user would: the file package.json's `bin` names, in a
// process of its own, with its output collected or read line by line.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import test from 'ava'

const root = new URL('../../../', import.meta.url)
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { version: string; bin: { proclock: string } }
export const version = pkg.version
/** The bin file package.json names for `proclock`. */
export const cliPath = fileURLToPath(new URL(pkg.bin.proclock, root))

export interface Ran {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** Wall time, milliseconds. */
  ms: number
}

const running = new Set<ChildProcess>()
test.after.always(() => {
  for (const child of running) child.kill('SIGKILL')
})

export interface Cli {
  proc: ChildProcess
  /** The next line of stdout (rejects if stdout ends first or nothing comes within `timeoutMs`). */
  line(timeoutMs?: number): Promise<string>
  /** Resolves when it exits, with everything it printed. */
  done: Promise<Ran>
}

/** No command in these tests runs for long: one still running after this is stuck. */
const LIMIT_MS = 60_000

/** Start `proclock ...args`. One still running after a minute is killed (SIGKILL) and says so in its stderr. */
export function startCli(args: string[], env: Record<string, string> = {}): Cli {
  const started = performance.now()
  const proc = spawn(process.execPath, [cliPath, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(proc)
  let stdout = ''
  let stderr = ''
  let pending = ''
  const lines: string[] = []
  const waiters: Array<(line: string | null) => void> = []
  let ended = false
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
    pending += chunk
    let nl
    while ((nl = pending.indexOf('\n')) >= 0) {
      const l = pending.slice(0, nl)
      pending = pending.slice(nl + 1)
      const w = waiters.shift()
      if (w) w(l)
      else lines.push(l)
    }
  })
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const watchdog = setTimeout(() => {
    stderr += `\n[test helper: proclock ${args.join(' ')} still running after ${LIMIT_MS} ms; killed]\n`
    proc.kill('SIGKILL')
  }, LIMIT_MS)
  const done = new Promise<Ran>((resolve) => {
    proc.on('close', (code, signal) => {
      clearTimeout(watchdog)
      running.delete(proc)
      ended = true
      for (const w of waiters.splice(0)) w(null)
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started })
    })
  })
  async function line(timeoutMs = 30_000): Promise<string> {
    const ready = lines.shift()
    if (ready !== undefined) return ready
    if (ended) throw new Error(`proclock ${args.join(' ')} ended without another line; stderr: ${stderr}`)
    const got = await new Promise<string | null>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line from proclock ${args.join(' ')} within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs)
      waiters.push((l) => {
        clearTimeout(timer)
        resolve(l)
      })
    })
    if (got === null) throw new Error(`proclock ${args.join(' ')} ended without another line; stderr: ${stderr}`)
    return got
  }
  return { proc, line, done }
}

/** Run `proclock ...args` to completion. */
export function cli(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return startCli(args, env).done
}
