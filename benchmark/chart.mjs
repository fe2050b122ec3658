// The benchmark's chart as one SVG file, drawn with a few lines of our own (no charting
// dependency): horizontal bars on a log scale for each workload, and a line chart for scaling.
// Log scales because the peers span four orders of magnitude around proclock and the floor.
import { machineLine, num } from './report.mjs'

const WIDTH = 960
const LABEL_W = 300
const PLOT_W = WIDTH - LABEL_W - 90
const BAR_H = 14
const ROW_H = 20
const COLORS = { proclock: '#d9480f', floor: '#495057', peer: '#1c7ed6', none: '#adb5bd' }

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const text = (x, y, s, attrs = '') => `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(s)}</text>`

/** Decades covering [lo, hi] for a log axis. */
function decades(lo, hi) {
  const a = Math.floor(Math.log10(lo))
  const b = Math.max(a + 1, Math.ceil(Math.log10(hi)))
  return { a, b, x: (v) => ((Math.log10(v) - a) / (b - a)) * PLOT_W }
}

const tick = (e) => (e >= 6 ? `${10 ** (e - 6)}M` : e >= 3 ? `${10 ** (e - 3)}k` : e >= 0 ? String(10 ** e) : String(10 ** e))

/** A bar panel: rows of { label, family, value } or { label, note } (n/a), drawn from y. */
function barPanel(y, title, rows, unit) {
  const parts = []
  parts.push(text(0, y + 14, title, 'class="title"'))
  y += 24
  const values = rows.filter((r) => typeof r.value === 'number' && r.value > 0).map((r) => r.value)
  if (values.length === 0) return { svg: parts.join(''), height: 24 }
  const scale = decades(Math.min(...values), Math.max(...values))
  const plotH = rows.length * ROW_H
  for (let e = scale.a; e <= scale.b; e++) {
    const x = LABEL_W + scale.x(10 ** e)
    parts.push(`<line x1="${x.toFixed(1)}" y1="${y}" x2="${x.toFixed(1)}" y2="${y + plotH}" class="grid"/>`)
    parts.push(text(x, y + plotH + 12, `${tick(e)}${e === scale.b ? ` ${unit}` : ''}`, 'class="tick" text-anchor="middle"'))
  }
  rows.forEach((r, i) => {
    const ry = y + i * ROW_H
    parts.push(text(LABEL_W - 8, ry + BAR_H - 2, r.label, 'class="label" text-anchor="end"'))
    if (typeof r.value === 'number' && r.value > 0) {
      const w = Math.max(1, scale.x(r.value))
      parts.push(`<rect x="${LABEL_W}" y="${ry}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${COLORS[r.family] ?? COLORS.peer}"/>`)
      parts.push(text(LABEL_W + w + 4, ry + BAR_H - 2, num(r.value), 'class="value"'))
    } else {
      parts.push(text(LABEL_W + 4, ry + BAR_H - 2, r.note ?? 'n/a', 'class="na"'))
    }
  })
  return { svg: parts.join(''), height: 24 + plotH + 22 }
}

/** Throughput against process count, log-log, one line per lock. */
function scalingPanel(y, title, scaling) {
  const parts = [text(0, y + 14, title, 'class="title"')]
  y += 24
  const rows = scaling.rows.filter((r) => !r.na && !r.error)
  const values = rows.flatMap((r) => scaling.counts.map((n) => r.throughput[n])).filter((v) => v > 0)
  if (values.length === 0) return { svg: parts.join(''), height: 24 }
  const height = 220
  const v = decades(Math.min(...values), Math.max(...values))
  const yOf = (val) => y + height - (v.x(val) / PLOT_W) * height
  const xs = scaling.counts
  const xOf = (n) => LABEL_W + (xs.length === 1 ? 0 : (Math.log2(n) / Math.log2(xs.at(-1))) * PLOT_W)
  for (let e = v.a; e <= v.b; e++) {
    const yy = yOf(10 ** e)
    parts.push(`<line x1="${LABEL_W}" y1="${yy.toFixed(1)}" x2="${LABEL_W + PLOT_W}" y2="${yy.toFixed(1)}" class="grid"/>`)
    parts.push(text(LABEL_W - 6, yy + 4, `${tick(e)}/s`, 'class="tick" text-anchor="end"'))
  }
  for (const n of xs) parts.push(text(xOf(n), y + height + 14, `${n} proc`, 'class="tick" text-anchor="middle"'))
  // Colour by library (proclock and the floor keep theirs), dashes for asynchronous calls.
  const peerColors = ['#1c7ed6', '#0ca678', '#7048e8', '#e64980', '#f59f00']
  const libraries = [...new Set(rows.filter((r) => r.family === 'peer').map((r) => r.library))]
  rows.forEach((r, i) => {
    const color = r.family === 'peer' ? peerColors[libraries.indexOf(r.library) % peerColors.length] : COLORS[r.family]
    const pts = xs.map((n) => `${xOf(n).toFixed(1)},${yOf(r.throughput[n]).toFixed(1)}`).join(' ')
    const d = r.mode === 'async' ? '6 3' : ''
    parts.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="${r.family === 'peer' ? 1.2 : 2.2}"${d ? ` stroke-dasharray="${d}"` : ''}/>`)
    // The legend: one line per lock on the left, in the line's style.
    const ly = y + 10 + i * 15
    parts.push(`<line x1="0" y1="${ly - 4}" x2="22" y2="${ly - 4}" stroke="${color}" stroke-width="${r.family === 'peer' ? 1.2 : 2.2}"${d ? ` stroke-dasharray="${d}"` : ''}/>`)
    parts.push(text(28, ly, r.label, 'class="legend"'))
  })
  return { svg: parts.join(''), height: 24 + Math.max(height, rows.length * 15) + 26 }
}

const bars = (rows, key, withCall = false) =>
  (rows ?? []).map((r) => ({
    label: withCall && r.call ? `${r.library}: ${r.call}` : r.label,
    family: r.family,
    value: r.na || r.error ? undefined : r[key],
    note: r.na ? `n/a: ${r.na}` : r.error ? 'failed' : undefined,
  }))

export function renderChart(results) {
  const { meta } = results
  const panels = []
  let y = 0
  const header = [
    text(0, 18, 'proclock vs the floor (bare futex) and its peers', 'class="h1"'),
    text(0, 36, machineLine(meta), 'class="sub"'),
    `<rect x="0" y="46" width="10" height="10" fill="${COLORS.proclock}"/>`,
    text(14, 55, 'proclock', 'class="legend"'),
    `<rect x="90" y="46" width="10" height="10" fill="${COLORS.floor}"/>`,
    text(104, 55, 'floor (no owner record, no crash safety)', 'class="legend"'),
    `<rect x="360" y="46" width="10" height="10" fill="${COLORS.peer}"/>`,
    text(374, 55, 'peers', 'class="legend"'),
    text(430, 55, 'log scales', 'class="sub"'),
  ]
  y = 70
  const add = (p) => {
    panels.push(p.svg)
    y += p.height + 10
  }
  if (results.uncontendedSync) add(barPanel(y, 'Uncontended acquire + release, synchronous: ns per pair (shorter is faster)', bars(results.uncontendedSync, 'ns', true), 'ns'))
  if (results.uncontendedAsync) add(barPanel(y, 'Uncontended acquire + release, asynchronous: ns per pair (shorter is faster)', bars(results.uncontendedAsync, 'ns', true), 'ns'))
  if (results.runPerf) {
    const s = meta.sizes
    add(barPanel(y, `shmlock run_perf, ${s.P} processes x ${s.C} cycles: cycles per second (longer is more)`, bars(results.runPerf.filter((r) => r.family !== 'none'), 'throughput'), '/s'))
  }
  if (results.runPerfWarm) {
    const s = meta.sizes
    add(barPanel(y, `The same after a warm-up (V8 has compiled each lock's JavaScript): cycles per second`, bars(results.runPerfWarm.rows.filter((r) => r.family !== 'none'), 'throughput'), '/s'))
  }
  if (results.handoff) add(barPanel(y, 'Handoff, release to the waiter in another process holding: p50 µs (shorter is faster)', bars(results.handoff, 'p50'), 'µs'))
  if (results.recovery) add(barPanel(y, 'Recovery, SIGKILL of the holder to a waiter holding: p99 ms (shorter is faster)', bars(results.recovery, 'p99'), 'ms'))
  if (results.scaling) add(scalingPanel(y, 'Scaling: run_perf cycles per second against contending processes', results.scaling))
  const style = `<style>
    text { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; fill: #212529; }
    .h1 { font-size: 16px; font-weight: 600; } .sub { font-size: 11px; fill: #495057; }
    .title { font-size: 13px; font-weight: 600; } .label, .legend { font-size: 11px; }
    .value, .tick { font-size: 10px; fill: #495057; } .na { font-size: 10px; fill: #868e96; font-style: italic; }
    .grid { stroke: #dee2e6; stroke-width: 1; }
  </style>`
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y}" viewBox="-10 -4 ${WIDTH + 20} ${y + 8}">
<rect x="-10" y="-4" width="${WIDTH + 20}" height="${y + 8}" fill="#ffffff"/>
${style}
${header.join('\n')}
${panels.join('\n')}
</svg>
`
}
