// The benchmark's results as markdown: the full report (docs/benchmarks/results.md), the
// README's summary, and the project's performance targets, all from the results object run.mjs
// builds. Nothing here measures anything.

const BEGIN = '<!-- bench:begin (written by npm run bench; do not edit by hand) -->'
const END = '<!-- bench:end -->'

const group = (x) => Math.round(x).toLocaleString('en-US')
/** A number with 3 significant digits below 100, grouped thousands above. */
export function num(x) {
  if (x === undefined || x === null || Number.isNaN(x)) return '–'
  if (x >= 100) return group(x)
  if (x >= 10) return x.toFixed(1)
  if (x >= 1) return x.toFixed(2)
  return x.toFixed(3)
}
const times = (x) => (x === undefined || !Number.isFinite(x) ? '–' : `${x >= 100 ? group(x) : x >= 0.1 ? x.toFixed(2) : x.toPrecision(2)}x`)

/** The best peer's row for figure `key`, among peers called in `mode` (sync or async) if given. */
function bestPeer(rows, key, higherIsBetter = false, mode = undefined) {
  const peers = rows.filter((r) => r.family === 'peer' && typeof r[key] === 'number' && (mode === undefined || r.mode === mode))
  if (peers.length === 0) return null
  return peers.reduce((a, b) => ((higherIsBetter ? b[key] > a[key] : b[key] < a[key]) ? b : a))
}
/**
 * The floor row a row is compared with: the better of the floor variants (with or without spin)
 * called the same way (`mode`, sync or async; the synchronous floor when not given). `key` is
 * the figure and `higher` whether more is better.
 */
function floorRow(rows, mode = 'sync', key = undefined, higher = false) {
  const floors = (rows ?? []).filter((r) => r.family === 'floor' && r.mode === mode && !r.na && !r.error)
  if (floors.length === 0) return undefined
  if (!key) return floors[0]
  const valued = floors.filter((r) => typeof r[key] === 'number')
  if (valued.length === 0) return floors[0]
  return valued.reduce((a, b) => ((higher ? b[key] > a[key] : b[key] < a[key]) ? b : a))
}
const row = (rows, id) => rows?.find((r) => r.id === id && !r.na && !r.error)
const unavailableCell = (r) => (r.na ? `n/a: ${r.na}` : r.error ? `**failed**: ${r.error}` : null)

function table(header, align, body) {
  // A `|` in a cell (`tryLock(fd) || ...`) would end the cell, even inside a code span: GFM
  // takes it escaped.
  const cell = (c) => String(c).replace(/\|/g, '\\|')
  body = body.map((cells) => cells.map(cell))
  return [`| ${header.join(' | ')} |`, `|${align.map((a) => (a === 'r' ? '---:' : a === 'c' ? ':---:' : '---')).join('|')}|`, ...body.map((cells) => `| ${cells.join(' | ')} |`)].join('\n')
}

/** One line naming the machine and the date, for every output. */
export function machineLine(meta) {
  return `${meta.date} · ${meta.cores} cores (${meta.cpu}) · ${meta.os} · Node ${meta.node}${meta.quick ? ' · quick mode (smoke sizes)' : ''}`
}

/** The performance targets, each { what, value, met } (met null: not measured). */
export function targets(results) {
  const out = []
  const add = (what, value, met) => out.push({ what, value, met })
  const us = results.uncontendedSync
  const floor = floorRow(us, 'sync', 'ns')
  const pl = row(us, 'proclock-sync')
  const fsExt = row(us, 'fs-ext-sync')
  if (us) {
    add('uncontended `tryAcquire()` + `release()` within 1.5x of the floor', pl && floor ? times(pl.ns / floor.ns) : 'not measured', pl && floor ? pl.ns / floor.ns <= 1.5 : null)
    add('uncontended sync at least 5x faster than fs-ext `flockSync`', pl && fsExt ? `${times(fsExt.ns / pl.ns)} faster` : 'not measured', pl && fsExt ? fsExt.ns / pl.ns >= 5 : null)
  }
  const pa = row(results.uncontendedAsync, 'proclock-async')
  if (results.uncontendedAsync) add('uncontended `await acquire()` + `release()` under 1 µs', pa ? `${num(pa.ns)} ns` : 'not measured', pa ? pa.ns < 1000 : null)
  const rp = results.runPerf
  if (rp) {
    const real = rp.filter((r) => r.family !== 'none' && !r.na)
    add('run_perf: zero lost updates for every lock', real.map((r) => (r.error ? 'failed' : r.lost)).join(' / '), real.every((r) => r.lost === 0))
    const s = row(rp, 'proclock-sync')
    add('run_perf sync throughput at least 0.95x the better floor (with or without spin)', s?.vsFloor ? times(s.vsFloor) : 'not measured', s?.vsFloor ? s.vsFloor >= 0.95 : null)
    const a = row(rp, 'proclock-async')
    for (const [p, mode] of [
      [s, 'sync'],
      [a, 'async'],
    ]) {
      const b = bestPeer(rp, 'throughput', true, mode)
      add(`run_perf ${mode} ahead of every peer called ${mode === 'sync' ? 'synchronously' : 'asynchronously'} at its best`, p && b ? `${times(p.throughput / b.throughput)} ${b.label}` : 'not measured', p && b ? p.throughput > b.throughput : null)
    }
    const fa = row(rp, 'fsx-async')
    const ratio = a && fa && a.perTrial.length === fa.perTrial.length ? median(a.perTrial.map((x, i) => x / fa.perTrial[i])) : null
    add("run_perf async throughput at least 2x fs-native-extensions' async lock (called `tryLock(fd) || await waitForLock(fd)`)", ratio ? times(ratio) : 'not measured', ratio ? ratio >= 2 : null)
  }
  const warm = results.runPerfWarm?.rows
  if (warm) {
    const s = row(warm, 'proclock-sync')
    add('diagnostic, not a target: run_perf sync after a warm-up, against the same 0.95x of the better floor', s?.vsFloor ? times(s.vsFloor) : 'not measured', s?.vsFloor ? s.vsFloor >= 0.95 : null)
  }
  const h = results.handoff
  if (h) {
    const a = row(h, 'proclock-async')
    const fa = floorRow(h, 'async', 'p50')
    add('handoff p50, `await acquire()`, within 1.5x of the better async floor', a?.p50VsFloor ? `${times(a.p50VsFloor)} (${num(a.p50)} vs ${num(fa?.p50)} µs)` : 'not measured', a?.p50VsFloor ? a.p50VsFloor <= 1.5 : null)
    const s = row(h, 'proclock-sync')
    const fs = floorRow(h, 'sync', 'p50')
    add('handoff p50, `acquireSync()`, within 1.2x of the better floor', s?.p50VsFloor ? `${times(s.p50VsFloor)} (${num(s.p50)} vs ${num(fs?.p50)} µs)` : 'not measured', s?.p50VsFloor ? s.p50VsFloor <= 1.2 : null)
  }
  const sc = results.scaling
  if (sc) {
    const s = row(sc.rows, 'proclock-sync')
    const ratios = s?.vsFloor ? sc.counts.map((n) => s.vsFloor[n]).filter((x) => typeof x === 'number') : []
    const worst = ratios.length ? Math.min(...ratios) : null
    add(`scaling 1 to ${sc.counts.at(-1)} processes, \`acquireSync()\`, at least 0.95x the better floor at every point (the worst)`, worst === null ? 'not measured' : times(worst), worst === null ? null : worst >= 0.95)
  }
  const rec = results.recovery
  if (rec) {
    const pls = rec.filter((r) => r.family === 'proclock' && !r.na && !r.error)
    const worst = pls.length ? Math.max(...pls.map((r) => r.p99)) : null
    add('recovery after SIGKILL p99 within 50 ms (worst proclock row)', worst === null ? 'not measured' : `${num(worst)} ms`, worst === null ? null : worst <= 50)
  }
  return out
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** The full report. */
export function renderMarkdown(results) {
  const { meta } = results
  const out = []
  const say = (s = '') => out.push(s)
  say('# proclock benchmark')
  say()
  say(machineLine(meta))
  say()
  say('Generated by `npm run bench` (benchmark/run.mjs); the figures in results.json, the chart in chart.svg.')
  say(`Load average before/after the run: ${meta.loadBefore.map((x) => x.toFixed(2)).join(' ')} / ${meta.loadAfter.map((x) => x.toFixed(2)).join(' ')}; it took ${Math.round(meta.seconds)} s.`)
  say(`Lock files and shared counters live on ${meta.scratchFs}.`)
  say()
  say('The floor is a bare cross-process CAS + futex lock with no owner record and no crash safety')
  say("(benchmark/bare-futex, Drepper's three-state futex mutex), called exactly like proclock's hot")
  say('path: what proclock costs on top of it is what a ratio to the floor shows. It runs without and')
  say('with a bounded spin before sleeping, synchronously (`lock()`) and asynchronously (`await')
  say('lockAsync()`: a try on the JS thread, then a waiter thread that settles the promise through a')
  say('thread-safe function, the cheapest asynchronous cross-process handoff Node allows). "x floor"')
  say('is this row\'s figure divided by the better floor variant called the same way (sync or async),')
  say('trial by trial where there are trials; "x best peer" divides by the best peer called the same')
  say('way (for times, below 1 is faster; for throughput, above 1 is more). Every peer is called the')
  say('fastest way it allows (a try on the calling thread first, then the wait, as proclock does; see')
  say('"How each lock is called"); where it cannot do a workload the row says n/a and why.')
  if (Object.keys(meta.unavailable).length) {
    say()
    for (const [id, why] of Object.entries(meta.unavailable)) say(`- \`${id}\` not run: ${why}`)
  }
  say()

  const tgt = targets(results)
  if (tgt.length) {
    say('## Targets')
    say()
    say(table(['target', 'measured', 'met'], ['l', 'r', 'c'], tgt.map((t) => [t.what, t.value, t.met === null ? '–' : t.met ? 'yes' : '**no**'])))
    say()
  }

  const how = new Map()
  // In the order of the contended tables, which list every contestant in the benchmark's order.
  for (const key of ['runPerf', 'runPerfWarm', 'handoff', 'scaling', 'recovery', 'uncontendedSync', 'uncontendedAsync']) {
    const w = results[key]
    for (const r of Array.isArray(w) ? w : (w?.rows ?? [])) if (r.how && !how.has(r.label)) how.set(r.label, r.how)
  }
  if (how.size) {
    say('## How each lock is called')
    say()
    say('The acquire and release of every row of the contended workloads (run_perf, handoff, scaling, recovery); the uncontended tables show the timed pair itself.')
    say()
    say(table(['lock', 'acquire; release'], ['l', 'l'], [...how].map(([label, h]) => [label, h])))
    say()
  }

  for (const [key, title, unit] of [
    ['uncontendedSync', 'Uncontended acquire + release, synchronous', 'ns per pair'],
    ['uncontendedAsync', 'Uncontended acquire + release, asynchronous', 'ns per pair'],
  ]) {
    const rows = results[key]
    if (!rows) continue
    const f = floorRow(rows, key === 'uncontendedSync' ? 'sync' : 'async', 'ns')
    const b = bestPeer(rows, 'ns')
    say(`## ${title} (${unit}, median of ${meta.sizes.rounds} interleaved rounds)`)
    say()
    say(
      table(
        ['lock', 'the pair, as timed (`l` is the library\'s object)', unit, 'x floor', 'x best peer'],
        ['l', 'l', 'r', 'r', 'r'],
        rows.map((r) => {
          const na = unavailableCell(r)
          if (na) return [r.label, '', na, '', '']
          return [r.label, r.pair ? `\`${r.pair.replace(/if \(!(.*?)\) throw new Error\('busy'\); /, '$1; ')}\`` : (r.call ?? ''), num(r.ns), f ? times(r.ns / f.ns) : '–', b ? times(r.ns / b.ns) : '–']
        }),
      ),
    )
    say()
  }

  const perfTable = (rows, title, note) => {
    const best = (r) => bestPeer(rows, 'throughput', true, r.mode)
    const s = meta.sizes
    say(`## ${title}`)
    say()
    say(`Per-cycle times include the wait under contention, as in shmlock's run_perf.py. ${note} Median of ${s.perfTrials} interleaved trial${s.perfTrials > 1 ? 's' : ''}; "x floor" is the median of the per-trial ratios, "x best peer" compares with the best peer called the same way (sync or async); lost updates are the worst trial ("no lock" shows that the workload does race).`)
    say()
    say(
      table(
        ['lock', 'mean ms', 'p50 ms', 'p99 ms', 'max ms', 'cycles/s', 'x floor', 'x best peer', 'lost updates'],
        ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
        rows.map((r) => {
          const na = unavailableCell(r)
          if (na) return [r.label, na, '', '', '', '', '', '', '']
          const b = best(r)
          return [r.label, r.mean.toFixed(3), r.p50.toFixed(3), r.p99.toFixed(3), r.max.toFixed(2), group(r.throughput), times(r.vsFloor), b ? times(r.throughput / b.throughput) : '–', String(r.lost)]
        }),
      ),
    )
    say()
  }
  const s = meta.sizes
  if (results.runPerf) {
    perfTable(
      results.runPerf,
      `shmlock run_perf: ${s.P} processes x ${s.C} cycles (lock, read u64, write u64+1, unlock)`,
      'As shmlock runs it: fresh processes, released together, each doing its cycles at once.',
    )
  }
  if (results.runPerfWarm) {
    const w = results.runPerfWarm.warm
    perfTable(
      results.runPerfWarm.rows,
      `The same after a warm-up: ${s.P} processes x ${s.C} cycles`,
      `Each process first runs up to ${group(w.cycles)} of the same cycles (for at most ${w.ms} ms) on a lock and a counter of its own, so that V8 has compiled the loop and the lock's JavaScript: the steady state of a long-running service. See [analysis.md](analysis.md) for why this differs from the run above.`,
    )
  }

  if (results.handoff) {
    const rows = results.handoff
    const best = (r) => bestPeer(rows, 'p50', false, r.mode)
    say(`## Handoff latency: release in one process to the waiting acquire returning in another (µs)`)
    say()
    say(`Two processes pass the lock back and forth ${meta.sizes.handoffRounds} times a trial; the waiter has been waiting 2 ms when the holder releases. From just before \`release()\` to just after the acquire returns (or its promise resolves), on one monotonic clock. Each process first warms up as in the warmed run_perf. Percentiles per trial, median of ${meta.sizes.handoffTrials} interleaved trials; "p50 x floor" is the median of the per-trial ratios to the better floor called the same way (an asynchronous row against the asynchronous floor), "x best peer" compares with the best peer called the same way.`)
    say()
    say(
      table(
        ['lock', 'p50 µs', 'p99 µs', 'p50 x floor', 'p50 x best peer'],
        ['l', 'r', 'r', 'r', 'r'],
        rows.map((r) => {
          const na = unavailableCell(r)
          if (na) return [r.label, na, '', '', '']
          const b = best(r)
          return [r.label, num(r.p50), num(r.p99), times(r.p50VsFloor), b ? times(r.p50 / b.p50) : '–']
        }),
      ),
    )
    say()
  }

  if (results.scaling) {
    const { counts, rows, cyclesPerRun } = results.scaling
    say(`## Scaling: throughput (cycles/s) with 1 to ${counts.at(-1)} contending processes`)
    say()
    say(`The run_perf cycle, ${cyclesPerRun.toLocaleString('en-US')} cycles a run shared among the processes; median of ${meta.sizes.scalingTrials} interleaved trials. The machine has ${meta.cores} cores.`)
    say()
    say('"x floor": the median of the per-trial ratios to the better floor called the same way; "worst" is the lowest over the process counts.')
    say()
    say(
      table(
        ['lock', ...counts.map((n) => `${n} proc`), `${counts.at(-1)} proc x floor`, 'worst x floor', 'lost updates'],
        ['l', ...counts.map(() => 'r'), 'r', 'r', 'r'],
        rows.map((r) => {
          const na = unavailableCell(r)
          if (na) return [r.label, na, ...counts.map(() => ''), '', '']
          const last = counts.at(-1)
          const ratios = counts.map((n) => r.vsFloor?.[n]).filter((x) => typeof x === 'number')
          return [r.label, ...counts.map((n) => group(r.throughput[n])), times(r.vsFloor?.[last]), ratios.length ? times(Math.min(...ratios)) : '–', String(r.lost ?? 0)]
        }),
      ),
    )
    say()
  }

  if (results.many) {
    const { sizes, rows } = results.many
    say('## Many locks: distinct names opened and acquired in one process')
    say()
    say(`Time to open and acquire each lock, and resident memory added per lock (RSS after minus before, divided by the count), in a fresh process per size. One row per library, in its synchronous form where it has one. Where a library keeps a descriptor or a memory map per lock, it meets this machine's limits (open files: ${meta.limits?.openFiles ?? '?'}, vm.max_map_count: ${meta.limits?.maxMapCount ?? '?'}); the table says at which lock.`)
    say()
    say(
      table(
        ['lock', ...sizes.flatMap((n) => [`${group(n)}: µs/lock`, `${group(n)}: bytes/lock`])],
        ['l', ...sizes.flatMap(() => ['r', 'r'])],
        rows.map((r) => {
          const na = unavailableCell(r)
          if (na) return [r.label, na, ...sizes.flatMap(() => ['', '']).slice(1)]
          return [r.label, ...sizes.flatMap((n) => {
            const c = r.cells[n]
            if (!c) return ['–', '–']
            if (c.failedAt !== undefined) return [`fails at lock ${group(c.failedAt + 1)}: ${c.error}`, '']
            if (c.error) return [`failed: ${c.error}`, '']
            return [num(c.ns / 1000), group(c.bytes)]
          })]
        }),
      ),
    )
    say()
  }

  if (results.recovery) {
    const rows = results.recovery
    say('## Recovery: SIGKILL of the holder to a waiting process holding the lock (ms)')
    say()
    say('A holder process takes the lock, a waiter process starts waiting, and 15 to 33 ms later the holder is killed with SIGKILL; from the kill to the waiter holding.')
    say()
    say(
      table(
        ['lock', 'p50 ms', 'p99 ms', 'max ms', 'rounds', 'note'],
        ['l', 'r', 'r', 'r', 'r', 'l'],
        rows.map((r) => {
          const na = unavailableCell(r)
          if (na) return [r.label, na, '', '', '', r.note ?? '']
          return [r.label, num(r.p50), num(r.p99), num(r.max), String(r.rounds), r.note ?? '']
        }),
      ),
    )
    say()
  }
  return out.join('\n')
}

/** The README's Benchmarks block: the summary table, the chart, the machine and date. */
export function renderReadmeBlock(results) {
  const { meta } = results
  const out = []
  const say = (s = '') => out.push(s)
  say(`Latest full run: ${machineLine(meta)} ([full report](docs/benchmarks/results.md), [figures](docs/benchmarks/results.json)).`)
  say()
  const line = (what, rows, key, { higher = false, unit = '', proclockId = 'proclock-sync', fmt = num } = {}) => {
    if (!rows) return null
    const p = row(rows, proclockId)
    const f = floorRow(rows, p?.mode ?? 'sync', key, higher)
    const b = bestPeer(rows, key, higher, p?.mode)
    const cell = (r) => (r ? `${fmt(r[key])}${unit}` : 'n/a')
    // Throughput against the floor: the median of per-trial ratios, as in the full report.
    const ratio = (a, c) => {
      if (!a || !c) return '–'
      if (c === f && typeof a.vsFloor === 'number' && key === 'throughput') return times(a.vsFloor)
      if (c === f && typeof a.p50VsFloor === 'number' && key === 'p50') return times(a.p50VsFloor)
      return times(a[key] / c[key])
    }
    return [what, `**${cell(p)}**`, cell(f), b ? `${cell(b)} (${b.label})` : 'n/a', ratio(p, f), ratio(p, b)]
  }
  const rows = [
    line('uncontended `tryAcquire()` + `release()`, ns', results.uncontendedSync, 'ns'),
    line('uncontended `await acquire()` + `release()`, ns', results.uncontendedAsync, 'ns', { proclockId: 'proclock-async' }),
    line('run_perf 15 x 1000, cycles/s, `acquireSync`', results.runPerf, 'throughput', { higher: true, fmt: group }),
    line('run_perf 15 x 1000, cycles/s, `await acquire()`', results.runPerf, 'throughput', { higher: true, fmt: group, proclockId: 'proclock-async' }),
    line('run_perf after a warm-up, cycles/s, `acquireSync`', results.runPerfWarm?.rows, 'throughput', { higher: true, fmt: group }),
    line('handoff p50, µs, `acquireSync`', results.handoff, 'p50'),
    line('handoff p50, µs, `await acquire()`', results.handoff, 'p50', { proclockId: 'proclock-async' }),
    line('recovery after SIGKILL p99, ms, `await acquire()`', results.recovery, 'p99', { proclockId: 'proclock-async' }),
  ].filter(Boolean)
  say(table(['', 'proclock', 'better floor, called the same way', 'best peer, called the same way (at its fastest)', 'proclock x floor', 'proclock x best peer'], ['l', 'r', 'r', 'l', 'r', 'r'], rows))
  say()
  const lost = (results.runPerf ?? []).filter((r) => r.family !== 'none' && !r.na && !r.error)
  say(`Lost updates in run_perf: ${lost.every((r) => r.lost === 0) ? `0 for all ${lost.length} locks` : lost.map((r) => `${r.label} ${r.lost}`).join(', ')}. The floor has no crash recovery; the lock-file peers recover only after their staleness timeout. For times, a ratio below 1 is faster; for cycles/s, above 1 is more.`)
  say()
  say('![proclock and its peers: uncontended cost, run_perf throughput, handoff, recovery and scaling](docs/benchmarks/chart.svg)')
  say()
  say('Targets in this run; [analysis.md](docs/benchmarks/analysis.md) says why the missed ones are missed:')
  say()
  for (const t of targets(results)) say(`- ${t.met === null ? 'not measured' : t.met ? 'met' : '**missed**'}: ${t.what}: ${t.value}`)
  return out.join('\n')
}

/** `readme` with its Benchmarks block replaced by a fresh one. */
export function renderReadme(readme, results) {
  const start = readme.indexOf(BEGIN)
  const end = readme.indexOf(END)
  if (start < 0 || end < start) throw new Error(`README.md has no ${BEGIN} ... ${END} block`)
  return `${readme.slice(0, start + BEGIN.length)}\n${renderReadmeBlock(results)}\n${readme.slice(end)}`
}
