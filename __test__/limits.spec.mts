// proclock at the limits of its host: out of descriptors, unable to read /proc, unable to start
// a thread, on a full file system, with thousands of pending waits, and over thousands of
// open/close cycles. Each test runs real processes; the ones that need root (a private mount
// namespace, another user, rlimits that root is exempt from) say so and skip otherwise.
import { chownSync, mkdirSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import { lockDir, start, startVia, type Message } from './helpers/procs.mjs'

const root = process.getuid?.() === 0
const linux = process.platform === 'linux'
const needsRoot = (why: string) => (t: { log: (s: string) => void; pass: () => void }) => {
  t.log(`skipped: needs root on Linux (${why}); this run is ${linux ? `uid ${process.getuid?.()}` : process.platform}`)
  t.pass()
}

// Item 1: "cannot tell" is never "dead".
for (const backend of ['shm', 'file'] as const) {
  test.serial(`${backend}: a contender out of descriptors (EMFILE) never takes a live holder's lock, and takes over once it can tell`, async (t) => {
    const dir = lockDir()
    const holder = start('holder', { dir, name: 'blind', then: 'hold', backend })
    await holder.next('held')
    const blind = startVia(['prlimit', '--nofile=256:256', '--'], 'limits', { mode: 'blind', dir, name: 'blind', backend }, { LIMITS_EMFILE: '1' })
    const seen = await blind.next('blind')
    t.true((seen.spare as number) > 0, 'the contender did run out of descriptors')
    t.false(seen.tried, 'tryAcquire() did not take the lock')
    const timed = seen.timed as { ok: boolean; code?: string }
    t.false(timed.ok, 'acquire({timeout}) did not get the lock')
    t.not(seen.alive, false, 'owner() did not report the holder dead')
    if (backend === 'shm') {
      t.is(timed.code, 'ELOCKTIMEOUT')
      t.true(seen.locked, 'isLocked() reports the live holder')
      t.is(seen.alive, true)
    }
    holder.kill('SIGKILL')
    await holder.exited
    blind.send({ type: 'killed' })
    const after = await blind.next('after')
    if (backend === 'shm') t.true(after.pendingAfterKill, 'no takeover while it still cannot tell')
    t.true((after.after as { ok: boolean }).ok, `took over once it had descriptors again: ${JSON.stringify(after.after)}`)
    t.true(after.ownerDied)
    await blind.exited
  })
}

test.serial("shm: a contender that cannot read the holder's /proc entry never takes its lock, even with the liveness file gone", async (t) => {
  if (!root || !linux) return needsRoot('mounts over /proc/<pid> in a private mount namespace')(t)
  const dir = lockDir()
  const holder = start('holder', { dir, name: 'hidden', then: 'hold', backend: 'shm' })
  const held = await holder.next('held')
  // The liveness lock can no longer speak for the holder (a temp cleaner removed the file), and
  // the holder's /proc entry is hidden, as `hidepid` or a foreign /proc would: only the start
  // identity cross-check is left, and it cannot be read.
  unlinkSync(join(dir, 'shm-live-0.lock'))
  const empty = mkdtempSync(join(tmpdir(), 'proclock-empty-'))
  const blind = startVia(['unshare', '-m', '--propagation', 'private', 'sh', '-c', `mount --bind ${empty} /proc/${held.pid} && exec "$@"`, 'sh'], 'limits', { mode: 'blind', dir, name: 'hidden', backend: 'shm' },
  )
  const seen = await blind.next('blind')
  t.false(seen.tried, 'tryAcquire() did not take the lock')
  t.is((seen.timed as { code?: string }).code, 'ELOCKTIMEOUT')
  t.true(seen.locked)
  t.is(seen.alive, true)
  holder.kill('SIGKILL')
  await holder.exited
  blind.send({ type: 'killed' })
  // Dead is provable without /proc (kill(pid, 0) says ESRCH): the takeover follows.
  const after = await blind.next('after')
  t.true((after.after as { ok: boolean }).ok, JSON.stringify(after.after))
  t.true(after.ownerDied)
  await blind.exited
  rmSync(empty, { recursive: true, force: true })
})

// Item 11: no thread, and a bounded number of threads for any number of waiters.
for (const backend of ['shm', 'file'] as const) {
  test.serial(`${backend}: with no thread to be had (RLIMIT_NPROC), acquire() rejects at once with ELOCKIO and the event loop runs on`, async (t) => {
    if (!root || !linux) return needsRoot('runs a child as nobody, to whom RLIMIT_NPROC applies')(t)
    const base = mkdtempSync(join(tmpdir(), 'proclock-nothread-'))
    chownSync(base, 65534, 65534)
    const child = startVia(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--'], 'limits', {
      mode: 'no-thread',
      dir: join(base, 'locks'),
      backend,
    })
    const r = await child.next('result')
    t.false(r.ok as boolean)
    t.is(r.code, 'ELOCKIO')
    t.regex(String(r.message), /no thread could be started/)
    t.regex(String(r.message), /RLIMIT_NPROC/)
    t.true((r.ms as number) < 500, `rejected after ${(r.ms as number).toFixed(0)} ms`)
    t.true((r.ticks as number) >= 5, `the timer ticked ${String(r.ticks)} times`)
    t.false(r.held)
    await child.exited
    rmSync(base, { recursive: true, force: true })
  })

  test.serial(`${backend}: 2000 pending acquire()s in one process cost a bounded number of threads, and each gets the lock in turn`, async (t) => {
    const dir = lockDir()
    // 2000 file handles need 2000 descriptors and more.
    const child = startVia(['prlimit', '--nofile=8192:8192', '--'], 'limits', { mode: 'many-waiters', dir, backend, count: 2000 })
    const r = await child.next('result')
    const extra = (r.during as number) - (r.before as number)
    t.log(`${backend}: threads ${String(r.before)} before, ${String(r.during)} with 2000 waiters; ${(r.ms as number).toFixed(0)} ms to serve them all`)
    // The bound: one queue thread per lock with waiters, plus (file) its kernel request thread,
    // plus the death watch.
    t.true(extra <= 3, `${extra} more threads with 2000 waiters`)
    const order = r.order as number[]
    t.is(order.length, 2000, 'every waiter got the lock')
    t.deepEqual(order, [...order].sort((a, b) => a - b), 'in the order they asked (FIFO within the process)')
    await child.exited
  })
}

// Item 12: close() and withLock() let go of their descriptors.
test.serial('file: 1000 withLock() calls and 1000 open/acquire/close cycles run under ulimit -n 64 without leaking descriptors', async (t) => {
  const dir = lockDir()
  const child = startVia(['prlimit', '--nofile=64:64', '--'], 'limits', { mode: 'cycles', dir, count: 1000 })
  const r = await child.next('result')
  t.log(`descriptors: ${String(r.before)} before, ${String(r.afterWithLock)} after 1000 withLock, ${String(r.after)} after 1000 cycles`)
  t.true((r.afterWithLock as number) <= (r.before as number) + 4)
  t.true((r.after as number) <= (r.before as number) + 4)
  await child.exited
})

// Item 10: a full file system is an error at creation, never a SIGBUS.
test.serial('a full file system makes new Lock() fail with ELOCKIO (ENOSPC), the process lives, and with room again it works', async (t) => {
  if (!root || !linux) return needsRoot('mounts a small tmpfs in a private mount namespace')(t)
  const mnt = mkdtempSync(join(tmpdir(), 'proclock-full-'))
  mkdirSync(mnt, { recursive: true })
  for (const room of [0, 4096, 8192, 3 * 4096]) {
    const child = startVia(['unshare', '-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=6m proclock-full ${mnt} && exec "$@"`, 'sh'], 'limits', { mode: 'full', dir: mnt },
      { LIMITS_ROOM: String(room) },
    )
    let r: Message
    try {
      r = await child.next('result')
    } catch (e) {
      t.fail(`with ${room} bytes free: ${(e as Error).message}`)
      continue
    }
    const tries = r.tries as Array<{ backend: string; ok: boolean; code?: string; message?: string }>
    for (const attempt of tries) {
      if (!attempt.ok) {
        t.is(attempt.code, 'ELOCKIO', `${attempt.backend}, ${room} bytes free: ${attempt.message}`)
        t.regex(String(attempt.message), /ENOSPC|No space left/, `${attempt.backend}: ${attempt.message}`)
      }
    }
    t.true(tries.some((a) => !a.ok), `with ${room} bytes free, something could not be created`)
    t.deepEqual(
      (r.again as Array<{ took: boolean }>).map((a) => a.took),
      [true, true],
      'with room again, both backends work',
    )
    t.deepEqual(r.leftovers, [], 'no half-built temporary left behind')
    const { signal } = await child.exited
    t.is(signal, null, `with ${room} bytes free, the process was not killed`)
  }
  rmSync(mnt, { recursive: true, force: true })
})

