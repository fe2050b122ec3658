// Worker threads: each handle is its own owner, and a worker terminated while holding (or while
// waiting) never leaves the lock held forever: a terminated holder has died holding.
import { Worker } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import test from 'ava'
import { Lock } from 'proclock'
import { lockDir, sleep } from './helpers/procs.mjs'

const entry = fileURLToPath(new URL('../../dist/index.js', import.meta.url))

function worker(source: string, data: Record<string, unknown>): Worker {
  return new Worker(`const { Lock } = require(${JSON.stringify(entry)});\n${source}`, { eval: true, workerData: data })
}

const message = (w: Worker) => new Promise<unknown>((resolve, reject) => {
  w.once('message', resolve)
  w.once('error', reject)
})

for (const backend of ['shm', 'file'] as const) {
  test(`${backend}: a worker terminated while holding: the lock is freed and the next holder sees ownerDied`, async (t) => {
    const dir = lockDir()
    const w = worker(
      `const { workerData, parentPort } = require('node:worker_threads')
       const lock = new Lock('w1', { backend: workerData.backend, dir: workerData.dir, description: 'held by a worker' })
       lock.acquireSync()
       parentPort.postMessage(lock.token)
       setInterval(() => {}, 1000)`,
      { dir, backend },
    )
    const workerToken = (await message(w)) as bigint
    const lock = new Lock('w1', { dir, backend })
    t.false(lock.tryAcquire(), 'the live worker holds it')
    t.is(lock.owner()?.description, 'held by a worker')
    t.is(lock.owner()?.pid, process.pid)
    const waiting = lock.acquire({ timeout: 5000 })
    await sleep(20)
    await w.terminate()
    await waiting
    t.true(lock.ownerDied)
    t.true(lock.token! > workerToken)
    lock.close()
  })
}

test('a worker whose lock object was garbage-collected still holds until it ends', async (t) => {
  const dir = lockDir()
  const w = worker(
    `const { workerData, parentPort } = require('node:worker_threads')
     require('node:v8').setFlagsFromString('--expose-gc')
     const gc = require('node:vm').runInNewContext('gc')
     let collected = false
     const registry = new FinalizationRegistry(() => { collected = true })
     ;(() => { const l = new Lock('w2', { dir: workerData.dir }); l.acquireSync(); registry.register(l, 'lock') })()
     ;(async () => {
       for (let i = 0; i < 50 && !collected; i++) { gc(); await new Promise((r) => setTimeout(r, 10)) }
       parentPort.postMessage(collected)
       setInterval(() => {}, 1000)
     })()`,
    { dir },
  )
  t.true((await message(w)) as boolean, 'the Lock object was collected')
  const lock = new Lock('w2', { dir })
  t.false(lock.tryAcquire(), 'an unreachable Lock object does not end its hold')
  await w.terminate()
  await lock.acquire({ timeout: 5000 })
  t.true(lock.ownerDied)
  lock.close()
})

for (const backend of ['shm', 'file'] as const) {
  test(`${backend}: a worker terminated while waiting leaves nothing behind`, async (t) => {
    const dir = lockDir()
    const main = new Lock('w3', { dir, backend })
    main.acquireSync()
    const w = worker(
      `const { workerData, parentPort } = require('node:worker_threads')
       const lock = new Lock('w3', { backend: workerData.backend, dir: workerData.dir })
       lock.acquire().then(() => parentPort.postMessage('acquired'))
       parentPort.postMessage('waiting')`,
      { dir, backend },
    )
    t.is(await message(w), 'waiting')
    await sleep(30)
    await w.terminate()
    main.release()
    const other = new Lock('w3', { dir, backend })
    await sleep(30)
    t.true(other.tryAcquire(), 'the terminated waiter did not take the lock')
    t.false(other.ownerDied)
    other.close()
    main.close()
  })
}

test('handles in several workers exclude each other and each has its own owner UUID', async (t) => {
  const dir = lockDir()
  const shared = new SharedArrayBuffer(12)
  const workers = Array.from({ length: 4 }, () =>
    worker(
      `const { workerData, parentPort } = require('node:worker_threads')
       const view = new Int32Array(workerData.shared)
       const lock = new Lock('w4', { dir: workerData.dir })
       for (let i = 0; i < 2000; i++) {
         lock.acquireSync()
         if (Atomics.add(view, 1, 1) !== 0) Atomics.add(view, 2, 1)
         const seen = view[0]; for (let k = 0; k < 20; k++); view[0] = seen + 1
         Atomics.sub(view, 1, 1)
         lock.release()
       }
       parentPort.postMessage(lock.uuid)`,
      { dir, shared },
    ),
  )
  const uuids = await Promise.all(workers.map(message))
  await Promise.all(workers.map((w) => w.terminate()))
  const view = new Int32Array(shared)
  t.is(view[2], 0)
  t.is(view[0], 8000)
  t.is(new Set(uuids).size, 4)
})
