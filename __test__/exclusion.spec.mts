// Mutual exclusion across processes, handles in one process, and worker threads, checked with a
// non-atomic counter and an occupancy word inside the critical section.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import test from 'ava'
import { Lock } from 'proclock'
import { lockDir, start } from './helpers/procs.mjs'

const PROCESSES = Number(process.env.PROCLOCK_STRESS_PROCESSES ?? 6)
const HANDLES = 2
const CYCLES = Number(process.env.PROCLOCK_STRESS_CYCLES ?? 2000)

async function stress(t: import('ava').ExecutionContext, mode: 'sync' | 'async', backend: 'shm' | 'file') {
  const dir = lockDir()
  const file = join(dir, '..', 'counter')
  writeFileSync(file, Buffer.alloc(12))
  const children = Array.from({ length: PROCESSES }, () =>
    start('counter', { dir, name: 'stress', file, cycles: CYCLES, handles: HANDLES, mode, backend }),
  )
  await Promise.all(children.map((c) => c.next('ready')))
  for (const c of children) c.send({ type: 'go' })
  const results = await Promise.all(children.map((c) => c.next('done', 170_000)))
  await Promise.all(children.map((c) => c.exited))
  const counter = readFileSync(file).readBigUInt64LE(0)
  const violations = results.reduce((sum, r) => sum + (r.violations as number), 0)
  const slowest = Math.max(...results.map((r) => r.ms as number))
  const total = PROCESSES * HANDLES * CYCLES
  t.log(`${backend} ${mode}: ${total} acquisitions by ${PROCESSES} processes x ${HANDLES} handles in ${slowest.toFixed(0)} ms (${((slowest * 1000) / total).toFixed(1)} us each)`)
  t.is(violations, 0, 'two holders were inside the critical section at once')
  t.is(counter, BigInt(total), 'updates were lost')
}

for (const backend of ['shm', 'file'] as const) {
  test.serial(`${backend}: ${PROCESSES} processes x ${HANDLES} handles x ${CYCLES} cycles, acquireSync in worker threads`, (t) =>
    stress(t, 'sync', backend),
  )
  test.serial(`${backend}: ${PROCESSES} processes x ${HANDLES} handles x ${CYCLES} cycles, await acquire`, (t) => stress(t, 'async', backend))
}

test('the stress workload does lose updates without the lock (the check can fail)', async (t) => {
  // Same counter protocol without any lock, two processes racing from a common start. Overlap is
  // a matter of scheduling, so up to 5 attempts; one lost update proves the check is sharp.
  const dir = lockDir()
  const file = join(dir, '..', 'counter')
  const { spawn } = await import('node:child_process')
  const script = `
    const { openSync, readSync, writeSync } = require('node:fs')
    const fd = openSync(${JSON.stringify(file)}, 'r+'); const b = Buffer.alloc(8)
    process.stdin.once('data', () => {
      for (let i = 0; i < 50000; i++) { readSync(fd, b, 0, 8, 0); b.writeBigUInt64LE(b.readBigUInt64LE(0) + 1n); writeSync(fd, b, 0, 8, 0) }
      process.exit(0)
    })
    process.stdout.write('ready')`
  const counts: bigint[] = []
  for (let attempt = 0; attempt < 5; attempt++) {
    writeFileSync(file, Buffer.alloc(12))
    const racers = [0, 1].map(() => spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] }))
    await Promise.all(racers.map((r) => new Promise((resolve) => r.stdout.once('data', resolve))))
    for (const r of racers) r.stdin.write('go')
    await Promise.all(racers.map((r) => new Promise((resolve) => r.on('exit', resolve))))
    counts.push(readFileSync(file).readBigUInt64LE(0))
    if (counts[counts.length - 1] < 100000n) break
  }
  t.log(`without a lock: ${counts.join(', ')} of 100000`)
  t.true(counts.some((c) => c < 100000n))
})

test('two handles in one process exclude each other', async (t) => {
  const dir = lockDir()
  const a = new Lock('pair', { dir })
  const b = new Lock('pair', { dir })
  t.true(a.tryAcquire())
  t.false(b.tryAcquire())
  t.true(b.isLocked())
  const bWaits = b.acquire()
  let bGotIt = false
  void bWaits.then(() => (bGotIt = true))
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.false(bGotIt, 'b acquired while a held')
  a.release()
  await bWaits
  t.true(b.held)
  t.false(a.tryAcquire())
  b.release()

  // Interleaved async loops on a plain JS counter that yields inside the section.
  let inside = 0
  let counter = 0
  let overlap = 0
  const loop = async (lock: Lock) => {
    for (let i = 0; i < 500; i++) {
      await lock.acquire()
      if (++inside !== 1) overlap++
      const seen = counter
      await new Promise((resolve) => setImmediate(resolve))
      counter = seen + 1
      inside--
      lock.release()
    }
  }
  await Promise.all([loop(a), loop(b)])
  t.is(overlap, 0)
  t.is(counter, 1000)
  a.close()
  b.close()
})

test('the main thread and a worker thread exclude each other', async (t) => {
  const dir = lockDir()
  const shared = new SharedArrayBuffer(12) // [counter, inside, overlaps]
  const view = new Int32Array(shared)
  const workerSource = `
    const { workerData, parentPort } = require('node:worker_threads')
    const { Lock } = require(${JSON.stringify(packageEntry())})
    const view = new Int32Array(workerData.shared)
    const lock = new Lock('mt', { dir: workerData.dir })
    for (let i = 0; i < 3000; i++) {
      lock.acquireSync()
      if (Atomics.add(view, 1, 1) !== 0) Atomics.add(view, 2, 1)
      const seen = view[0]; for (let k = 0; k < 50; k++); view[0] = seen + 1
      Atomics.sub(view, 1, 1)
      lock.release()
    }
    parentPort.postMessage('done')`
  const worker = new Worker(workerSource, { eval: true, workerData: { shared, dir } })
  // Listen from the start: a worker that finishes first posts 'done' while the loop below runs,
  // and a message with no listener yet is lost (the test then waited for ever).
  const workerDone = new Promise((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  const lock = new Lock('mt', { dir })
  for (let i = 0; i < 3000; i++) {
    await lock.acquire()
    if (Atomics.add(view, 1, 1) !== 0) Atomics.add(view, 2, 1)
    const seen = view[0]
    if (i % 16 === 0) await new Promise((resolve) => setImmediate(resolve))
    view[0] = seen + 1
    Atomics.sub(view, 1, 1)
    lock.release()
  }
  await workerDone
  await worker.terminate()
  t.is(view[2], 0, 'the worker and the main thread overlapped')
  t.is(view[0], 6000)
  lock.close()
})

function packageEntry(): string {
  // The CommonJS entry of this package, for eval'd worker code.
  return fileURLToPath(new URL('../../dist/index.js', import.meta.url))
}
