// The benchmark's smoke run: `npm run bench -- --quick` in a child process completes, every
// lock it measures (proclock, the four forms of the floor, the five Node peers and, where a
// Python 3 is found, the four Python locks) produces figures, and no lock loses an update in
// the contended workloads. Speed is never asserted here: only that the suite runs, that every
// lock really excludes, and that the run says on stderr how far it is.
import { execFile, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'ava'

const root = fileURLToPath(new URL('../../', import.meta.url))

interface Row {
  id: string
  label: string
  library: string
  family: string
  na?: string | null
  error?: string
  lost?: number
  ns?: number
  throughput?: number | Record<string, number>
  p50?: number
  p99?: number
}

;(process.platform === 'linux' ? test : test.skip)('npm run bench -- --quick runs every lock and none loses an update', async (t) => {
  // About a minute alone; more beside the rest of the suite on a small machine.
  t.timeout(300_000)
  const json = join(mkdtempSync(join(tmpdir(), 'proclock-bench-test-')), 'results.json')
  const run = await new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) => {
    const child = execFile(process.execPath, [join(root, 'benchmark/run.mjs'), '--quick', '--json', json], { cwd: root, timeout: 280_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    )
    child.stdin?.end()
  })
  t.is(run.code, 0, run.stderr.split('\n').slice(-20).join('\n'))
  t.true(run.stdout.includes('## Targets\n'), 'the report was printed')
  t.true(run.stdout.includes('## How each lock is called'), 'the report says how each lock is called')
  // Progress on stderr: which step, how far, how long is left; the tables stay on stdout.
  t.regex(run.stderr, /^\[ ?\d+% · \d+m\d\ds elapsed · ~\d+m\d\ds left\] run_perf trial 1\/1: proclock acquireSync$/m)
  t.false(run.stdout.includes('elapsed ·'), 'no progress line in the tables')

  const results = JSON.parse(readFileSync(json, 'utf8')) as Record<string, Row[] | { rows: Row[] } | undefined>
  const rows = (key: string): Row[] => {
    const w = results[key]
    return Array.isArray(w) ? w : (w?.rows ?? [])
  }

  // Contended workloads: every lock that can wait ran, and lost nothing.
  const perf = rows('runPerf').filter((r) => r.family !== 'none')
  const warmed = rows('runPerfWarm').filter((r) => r.family !== 'none')
  t.true(warmed.length > 0, 'the warmed run_perf ran')
  for (const r of [...perf, ...warmed, ...rows('scaling'), ...rows('handoff')]) {
    t.falsy(r.error, `${r.label}: ${r.error}`)
    if (r.na) continue
    t.is(r.lost ?? 0, 0, `${r.label} lost updates`)
  }
  const ran = perf.filter((r) => !r.na)
  t.true(ran.every((r) => typeof r.throughput === 'number' && r.throughput > 0))

  // Every library was really measured somewhere (a missing peer fails here, never skips).
  const measured = new Set(
    ['uncontendedSync', 'uncontendedAsync', 'runPerf', 'handoff', 'recovery']
      .flatMap(rows)
      .filter((r) => !r.na && !r.error && [r.ns, r.throughput, r.p50].some((v) => typeof v === 'number'))
      .map((r) => r.library),
  )
  for (const library of ['proclock', 'bare futex (floor)', 'proper-lockfile', 'lockfile', 'fs-ext', 'os-lock', 'fs-native-extensions']) {
    t.true(measured.has(library), `${library} was measured`)
  }

  // The floor in all four forms (sync and async, without and with a spin) ran every contended
  // workload, and every row has its ratio to the better floor called the same way.
  for (const id of ['floor', 'floor-spin', 'floor-async', 'floor-async-spin']) {
    for (const key of ['runPerf', 'runPerfWarm', 'handoff']) t.true(rows(key).some((r) => r.id === id && !r.na && !r.error), `${id} measured in ${key}`)
  }
  for (const r of ran) t.is(typeof (r as Row & { vsFloor?: number }).vsFloor, 'number', `${r.label} has a ratio to the floor`)

  // The Python locks ran the same workload in the same run, when there is a Python 3 (setup.mjs
  // skips them, saying so, only when there is none).
  const python = ['python3', 'python'].some((cmd) => spawnSync(cmd, ['-c', 'import sys; assert sys.version_info[0] == 3']).status === 0)
  for (const kind of ['shmlock', 'fasteners', 'filelock', 'portalocker']) {
    const r = perf.find((x) => x.id === `py-${kind}`)
    if (!python) {
      t.log(`no Python 3 found: ${kind} not required`)
      continue
    }
    t.truthy(r && !r.na && !r.error && typeof r.throughput === 'number' && r.throughput > 0, `${kind} (Python) ran run_perf: ${r?.na ?? r?.error ?? 'no row'}`)
  }

  // proclock has a figure in every workload, and took over from every SIGKILLed holder.
  for (const key of ['uncontendedSync', 'uncontendedAsync', 'runPerf', 'handoff', 'recovery']) {
    t.true(rows(key).some((r) => r.library === 'proclock' && !r.na && !r.error), `proclock measured in ${key}`)
  }
  const many = rows('many').find((r) => r.library === 'proclock') as unknown as { cells: Record<string, { ns?: number; error?: string }> }
  t.true(Object.values(many.cells).every((c) => typeof c.ns === 'number'), 'proclock opened every lock in the many-locks run')
})
