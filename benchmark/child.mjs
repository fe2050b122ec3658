// A benchmark process: opens one contestant's lock and does what run.mjs asks, over the IPC
// channel. argv[2] is JSON: { id, key, ctx, counterFile?, warm? }.
//
// With `warm`, before saying 'ready' the process runs up to warm.cycles of the same cycle (for
// at most warm.ms) on a lock and a counter of its own, uncontended: V8 has then compiled the
// loop and the lock's JavaScript, so the measured cycles are steady state rather than the first
// thousand calls of a fresh process, which run in V8's interpreter while its compiler threads
// compete for the CPUs.
//
//   { type: 'go', cycles }  the run_perf cycle `cycles` times: start = now; acquire; read the u64
//                           counter from the shared file; write counter + 1; release;
//                           sample = now - start. Each sample includes the wait under contention,
//                           as in shmlock's run_perf.py. Replies { type: 'done', samples }.
//   { type: 'acquire' }     replies { type: 'waiting' } just before it starts to wait, then
//                           { type: 'acquired', at } once it holds the lock.
//   { type: 'release' }     replies { type: 'released', at } (at = just before releasing).
//   { type: 'many', count } opens and acquires `count` locks of distinct names; replies
//                           { type: 'many', ns, bytes } (time and resident memory per lock).
//
// Times `at` are process.hrtime (CLOCK_MONOTONIC on Linux, one clock for every process), as
// decimal strings of nanoseconds, so the parent can subtract them across processes.
import { openSync, readSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { byId } from './locks.mjs'

const { id, key, ctx, counterFile, warm } = JSON.parse(process.argv[2])
const contestant = byId(id)
const sync = contestant.mode === 'sync'
const now = () => process.hrtime.bigint()

let counter = null
const buf = Buffer.alloc(8)

// `until` (a performance.now() time) cuts the run short: the warm-up's limit.
async function cycles(lock, n, fd = counter, until = Infinity) {
  const samples = new Float64Array(n)
  const { acquire, release } = lock
  const bump = () => {
    readSync(fd, buf, 0, 8, 0)
    buf.writeBigUInt64LE(buf.readBigUInt64LE(0) + 1n, 0)
    writeSync(fd, buf, 0, 8, 0)
  }
  if (sync) {
    for (let i = 0; i < n && (i & 255 || performance.now() < until); i++) {
      const t0 = performance.now()
      acquire()
      bump()
      release()
      samples[i] = performance.now() - t0
    }
  } else {
    for (let i = 0; i < n && (i & 255 || performance.now() < until); i++) {
      const t0 = performance.now()
      await acquire()
      bump()
      await release()
      samples[i] = performance.now() - t0
    }
  }
  return Array.from(samples)
}

async function many(n) {
  globalThis.gc?.()
  const before = process.memoryUsage().rss
  const held = []
  const t0 = now()
  for (let i = 0; i < n; i++) {
    try {
      const lock = await contestant.open(`many-${i}`, ctx)
      const got = lock.try ? lock.try() : (await lock.acquire(), true)
      if (!got) throw new Error(`many-${i} was not free`)
      held.push(lock)
    } catch (error) {
      // A limit of the machine (open files, memory maps) is a result, not a crash: say where.
      return { failedAt: i, error: error.code && /^E[A-Z]+$/.test(error.code) ? error.code : (error.message.match(/os error \d+|E[A-Z]{3,}/)?.[0] ?? error.message) }
    }
  }
  const ns = Number(now() - t0) / n
  globalThis.gc?.()
  const bytes = (process.memoryUsage().rss - before) / n
  return { ns, bytes, held: held.length }
}

const send = (m) => new Promise((resolve) => process.send(m, resolve))

if (key === undefined) {
  // The many-locks workload opens its own locks.
  process.once('message', async (m) => {
    try {
      await send({ type: 'many', ...(await many(m.count)) })
    } catch (error) {
      await send({ type: 'failed', message: `${error.code ?? ''} ${error.message}`.trim() })
    }
    process.exit(0)
  })
  process.send({ type: 'ready' })
} else {
  if (counterFile) counter = openSync(counterFile, 'r+')
  const lock = await contestant.open(key, ctx)
  if (warm) {
    // The very loop that will be measured, on a lock and a counter of this process's own, so
    // that V8 has compiled it (with the lock's calls inlined) before the measured cycles.
    const own = await contestant.open(`${key}-warm-${process.pid}`, ctx)
    const ownCounter = openSync(`${counterFile ?? join(ctx.scratch, 'warm')}-warm-${process.pid}`, 'w+')
    writeSync(ownCounter, Buffer.alloc(8), 0, 8, 0)
    await cycles(own, warm.cycles, ownCounter, performance.now() + warm.ms)
  }
  process.on('message', async (m) => {
    switch (m.type) {
      case 'go':
        await send({ type: 'done', samples: await cycles(lock, m.cycles) })
        break
      case 'acquire':
        // Sent before the (possibly blocking) wait starts; a small IPC message goes out at once.
        process.send({ type: 'waiting' })
        if (sync) lock.acquire()
        else await lock.acquire()
        process.send({ type: 'acquired', at: String(now()) })
        break
      case 'release': {
        const at = now()
        await lock.release()
        process.send({ type: 'released', at: String(at) })
        break
      }
      case 'exit':
        process.exit(0)
    }
  })
  process.send({ type: 'ready' })
}
