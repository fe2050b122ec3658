// One process of the shmlock run_perf workload: `cycles` times { start = now; acquire; read the
// u64 counter from the shared file; write counter + 1; release; sample = now - start }.
// Each sample includes the wait under contention, as in shmlock's run_perf.py.
import { openSync, readSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { Lock } from '../dist/index.mjs'

const require = createRequire(import.meta.url)
const { impl, counterFile, lockFile, dir, cycles } = JSON.parse(process.argv[2])
const fd = openSync(counterFile, 'r+')
const buf = Buffer.alloc(8)
const bump = () => {
  readSync(fd, buf, 0, 8, 0)
  buf.writeBigUInt64LE(buf.readBigUInt64LE(0) + 1n, 0)
  writeSync(fd, buf, 0, 8, 0)
}

function syncImpl() {
  switch (impl) {
    case 'no lock':
      return [() => {}, () => {}]
    case 'bare futex (floor)': {
      const { openBareLock } = require('./build/bare.cjs')
      const l = openBareLock(lockFile)
      return [l.lock, l.unlock]
    }
    case 'proclock acquireSync': {
      const l = new Lock('run-perf', { dir })
      return [() => l.acquireSync(), () => l.release()]
    }
    case 'fs-ext flockSync': {
      const { flockSync } = require('fs-ext')
      const lfd = openSync(lockFile, 'r+')
      return [() => flockSync(lfd, 'ex'), () => flockSync(lfd, 'un')]
    }
    case 'fs-native-extensions waitForLockSync': {
      const fsx = require('fs-native-extensions')
      const lfd = openSync(lockFile, 'r+')
      return [() => fsx.waitForLockSync(lfd), () => fsx.unlock(lfd)]
    }
  }
}

function asyncImpl() {
  switch (impl) {
    case 'proclock await acquire': {
      const l = new Lock('run-perf', { dir })
      return [() => l.acquire(), () => l.release()]
    }
    case 'fs-native-extensions waitForLock': {
      const fsx = require('fs-native-extensions')
      const lfd = openSync(lockFile, 'r+')
      return [() => fsx.waitForLock(lfd), () => fsx.unlock(lfd)]
    }
  }
}

const samples = new Float64Array(cycles)
process.once('message', async () => {
  const sync = syncImpl()
  if (sync) {
    const [acquire, release] = sync
    for (let i = 0; i < cycles; i++) {
      const t0 = performance.now()
      acquire()
      bump()
      release()
      samples[i] = performance.now() - t0
    }
  } else {
    const [acquire, release] = asyncImpl()
    for (let i = 0; i < cycles; i++) {
      const t0 = performance.now()
      await acquire()
      bump()
      release()
      samples[i] = performance.now() - t0
    }
  }
  process.send({ samples: Array.from(samples) }, () => process.exit(0))
})
process.send('ready')
