// The test command (`npm test`, and what .ci/run calls): build, run the Rust tests, compile and
// run the ava suite, and end with one plain summary line counted from the real runs.
//
//   cargo test: N passed, N failed
//   ava: N passed, N failed
//   N passed, N failed
//
// Exits non-zero if anything failed, if a run could not be parsed, or if no test ran at all.
import { spawn } from 'node:child_process'
import { copyFileSync, mkdirSync } from 'node:fs'

// A step that runs longer than its limit is killed, with everything it started, and counted
// as failed: a run must end with its summary line, never hang until CI's own timeout. Each step
// runs in a process group of its own (POSIX) so that the whole tree can be killed; Ctrl-C and
// SIGTERM are passed on to it.
const posix = process.platform !== 'win32'
const groups = new Set()
const killGroup = (child) => {
  try {
    if (posix) process.kill(-child.pid, 'SIGKILL')
    else child.kill('SIGKILL')
  } catch {}
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const child of groups) killGroup(child)
    process.exit(130)
  })
}

function run(cmd, args, { capture = false, env, limitMinutes = 30 } = {}) {
  return new Promise((resolve) => {
    // Windows: npm and npx are .cmd scripts, which Node only spawns through a shell.
    const child = spawn(cmd, args, {
      stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'],
      env: env ? { ...process.env, ...env } : process.env,
      shell: !posix,
      detached: posix,
    })
    groups.add(child)
    let out = ''
    child.stdout?.on('data', (chunk) => {
      out += chunk
      process.stdout.write(chunk)
    })
    const watchdog = setTimeout(() => {
      console.error(`\n${cmd} ${args.join(' ')}: still running after ${limitMinutes} minutes, killed`)
      killGroup(child)
    }, limitMinutes * 60_000)
    child.on('close', (code, signal) => {
      clearTimeout(watchdog)
      groups.delete(child)
      resolve({ code: code ?? 1, signal, out })
    })
  })
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx'

const build = await run(npm, ['run', '--silent', 'build'])
if (build.code !== 0) {
  console.log('build failed\n0 passed, 1 failed')
  process.exit(1)
}

// The Rust tests, then the loom model checks of the lock-word protocol and of the handle's state
// machine (a separate build with `--cfg loom`, in its own target directory so the two builds do
// not invalidate each other).
let cargoPassed = 0
let cargoFailed = 0
const cargoRuns = [
  [['test', '--workspace', '--locked'], undefined],
  [['test', '-p', 'proclock-core', '--test', 'loom_lock_word', '--test', 'loom_handle', '--release', '--locked'], { RUSTFLAGS: '--cfg loom', CARGO_TARGET_DIR: 'target/loom' }],
]
for (const [args, env] of cargoRuns) {
  const cargo = await run('cargo', args, { capture: true, env })
  let failed = 0
  for (const m of cargo.out.matchAll(/^test result: \w+\. (\d+) passed; (\d+) failed/gm)) {
    cargoPassed += Number(m[1])
    failed += Number(m[2])
  }
  cargoFailed += cargo.code !== 0 && failed === 0 ? 1 : failed
}

// The crash tests' native module (__test__/crash-points.spec.mts): the same code built with the
// `crash-points` feature, which lets a child process SIGKILL itself at a numbered protocol step
// (crates/proclock-core/src/crash_points.rs). A debug build, so it reuses the dependencies the
// Rust tests just compiled; copied to target/crash-points/proclock.node, where the test loads it
// from. If this fails the crash tests fail, saying the module is missing; they are never skipped.
const crashBuild = await run('cargo', ['build', '-p', 'proclock-binding', '--features', 'crash-points', '--locked'])
if (crashBuild.code === 0) {
  const built = { win32: 'proclock_binding.dll', darwin: 'libproclock_binding.dylib' }[process.platform] ?? 'libproclock_binding.so'
  mkdirSync('target/crash-points', { recursive: true })
  copyFileSync(`target/debug/${built}`, 'target/crash-points/proclock.node')
} else {
  console.error('the crash-points build failed: the crash tests will fail')
}

// The benchmark's peers, its floor and its Python locks (a virtual environment under benchmark/
// with shmlock, fasteners, filelock and portalocker from PyPI), for the benchmark smoke test
// (__test__/benchmark.spec.mts): installed here, outside the test's time limit, if a fresh clone
// does not have them yet. If this fails the smoke test fails too, saying why; it is never
// skipped. Only the Python rows are skipped, saying so, and only when there is no Python 3.
const benchSetup = await run('node', ['benchmark/setup.mjs'], { limitMinutes: 15 })
if (benchSetup.code !== 0) console.error('benchmark setup failed: the benchmark smoke test will fail')

// The wall-clock shim for __test__/wall-clock.spec.mts: an LD_PRELOAD library
// (crates/wallclock-jump) that makes the wall clock jump by an hour either way, to check that no
// timeout reads it. Linux only, like the test. Built here, in the debug profile where the spec
// looks for it; not counted: if this fails, that spec fails, saying the library is missing.
if (process.platform === 'linux') {
  const shim = await run('cargo', ['build', '-p', 'wallclock-jump', '--locked'], { limitMinutes: 10 })
  if (shim.code !== 0) console.error('building the wall-clock shim failed: the wall-clock test will fail')
}

const tsc = await run(npx, ['tsc', '-p', '__test__/tsconfig.json'])
let avaPassed = 0
let avaFailed = 0
if (tsc.code !== 0) {
  avaFailed = 1
} else {
  const ava = await run(npx, ['ava', '--tap', ...process.argv.slice(2)], { capture: true, limitMinutes: 15 })
  for (const line of ava.out.split('\n')) {
    if (/^ok \d+/.test(line) && !/# (SKIP|TODO)/i.test(line)) avaPassed++
    else if (/^not ok \d+/.test(line) && !/# TODO/i.test(line)) avaFailed++
  }
  if (ava.code !== 0 && avaFailed === 0) avaFailed = 1
}

const passed = cargoPassed + avaPassed
const failed = cargoFailed + avaFailed
console.log(`\ncargo test: ${cargoPassed} passed, ${cargoFailed} failed`)
console.log(`ava: ${avaPassed} passed, ${avaFailed} failed`)
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 && passed > 0 && avaPassed > 0 && cargoPassed > 0 ? 0 : 1)
