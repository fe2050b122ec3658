// The test command (`npm test`, and what .ci/run calls): build, run the Rust tests, compile and
// run the ava suite, and end with one plain summary line counted from the real runs.
//
//   cargo test: N passed, N failed
//   ava: N passed, N failed
//   N passed, N failed
//
// Exits non-zero if anything failed, if a run could not be parsed, or if no test ran at all.
import { spawn } from 'node:child_process'

function run(cmd, args, { capture = false, env } = {}) {
  return new Promise((resolve) => {
    // Windows: npm and npx are .cmd scripts, which Node only spawns through a shell.
    const shell = process.platform === 'win32'
    const child = spawn(cmd, args, { stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'], env: env ? { ...process.env, ...env } : process.env, shell })
    let out = ''
    child.stdout?.on('data', (chunk) => {
      out += chunk
      process.stdout.write(chunk)
    })
    child.on('close', (code, signal) => resolve({ code: code ?? 1, signal, out }))
  })
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx'

const build = await run(npm, ['run', '--silent', 'build'])
if (build.code !== 0) {
  console.log('build failed\n0 passed, 1 failed')
  process.exit(1)
}

// The Rust tests, then the loom model check of the lock-word protocol (a separate build with
// `--cfg loom`, in its own target directory so the two builds do not invalidate each other).
let cargoPassed = 0
let cargoFailed = 0
const cargoRuns = [
  [['test', '--workspace', '--locked'], undefined],
  [['test', '-p', 'proclock-core', '--test', 'loom_lock_word', '--release', '--locked'], { RUSTFLAGS: '--cfg loom', CARGO_TARGET_DIR: 'target/loom' }],
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

const tsc = await run(npx, ['tsc', '-p', '__test__/tsconfig.json'])
let avaPassed = 0
let avaFailed = 0
if (tsc.code !== 0) {
  avaFailed = 1
} else {
  const ava = await run(npx, ['ava', '--tap', ...process.argv.slice(2)], { capture: true })
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
