// proclock against the floor (a bare futex lock) and its peers, on this machine, in one run.
//
//   npm run bench                      full sizes; writes docs/benchmarks/results.md, chart.svg,
//                                      results.json and the README's table
//   npm run bench -- --quick           smoke sizes; writes nothing under docs/
//   options: --json FILE (also write the results as JSON), --only run_perf,run_perf_warm,...
//            (workloads), --locks floor,proclock-sync,... (contestant ids), --trials N
//
// Speed is reported, never asserted. Lost updates are asserted: the process exits 1 if any lock
// loses one in run_perf or scaling, or if a workload failed.
//
// The tables go to stdout; progress goes to stderr, one line per step (which workload, trial
// and lock; the share of the planned work done; time elapsed and an estimate of time left).
// Contestants are listed in locks.mjs: proclock, the floor (benchmark/bare-futex, four forms)
// and the peers, Node ones in child.mjs processes and Python ones in py_child.py processes.
import { fork, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { byId, contestants, LOCKFILE_STALE_NOTE, notApplicable } from './locks.mjs'
import { renderMarkdown } from './report.mjs'
import { writeDocs } from './render.mjs'
import { pythonStatus, setup } from './setup.mjs'

const here = fileURLToPath(new URL('.', import.meta.url))
const argv = process.argv.slice(2)
const flag = (name) => argv.includes(name)
const option = (name) => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}
const quick = flag('--quick')
const onlyWorkloads = option('--only')?.split(',')
const onlyLocks = option('--locks')?.split(',')
const jsonOut = option('--json')
const write = !quick && !onlyWorkloads && !onlyLocks

// Peers and the floor are the benchmark's own business (setup.mjs).
setup()

const sizes = quick
  ? { rounds: 3, roundMs: 15, P: 4, C: 100, perfTrials: 1, handoffRounds: 20, handoffTrials: 1, scaling: [1, 2, 4], scalingCycles: 200, scalingTrials: 1, many: [1000], recoveryRounds: 3, staleRounds: 0 }
  : { rounds: 9, roundMs: 100, P: 15, C: 1000, perfTrials: 5, handoffRounds: 200, handoffTrials: 3, scaling: [1, 2, 4, 8, 16], scalingCycles: 4000, scalingTrials: 3, many: [1000, 10_000, 100_000], recoveryRounds: 30, staleRounds: 5 }
if (option('--trials')) sizes.perfTrials = sizes.handoffTrials = sizes.scalingTrials = Number(option('--trials'))

// Everything lives on tmpfs where there is one, so no lock pays for a disk.
const shmBase = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
const scratch = mkdtempSync(join(shmBase, 'proclock-bench-'))
const ctx = { scratch, dir: join(scratch, 'locks') }
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }))

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const log = (s) => process.stderr.write(`${s}\n`)

// Which contestants take part: available here, and asked for.
const active = []
const unavailable = {}
for (const c of contestants) {
  if (onlyLocks && !onlyLocks.includes(c.id)) continue
  const ok = c.available ? await c.available(ctx) : true
  if (ok === true) active.push(c)
  else unavailable[c.id] = ok
}
const wants = (w) => !onlyWorkloads || onlyWorkloads.includes(w)
// The rows of a workload: every active contestant of the right mode, with n/a and its reason
// where the contestant cannot do it.
const rowsFor = (workload, filter = () => true) =>
  active
    .filter((c) => filter(c) && notApplicable(c, workload) !== false)
    .map((c) => ({ id: c.id, label: c.label, family: c.family, library: c.library, mode: c.mode, call: c.uncontendedLabel, how: c.how, na: notApplicable(c, workload) }))

// --- progress, on stderr (the tables go to stdout) ---
// Before measuring, every step of the run (one lock in one trial of one workload) is planned
// with a rough guess of its seconds; each step's line then says where the run is, how far
// (share of the planned work done), and how long is left: the guesses scaled by how fast the
// steps done so far went against their own guesses.
const progress = (() => {
  let planned = 0
  let done = 0
  const t0 = performance.now()
  const clock = (s) => {
    s = Math.max(0, Math.round(s))
    return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  }
  return {
    plan(seconds) {
      planned += seconds
    },
    /** Logs the step that starts; returns the function to call when it is over. */
    step(what, seconds) {
      const elapsed = (performance.now() - t0) / 1000
      const rate = done > 0 ? elapsed / done : 1
      const share = planned > 0 ? Math.min(99, Math.floor((100 * done) / planned)) : 0
      log(`[${String(share).padStart(2)}% · ${clock(elapsed)} elapsed · ~${clock((planned - done) * rate)} left] ${what}`)
      return () => {
        done += seconds
      }
    },
    get elapsed() {
      return (performance.now() - t0) / 1000
    },
  }
})()
/** Runs `fn` as one step of the plan. */
const stepped = async (what, seconds, fn) => {
  const over = progress.step(what, seconds)
  try {
    return await fn()
  } finally {
    over()
  }
}

// Every run gets lock names of its own: a run that ends with a lock held (the floor has no
// recovery) must not wedge the next one.
let runNo = 0
const freshKey = (what, id) => `${what}-${id}-${++runNo}`

// --- child processes ---
// A Node child (child.mjs) speaks over the IPC channel; a Python one (py_child.py, run_perf
// only) in JSON lines on its stdin and stdout. Both look the same from here.
function spawnChild(args, execArgv = []) {
  const c = byId(args.id)
  let proc
  let post
  if (c.python) {
    const py = { id: args.id, kind: c.python, key: args.key, counterFile: args.counterFile, scratch: args.ctx.scratch }
    proc = spawn(pythonStatus().python, [join(here, 'py_child.py'), JSON.stringify(py)], { stdio: ['pipe', 'pipe', 'inherit'] })
    let pending = ''
    proc.stdout.setEncoding('utf8').on('data', (chunk) => {
      pending += chunk
      let nl
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl)
        pending = pending.slice(nl + 1)
        if (line.trim()) proc.emit('message', JSON.parse(line))
      }
    })
    proc.stdin.on('error', () => {}) // a child that died is reported by its exit
    post = (m) => proc.stdin.write(`${JSON.stringify(m)}\n`)
  } else {
    proc = fork(join(here, 'child.mjs'), [JSON.stringify(args)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv })
    post = (m) => proc.send(m)
  }
  const queue = []
  const waiters = []
  let exited = false
  const exit = new Promise((resolve) =>
    proc.once('exit', (code, signal) => {
      exited = true
      for (const w of waiters.splice(0)) w.reject(new Error(`its process exited (${signal ?? `code ${code}`})`))
      resolve()
    }),
  )
  proc.on('message', (m) => {
    const w = waiters.shift()
    if (w) w.resolve(m)
    else queue.push(m)
  })
  const next = (type, timeoutMs = 120_000) =>
    new Promise((resolve, reject) => {
      if (queue.length) return resolve(queue.shift())
      if (exited) return reject(new Error(`child ${args.id} exited`))
      const timer = setTimeout(() => reject(new Error(`no '${type}' from ${args.id} within ${timeoutMs} ms`)), timeoutMs)
      waiters.push({
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      })
    }).then((m) => {
      if (m.type === 'failed') throw new Error(m.message)
      if (type && m.type !== type) throw new Error(`expected '${type}' from ${args.id}, got '${m.type}'`)
      return m
    })
  const stop = async () => {
    if (!exited) proc.kill('SIGKILL')
    await exit
  }
  return { proc, next, send: post, exit, stop, get exited() { return exited } }
}

async function withChildren(list, fn) {
  try {
    return await fn(list)
  } finally {
    await Promise.all(list.map((c) => c.stop()))
  }
}

// --- 1. uncontended pairs in this process, interleaved rounds, median of rounds ---
async function uncontended(workload) {
  const rows = rowsFor(workload, (c) => c.family !== 'none')
  const locks = {}
  for (const r of rows) if (!r.na) locks[r.id] = await active.find((c) => c.id === r.id).open(`uncontended-${r.id}`, ctx)
  const per = Object.fromEntries(Object.keys(locks).map((id) => [id, []]))
  // Each lock gets a loop compiled on its own (new Function) from its `direct.pair`, the pair
  // as its users write it: V8 then sees one lock at each call site, as in a program that uses
  // one library (a loop shared by all would go megamorphic and charge every lock for the
  // others). Batches of pairs between clock reads, so the clock is no part of a pair's cost.
  const batch = workload === 'uncontended_sync' ? 100 : 10
  const loops = Object.fromEntries(
    Object.entries(locks).map(([id, lock]) => [
      id,
      workload === 'uncontended_sync'
        ? new Function('l', `for (let i = 0; i < ${batch}; i++) { ${lock.direct.pair} } return ${batch}`)
        : new Function('l', `return (async () => { for (let i = 0; i < ${batch}; i++) { ${lock.direct.pair} } return ${batch} })()`),
    ]),
  )
  for (const r of rows) if (!r.na) r.pair = locks[r.id].direct.pair
  for (let round = 0; round < sizes.rounds; round++) {
    const over = progress.step(`${workload} round ${round + 1}/${sizes.rounds}: ${Object.keys(locks).length} locks`, estimate.uncontendedRound(Object.keys(locks).length))
    for (const [id, lock] of Object.entries(locks)) {
      const loop = loops[id]
      let n = 0
      const t0 = performance.now()
      let elapsed = 0
      do {
        n += await loop(lock.direct.raw)
        elapsed = performance.now() - t0
      } while (elapsed < sizes.roundMs)
      per[id].push((elapsed * 1e6) / n)
    }
    over()
  }
  for (const r of rows) if (!r.na) r.ns = median(per[r.id])
  return rows
}

// The progress plan's guesses, in seconds, of one step of each workload (only the progress
// line's time left depends on them).
const estimate = {
  uncontendedRound: (locks) => (locks * sizes.roundMs) / 1000,
  cycleRun: (id, P, C, warm) => {
    const c = byId(id)
    const start = c.python ? 0.12 * P : 0.08 * P
    const rate = c.python || /lockfile/.test(id) ? 5_000 : 40_000
    return start + (P * C) / rate + (warm ? warm.ms / 1000 : 0)
  },
  handoff: () => 0.5 + (2 * WARM.ms) / 1000 + sizes.handoffRounds * 0.005,
  many: (n) => 0.3 + n * 2e-5,
  recovery: (c) => (c.stale ? sizes.staleRounds * 2.6 : sizes.recoveryRounds * 0.2),
}

// --- 2 and 4. the run_perf cycle with P processes x C cycles each ---
// The warm-up given to each process in the warmed workloads (see child.mjs).
const WARM = quick ? { cycles: 2_000, ms: 30 } : { cycles: 20_000, ms: 300 }

async function cycleRun(id, P, C, warm = undefined) {
  const counterFile = join(scratch, 'counter')
  writeFileSync(counterFile, Buffer.alloc(8))
  const key = freshKey('run-perf', id)
  return withChildren(
    Array.from({ length: P }, () => spawnChild({ id, key, ctx, counterFile, warm })),
    async (children) => {
      await Promise.all(children.map((c) => c.next('ready')))
      const t0 = performance.now()
      for (const c of children) c.send({ type: 'go', cycles: C })
      const all = await Promise.all(children.map((c) => c.next('done', 600_000)))
      const wall = performance.now() - t0
      for (const c of children) c.send({ type: 'exit' })
      await Promise.all(children.map((c) => c.exit))
      const samples = all.flatMap((m) => m.samples)
      const counter = Number(readFileSync(counterFile).readBigUInt64LE(0))
      return {
        mean: samples.reduce((a, b) => a + b, 0) / samples.length,
        p50: pct(samples, 50),
        p99: pct(samples, 99),
        max: Math.max(...samples),
        throughput: (P * C) / (wall / 1000),
        lost: P * C - counter,
      }
    },
  )
}

/**
 * Per trial, the better floor of each mode: the floor variant (with or without spin) of the same
 * call shape that did best in that trial. `value(run)` is the figure, `higher` whether more is
 * better. Returns { sync: [per trial], async: [per trial] }.
 */
function bestFloorPerTrial(rows, trials, value, higher) {
  const out = {}
  for (const mode of ['sync', 'async']) {
    const floors = rows.filter((r) => r.family === 'floor' && r.mode === mode && !r.na && !r.error && trials[r.id]?.length)
    if (floors.length === 0) continue
    const n = Math.min(...floors.map((r) => trials[r.id].length))
    out[mode] = Array.from({ length: n }, (_, t) => {
      const vs = floors.map((r) => value(trials[r.id][t]))
      return higher ? Math.max(...vs) : Math.min(...vs)
    })
  }
  return out
}

async function runPerf(warm = undefined) {
  const rows = rowsFor(warm ? 'run_perf_warm' : 'run_perf')
  const trials = Object.fromEntries(rows.map((r) => [r.id, []]))
  // Interleaved trials (every lock once per trial), median of each figure per lock: one run of
  // each in sequence is at the mercy of whatever else this shared machine is doing. Ratios are
  // taken within a trial, then their median is reported.
  for (let t = 0; t < sizes.perfTrials; t++) {
    for (const r of rows) {
      if (r.na || r.error) continue
      await stepped(`run_perf${warm ? ' (warmed)' : ''} trial ${t + 1}/${sizes.perfTrials}: ${r.label}`, estimate.cycleRun(r.id, sizes.P, sizes.C, warm), async () => {
        try {
          trials[r.id].push(await cycleRun(r.id, sizes.P, sizes.C, warm))
        } catch (error) {
          r.error = error.message
        }
      })
    }
  }
  // Each row against the better floor of its own call shape (sync or async), trial by trial.
  const floors = bestFloorPerTrial(rows, trials, (x) => x.throughput, true)
  for (const r of rows) {
    const runs = trials[r.id]
    if (r.na || r.error || runs.length === 0) continue
    for (const k of ['mean', 'p50', 'p99', 'max', 'throughput']) r[k] = median(runs.map((x) => x[k]))
    r.lost = Math.max(...runs.map((x) => x.lost))
    r.trials = runs.length
    const floorRuns = floors[r.mode] ?? []
    if (floorRuns.length === runs.length) r.vsFloor = median(runs.map((x, i) => x.throughput / floorRuns[i]))
    r.perTrial = runs.map((x) => x.throughput)
  }
  return rows
}

async function scaling() {
  const rows = rowsFor('scaling')
  for (const r of rows) r.throughput = {}
  const runs = Object.fromEntries(rows.map((r) => [r.id, Object.fromEntries(sizes.scaling.map((n) => [n, []]))]))
  for (let t = 0; t < sizes.scalingTrials; t++) {
    for (const n of sizes.scaling) {
      for (const r of rows) {
        if (r.na || r.error) continue
        const cycles = Math.max(1, Math.round(sizes.scalingCycles / n))
        await stepped(`scaling trial ${t + 1}/${sizes.scalingTrials}: ${n} processes, ${r.label}`, estimate.cycleRun(r.id, n, cycles), async () => {
          try {
            const res = await cycleRun(r.id, n, cycles)
            if (res.lost !== 0) r.lost = (r.lost ?? 0) + res.lost
            runs[r.id][n].push(res.throughput)
          } catch (error) {
            r.error = error.message
          }
        })
      }
    }
  }
  for (const r of rows) if (!r.na && !r.error) for (const n of sizes.scaling) r.throughput[n] = median(runs[r.id][n])
  // Each row against the better floor of its call shape, per process count: the median of the
  // per-trial ratios.
  for (const n of sizes.scaling) {
    const byTrial = Object.fromEntries(rows.map((r) => [r.id, runs[r.id][n]]))
    const floors = bestFloorPerTrial(rows, byTrial, (x) => x, true)
    for (const r of rows) {
      const f = floors[r.mode]
      if (r.na || r.error || !f || f.length !== runs[r.id][n].length) continue
      ;(r.vsFloor ??= {})[n] = median(runs[r.id][n].map((x, i) => x / f[i]))
    }
  }
  return { counts: sizes.scaling, cyclesPerRun: sizes.scalingCycles, rows }
}

// --- 3. handoff: release in one process to a waiting acquire resolving in another ---
async function handoffRun(id) {
  const key = freshKey('handoff', id)
  return withChildren([spawnChild({ id, key, ctx, warm: WARM }), spawnChild({ id, key, ctx, warm: WARM })], async ([a, b]) => {
    await Promise.all([a.next('ready'), b.next('ready')])
    a.send({ type: 'acquire' })
    await a.next('waiting')
    await a.next('acquired')
    let [holder, waiter] = [a, b]
    const latencies = []
    for (let i = 0; i < sizes.handoffRounds; i++) {
      waiter.send({ type: 'acquire' })
      await waiter.next('waiting')
      // Long enough for the waiter to be asleep in its lock (or its poll) before the release.
      await sleep(2)
      holder.send({ type: 'release' })
      const [released, acquired] = await Promise.all([holder.next('released'), waiter.next('acquired')])
      latencies.push(Number(BigInt(acquired.at) - BigInt(released.at)) / 1000)
      ;[holder, waiter] = [waiter, holder]
    }
    return latencies
  })
}

async function handoff() {
  const rows = rowsFor('handoff')
  const per = Object.fromEntries(rows.map((r) => [r.id, []]))
  for (let t = 0; t < sizes.handoffTrials; t++) {
    for (const r of rows) {
      if (r.na || r.error) continue
      await stepped(`handoff trial ${t + 1}/${sizes.handoffTrials}: ${r.label}`, estimate.handoff(), async () => {
        try {
          per[r.id].push(await handoffRun(r.id))
        } catch (error) {
          r.error = error.message
        }
      })
    }
  }
  for (const r of rows) {
    if (r.na || r.error) continue
    // Percentiles per trial, median over trials.
    r.p50 = median(per[r.id].map((l) => pct(l, 50)))
    r.p99 = median(per[r.id].map((l) => pct(l, 99)))
    r.rounds = per[r.id].reduce((a, l) => a + l.length, 0)
  }
  // p50 against the better floor of the same call shape, trial by trial.
  const floors = bestFloorPerTrial(rows, per, (l) => pct(l, 50), false)
  for (const r of rows) {
    const f = floors[r.mode]
    if (r.na || r.error || !f || f.length !== per[r.id].length) continue
    r.p50VsFloor = median(per[r.id].map((l, i) => pct(l, 50) / f[i]))
  }
  return rows
}

// --- 6. recovery: SIGKILL of the holder to a waiter (another process) holding the lock ---
async function recoveryRun(c) {
  const staleCtx = c.stale ? { ...ctx, stale: 2000 } : ctx
  const rounds = c.stale ? sizes.staleRounds : sizes.recoveryRounds
  const key = freshKey('recovery', c.id)
  return withChildren([spawnChild({ id: c.id, key, ctx: staleCtx })], async ([waiter]) => {
    await waiter.next('ready')
    const latencies = []
    for (let i = 0; i < rounds; i++) {
      await withChildren([spawnChild({ id: c.id, key, ctx: staleCtx })], async ([holder]) => {
        await holder.next('ready')
        holder.send({ type: 'acquire' })
        await holder.next('waiting')
        await holder.next('acquired')
        waiter.send({ type: 'acquire' })
        await waiter.next('waiting')
        await sleep(15 + (i % 7) * 3)
        const t0 = process.hrtime.bigint()
        holder.proc.kill('SIGKILL')
        const got = await waiter.next('acquired', 60_000)
        latencies.push(Number(BigInt(got.at) - t0) / 1e6)
        waiter.send({ type: 'release' })
        await waiter.next('released')
      })
    }
    return latencies
  })
}

async function recovery() {
  const rows = rowsFor('recovery')
  for (const r of rows) {
    const c = active.find((x) => x.id === r.id)
    if (r.na) continue
    if (c.stale) r.note = LOCKFILE_STALE_NOTE
    if (c.stale && sizes.staleRounds === 0) {
      r.na = 'skipped in --quick (each round takes over 2 s)'
      continue
    }
    await stepped(`recovery: ${r.label}`, estimate.recovery(c), async () => {
      try {
        const l = await recoveryRun(c)
        Object.assign(r, { p50: pct(l, 50), p99: pct(l, 99), max: Math.max(...l), rounds: l.length })
      } catch (error) {
        r.error = error.message
      }
    })
  }
  return rows
}

// --- 5. many locks in one process: time and memory per lock ---
async function many() {
  // One contestant per library: its synchronous form where it has one.
  const seen = new Set()
  const rows = []
  for (const c of active) {
    if (c.family === 'none' || seen.has(c.library)) continue
    const na = notApplicable(c, 'many')
    if (na === false) continue
    if (na && active.some((o) => o.library === c.library && o !== c && notApplicable(o, 'many') === null)) continue
    seen.add(c.library)
    rows.push({ id: c.id, label: c.library, family: c.family, library: c.library, na, cells: {} })
  }
  for (const n of sizes.many) {
    for (const r of rows) {
      if (r.na) continue
      const over = progress.step(`many locks: ${n} x ${r.label}`, estimate.many(n))
      // A fresh scratch directory per run, so no run finds another's files.
      const own = { scratch: join(scratch, `many-${r.id}-${n}`), dir: join(scratch, `many-${r.id}-${n}`, 'locks') }
      mkdirSync(own.scratch, { recursive: true })
      try {
        r.cells[n] = await withChildren([spawnChild({ id: r.id, ctx: own }, ['--expose-gc'])], async ([child]) => {
          await child.next('ready')
          child.send({ type: 'many', count: n })
          const m = await child.next('many', 600_000)
          await child.exit
          return m.failedAt === undefined ? { ns: m.ns, bytes: m.bytes } : { error: m.error, failedAt: m.failedAt }
        })
      } catch (error) {
        r.cells[n] = { error: error.message }
      }
      rmSync(own.scratch, { recursive: true, force: true })
      over()
    }
  }
  return { sizes: sizes.many, rows }
}

// The limits the many-locks workload can meet: open files per process, memory maps per process.
function machineLimits() {
  const read = (f) => {
    try {
      return readFileSync(f, 'utf8').trim()
    } catch {
      return undefined
    }
  }
  const soft = read('/proc/self/limits')?.match(/Max open files\s+(\d+)/)?.[1]
  return { openFiles: soft ? Number(soft) : undefined, maxMapCount: read('/proc/sys/vm/max_map_count') }
}

// --- run ---
const cpus = os.cpus()
const meta = {
  date: new Date().toISOString().slice(0, 10),
  cores: cpus.length,
  cpu: cpus[0]?.model.trim() ?? 'unknown CPU',
  os: `${os.type()} ${os.release()}`,
  node: process.version,
  quick,
  loadBefore: os.loadavg(),
  sizes,
  unavailable,
  scratchFs: shmBase === '/dev/shm' ? 'tmpfs (/dev/shm)' : os.tmpdir(),
  limits: machineLimits(),
}
const results = { meta }

// The progress plan: every step the workloads below will take, with its guessed seconds.
{
  const real = (w, filter = () => true) => rowsFor(w, filter).filter((r) => !r.na)
  if (wants('uncontended_sync')) progress.plan(sizes.rounds * estimate.uncontendedRound(real('uncontended_sync', (c) => c.family !== 'none').length))
  if (wants('uncontended_async')) progress.plan(sizes.rounds * estimate.uncontendedRound(real('uncontended_async', (c) => c.family !== 'none').length))
  if (wants('run_perf')) for (const r of real('run_perf')) progress.plan(sizes.perfTrials * estimate.cycleRun(r.id, sizes.P, sizes.C))
  if (wants('run_perf_warm')) for (const r of real('run_perf_warm')) progress.plan(sizes.perfTrials * estimate.cycleRun(r.id, sizes.P, sizes.C, WARM))
  if (wants('handoff')) progress.plan(real('handoff').length * sizes.handoffTrials * estimate.handoff())
  if (wants('scaling'))
    for (const r of real('scaling')) for (const n of sizes.scaling) progress.plan(sizes.scalingTrials * estimate.cycleRun(r.id, n, Math.max(1, Math.round(sizes.scalingCycles / n))))
  if (wants('many')) {
    const libraries = new Set(active.filter((c) => c.family !== 'none' && notApplicable(c, 'many') === null).map((c) => c.library))
    for (const n of sizes.many) progress.plan(libraries.size * estimate.many(n))
  }
  if (wants('recovery')) for (const r of real('recovery')) progress.plan(estimate.recovery(active.find((c) => c.id === r.id)))
}
const started = performance.now()
if (wants('uncontended_sync')) results.uncontendedSync = await uncontended('uncontended_sync')
if (wants('uncontended_async')) results.uncontendedAsync = await uncontended('uncontended_async')
if (wants('run_perf')) results.runPerf = await runPerf()
if (wants('run_perf_warm')) results.runPerfWarm = { warm: WARM, rows: await runPerf(WARM) }
if (wants('handoff')) results.handoff = await handoff()
if (wants('scaling')) results.scaling = await scaling()
if (wants('many')) results.many = await many()
if (wants('recovery')) results.recovery = await recovery()
meta.seconds = (performance.now() - started) / 1000
meta.loadAfter = os.loadavg()

const markdown = renderMarkdown(results)
process.stdout.write(markdown)
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(results, null, 2))
if (write) writeDocs(results)

log(`done in ${Math.round(progress.elapsed)} s`)
const lost = [...(results.runPerf ?? []), ...(results.runPerfWarm?.rows ?? []), ...(results.scaling?.rows ?? [])].filter((r) => r.family !== 'none' && r.lost)
const failed = Object.values(results)
  .flatMap((w) => (Array.isArray(w) ? w : (w?.rows ?? [])))
  .filter((r) => r.error)
for (const r of lost) log(`LOST UPDATES: ${r.label} lost ${r.lost}`)
for (const r of failed) log(`FAILED: ${r.label}: ${r.error}`)
process.exit(lost.length || failed.length ? 1 : 0)
