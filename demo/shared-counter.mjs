// proclock's main job, shown in a few seconds (`npm run demo`).
//
// Several processes add 1 to a counter kept in a shared file, many times each: read the
// number, add one, write it back. First without a lock (updates get lost as processes
// overwrite each other), then with a proclock Lock that every process opens by name only
// (nothing is passed between them). Then a process is killed with SIGKILL while holding the
// lock, to show that the next process gets it at once and is told the holder died.
import { fork } from 'node:child_process'
import { mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Lock } from '../dist/index.mjs'

const PROCESSES = 4
const INCREMENTS = 10_000
const self = fileURLToPath(import.meta.url)

// --- child: the work each process does ---
if (process.argv[2] === 'worker') {
  const { file, dir, locked } = JSON.parse(process.argv[3])
  const fd = openSync(file, 'r+')
  const buf = Buffer.alloc(8)
  const lock = new Lock('demo-counter', { dir }) // the same name in every process: the same lock
  process.once('message', () => {
    const started = process.hrtime.bigint()
    for (let i = 0; i < INCREMENTS; i++) {
      if (locked) lock.acquireSync()
      readSync(fd, buf, 0, 8, 0)
      buf.writeBigUInt64LE(buf.readBigUInt64LE(0) + 1n)
      writeSync(fd, buf, 0, 8, 0)
      if (locked) lock.release()
    }
    process.send({ ns: Number(process.hrtime.bigint() - started) }, () => process.exit(0))
  })
  process.send('ready')
} else if (process.argv[2] === 'holder') {
  const lock = new Lock('demo-counter', { dir: process.argv[3] })
  lock.acquireSync({ description: 'the demo holder that is about to be killed' })
  process.send({ token: String(lock.token) })
  setInterval(() => {}, 1 << 30)
} else {
  await main()
}

async function race(file, dir, locked) {
  writeFileSync(file, Buffer.alloc(8))
  const children = Array.from({ length: PROCESSES }, () => fork(self, ['worker', JSON.stringify({ file, dir, locked })]))
  await Promise.all(children.map((c) => new Promise((resolve) => c.once('message', resolve))))
  const started = performance.now()
  for (const c of children) c.send('go') // all start together, as in shmlock's multiple-terminals example
  const results = await Promise.all(children.map((c) => new Promise((resolve) => c.once('message', resolve))))
  const elapsed = performance.now() - started
  return { counter: Number(readFileSync(file).readBigUInt64LE(0)), elapsed, ns: results.map((r) => r.ns) }
}

async function main() {
  const scratch = mkdtempSync(join(tmpdir(), 'proclock-demo-'))
  const dir = join(scratch, 'locks')
  const file = join(scratch, 'counter')
  const total = PROCESSES * INCREMENTS
  console.log(`proclock demo: ${PROCESSES} processes each add 1 to a counter in a shared file ${INCREMENTS} times`)
  console.log('(read the number, add one, write it back).\n')

  const free = await race(file, dir, false)
  console.log(`without a lock:  counter = ${free.counter} of ${total}  (${total - free.counter} updates lost)`)

  const locked = await race(file, dir, true)
  const perPair = (locked.elapsed * 1e6) / total
  console.log(`with proclock:   counter = ${locked.counter} of ${total}  (${total - locked.counter} lost)`)
  console.log(`                 ${total} acquisitions in ${locked.elapsed.toFixed(0)} ms across ${PROCESSES} processes:`)
  console.log(`                 ${(perPair / 1000).toFixed(2)} us per acquire + critical section + release, contended`)

  const lock = new Lock('demo-counter', { dir })
  let n = 200_000
  let t0 = performance.now()
  for (let i = 0; i < n; i++) {
    lock.tryAcquire()
    lock.release()
  }
  const uncontended = ((performance.now() - t0) * 1e6) / n
  console.log(`                 ${uncontended.toFixed(0)} ns per uncontended tryAcquire + release\n`)

  console.log('a holder dies: a process takes the lock and is killed with SIGKILL while holding it...')
  const holder = fork(self, ['holder', dir])
  const { token } = await new Promise((resolve) => holder.once('message', resolve))
  const owner = lock.owner()
  console.log(`  held by pid ${owner.pid} ("${owner.description}"), token ${token}`)
  const waiting = lock.acquire()
  await new Promise((resolve) => setTimeout(resolve, 50))
  t0 = performance.now()
  holder.kill('SIGKILL')
  await waiting
  console.log(`  the waiting process got the lock ${(performance.now() - t0).toFixed(1)} ms after the kill;`)
  console.log(`  ownerDied = ${lock.ownerDied}, token ${token} -> ${lock.token}: nobody had to clean up, nothing was stale.`)
  lock.close()
  rmSync(scratch, { recursive: true, force: true })
}
