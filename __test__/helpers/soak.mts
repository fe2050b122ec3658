// The soak test's critical section, shared by its fixture (fixtures/soak-worker.mts) and by the
// spec's own final pass. No ava here: fixtures import it.
//
// Every lock key (a backend and a name) has two small files beside the lock directory:
//   state-<k>  40 bytes: u32 phase (0 free, 1 held), u32 pid, u32 child, u32 lane,
//              u64 process start time, u64 token (of the holder, or of the last one when free)
//   count-<k>  32 bytes: u64 count (a non-atomic counter, +1 per critical section),
//              u64 incToken (token of the section that last incremented it),
//              u64 extras (increments whose section was not counted: see below),
//              u64 accounted (token of the last dead holder whose increment was accounted)
// and every lane (one thread of one process, or the spec itself) has
//   done-<child>-<lane>  16 bytes per key: u64 sections completed, u64 token of the last one
// written inside the lock after the counter. At the end, for every key,
//   count === sum over lanes of sections completed + extras
// A holder killed after incrementing the counter but before counting its section leaves the
// state naming it and incToken equal to its token: the next holder sees that, looks at the dead
// lane's done file, and adds one to extras if the section was not counted there.
//
// The checks made on entry (each failure is a violation):
//   - the token is above the state's last token and above the counter's incToken;
//   - the state is free, or names a holder that is dead (a live one inside means two holders);
//   - ownerDied is true if the state names a dead holder. ownerDied true on a free state is
//     allowed (the holder died between acquiring and writing the state, or between clearing it
//     and releasing) and counted as a 'silent' takeover. ownerDied false on a state naming a
//     dead holder is logged ('L'), and the spec counts each as a violation.
// and on exit: the state still names this holder.
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs'
import { join } from 'node:path'

export const BACKENDS = ['shm', 'file'] as const
export const NAMES = ['a', 'b', 'c']
export const KEYS = BACKENDS.flatMap((backend) => NAMES.map((name) => ({ backend, name, label: `${backend}:${name}` })))

const STATE_SIZE = 40
const COUNT_SIZE = 32
const SLOT_SIZE = 16

export const statePath = (base: string, k: number) => join(base, `state-${k}`)
export const countPath = (base: string, k: number) => join(base, `count-${k}`)
export const donePath = (base: string, child: number, lane: number) => join(base, `done-${child}-${lane}`)

/** This process's start time in clock ticks since boot (Linux), 0n elsewhere. */
export function processStart(pid: number | 'self' = 'self'): bigint {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return BigInt(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19])
  } catch {
    return 0n
  }
}

/**
 * Is process `pid` (started at `start`) dead? On Linux: gone, a zombie, exiting (PF_EXITING: its
 * descriptors, and so its kernel locks, are on their way out, which is when a waiter may take
 * over), or a different process with the same pid. Elsewhere: kill(pid, 0) says ESRCH.
 */
export function isDead(pid: number, start: bigint): boolean {
  if (process.platform === 'linux') {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    } catch {
      return true
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (f[0] === 'Z' || f[0] === 'X' || f[0] === 'x') return true
    if ((Number(f[6]) & 0x4) !== 0) return true
    return start !== 0n && BigInt(f[19]) !== start
  }
  try {
    process.kill(pid, 0)
    return false
  } catch (error) {
    return (error as { code?: string }).code === 'ESRCH'
  }
}

interface State {
  phase: number
  pid: number
  child: number
  lane: number
  start: bigint
  token: bigint
}

interface Count {
  count: bigint
  incToken: bigint
  extras: bigint
  accounted: bigint
}

/** A thread that runs critical sections: its identity and its open files. */
export class Lane {
  readonly pid = process.pid
  readonly start = processStart()
  readonly #state: number[]
  readonly #count: number[]
  readonly #done: number
  readonly #doneCounts: bigint[]
  readonly #log: number
  readonly #buf = Buffer.alloc(64)

  constructor(
    readonly base: string,
    readonly child: number,
    readonly lane: number,
    logFile: string,
    /** Called with each violation (also written to the log). */
    readonly onViolation: (message: string) => void,
  ) {
    this.#state = KEYS.map((_, k) => openSync(statePath(base, k), 'r+'))
    this.#count = KEYS.map((_, k) => openSync(countPath(base, k), 'r+'))
    this.#done = openSync(donePath(base, child, lane), 'wx+')
    writeSync(this.#done, Buffer.alloc(KEYS.length * SLOT_SIZE), 0, KEYS.length * SLOT_SIZE, 0)
    this.#doneCounts = KEYS.map(() => 0n)
    this.#log = openSync(logFile, 'a')
  }

  log(line: string): void {
    writeSync(this.#log, `${line}\n`)
  }

  #violation(message: string): void {
    const full = `child ${this.child} lane ${this.lane} pid ${this.pid}: ${message}`
    this.log(`V ${full}`)
    this.onViolation(full)
  }

  #readState(k: number): State {
    const b = this.#buf
    readSync(this.#state[k], b, 0, STATE_SIZE, 0)
    return { phase: b.readUInt32LE(0), pid: b.readUInt32LE(4), child: b.readUInt32LE(8), lane: b.readUInt32LE(12), start: b.readBigUInt64LE(16), token: b.readBigUInt64LE(24) }
  }

  #writeState(k: number, s: State): void {
    const b = Buffer.alloc(STATE_SIZE)
    b.writeUInt32LE(s.phase, 0)
    b.writeUInt32LE(s.pid, 4)
    b.writeUInt32LE(s.child, 8)
    b.writeUInt32LE(s.lane, 12)
    b.writeBigUInt64LE(s.start, 16)
    b.writeBigUInt64LE(s.token, 24)
    writeSync(this.#state[k], b, 0, STATE_SIZE, 0)
  }

  #readCount(k: number): Count {
    const b = this.#buf
    readSync(this.#count[k], b, 0, COUNT_SIZE, 0)
    return { count: b.readBigUInt64LE(0), incToken: b.readBigUInt64LE(8), extras: b.readBigUInt64LE(16), accounted: b.readBigUInt64LE(24) }
  }

  #writeCount(k: number, c: Count): void {
    const b = Buffer.alloc(COUNT_SIZE)
    b.writeBigUInt64LE(c.count, 0)
    b.writeBigUInt64LE(c.incToken, 8)
    b.writeBigUInt64LE(c.extras, 16)
    b.writeBigUInt64LE(c.accounted, 24)
    writeSync(this.#count[k], b, 0, COUNT_SIZE, 0)
  }

  /**
   * Enter the critical section of key `k`, just acquired with `token` and `ownerDied`: check,
   * account for a dead predecessor, mark the state as ours and read the counter. The caller may
   * yield before calling leave() with the result.
   */
  enter(k: number, token: bigint, ownerDied: boolean): Count {
    const label = KEYS[k].label
    const s = this.#readState(k)
    let c = this.#readCount(k)
    if (token <= s.token) this.#violation(`${label}: token ${token} is not above the state's last token ${s.token}`)
    if (token <= c.incToken) this.#violation(`${label}: token ${token} is not above the counter's last token ${c.incToken}`)
    if (s.phase === 1) {
      const who = `pid ${s.pid} (child ${s.child} lane ${s.lane}, token ${s.token})`
      if (s.pid === this.pid || !isDead(s.pid, s.start)) {
        this.#violation(`${label}: entered with token ${token} (ownerDied ${ownerDied}) while ${who}, alive, is inside`)
      } else {
        if (ownerDied) {
          this.log(`T ${k} ${token} ${s.pid} ${s.child} ${s.token} ${performance.timeOrigin + performance.now()}`)
        } else {
          // A violation: the holder died holding and we were not told (the spec reports it).
          this.log(`L ${k} ${token} ${s.pid} ${s.child} ${s.token}`)
        }
        // Did the dead holder increment the counter without counting its section?
        if (c.incToken === s.token && c.accounted !== s.token) {
          const slot = Buffer.alloc(SLOT_SIZE)
          try {
            const fd = openSync(donePath(this.base, s.child, s.lane), 'r')
            readSync(fd, slot, 0, SLOT_SIZE, k * SLOT_SIZE)
            closeSync(fd)
          } catch {}
          const orphan = slot.readBigUInt64LE(8) !== s.token
          c = { ...c, extras: c.extras + (orphan ? 1n : 0n), accounted: s.token }
          this.#writeCount(k, c)
        }
      }
    } else if (ownerDied) {
      this.log(`S ${k} ${token}`)
    }
    this.#writeState(k, { phase: 1, pid: this.pid, child: this.child, lane: this.lane, start: this.start, token })
    return c
  }

  /**
   * Leave the critical section entered with enter(): increment, count, check, free. `between`
   * runs between incrementing and counting (a wider window for a kill to land in).
   */
  leave(k: number, token: bigint, c: Count, between?: () => void): void {
    this.#writeCount(k, { ...c, count: c.count + 1n, incToken: token })
    between?.()
    this.#doneCounts[k]++
    const slot = Buffer.alloc(SLOT_SIZE)
    slot.writeBigUInt64LE(this.#doneCounts[k], 0)
    slot.writeBigUInt64LE(token, 8)
    writeSync(this.#done, slot, 0, SLOT_SIZE, k * SLOT_SIZE)
    const s = this.#readState(k)
    if (s.phase !== 1 || s.pid !== this.pid || s.child !== this.child || s.lane !== this.lane || s.token !== token)
      this.#violation(`${KEYS[k].label}: the state changed while token ${token} was inside: ${JSON.stringify(s, (_, v) => (typeof v === 'bigint' ? `${v}` : v))}`)
    this.#writeState(k, { phase: 0, pid: 0, child: 0, lane: 0, start: 0n, token })
  }

  close(): void {
    for (const fd of [...this.#state, ...this.#count, this.#done, this.#log]) closeSync(fd)
  }
}

/** The counter files' contents and the sum of every lane's completed sections, per key. */
export function tally(base: string, doneFiles: string[]): Array<{ count: bigint; extras: bigint; done: bigint }> {
  return KEYS.map((_, k) => {
    const c = readFileSync(countPath(base, k))
    let done = 0n
    for (const file of doneFiles) {
      const d = readFileSync(join(base, file))
      if (d.length >= (k + 1) * SLOT_SIZE) done += d.readBigUInt64LE(k * SLOT_SIZE)
    }
    return { count: c.readBigUInt64LE(0), extras: c.readBigUInt64LE(16), done }
  })
}

export function initFiles(base: string): void {
  for (let k = 0; k < KEYS.length; k++) {
    const s = openSync(statePath(base, k), 'wx')
    writeSync(s, Buffer.alloc(STATE_SIZE))
    closeSync(s)
    const c = openSync(countPath(base, k), 'wx')
    writeSync(c, Buffer.alloc(COUNT_SIZE))
    closeSync(c)
  }
}
