// Waiting never blocks the event loop or the libuv pool: with 8 acquisitions waiting (twice the
// default pool size), timers keep ticking and fs.promises calls complete; then all 8 get the
// lock in turn once the holder lets go.
import { readFile, stat } from 'node:fs/promises'
import test from 'ava'
import { Lock } from 'proclock'
import { lockDir, sleep, start } from './helpers/procs.mjs'

test('8 waiting acquires leave the event loop and fs.promises free', async (t) => {
  t.is(process.env.UV_THREADPOOL_SIZE, undefined, 'runs with the default libuv pool of 4')
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'busy', then: 'release' })
  await holder.next('held')

  const locks = Array.from({ length: 8 }, () => new Lock('busy', { dir }))
  let acquired = 0
  const waits = locks.map(async (lock) => {
    await lock.acquire()
    acquired++
    await sleep(2)
    lock.release()
  })

  let ticks = 0
  const timer = setInterval(() => ticks++, 10)
  const started = performance.now()
  const reads = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? readFile(new URL(import.meta.url)) : stat(dir))))
  const fsMs = performance.now() - started
  await sleep(300)
  clearInterval(timer)
  t.is(reads.length, 40)
  t.true(fsMs < 5000, `40 fs.promises calls took ${fsMs.toFixed(0)} ms while 8 acquisitions waited`)
  t.true(ticks >= 5, `only ${ticks} timer ticks in ~300 ms: the event loop was blocked`)
  t.is(acquired, 0, 'nobody acquired while the holder held')
  t.log(`fs calls: ${fsMs.toFixed(1)} ms for 40; timer ticks in 300 ms: ${ticks}`)

  holder.send({ type: 'release' })
  await holder.next('released')
  await Promise.all(waits)
  t.is(acquired, 8)
  holder.kill()
  for (const lock of locks) lock.close()
})
