// Writes the benchmark's documents from a results object: docs/benchmarks/results.md,
// chart.svg, results.json and the README's Benchmarks block. run.mjs calls it after a full run;
// `node benchmark/render.mjs` re-renders them from docs/benchmarks/results.json (after a change
// to the report's layout, without measuring again).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { renderChart } from './chart.mjs'
import { renderMarkdown, renderReadme } from './report.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const docs = join(root, 'docs/benchmarks')

export function writeDocs(results) {
  mkdirSync(docs, { recursive: true })
  writeFileSync(join(docs, 'results.md'), renderMarkdown(results))
  writeFileSync(join(docs, 'chart.svg'), renderChart(results))
  writeFileSync(join(docs, 'results.json'), JSON.stringify(results, null, 2) + '\n')
  const readme = join(root, 'README.md')
  writeFileSync(readme, renderReadme(readFileSync(readme, 'utf8'), results))
}

if (process.argv[1] === fileURLToPath(import.meta.url)) writeDocs(JSON.parse(readFileSync(join(docs, 'results.json'), 'utf8')))
