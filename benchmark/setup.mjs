// The benchmark's own setup: its peers (devDependencies of benchmark/package.json, two of them
// built by node-gyp at install), the floor (benchmark/bare-futex, built with napi) and the Python
// locks of the run_perf table (a virtual environment in benchmark/.venv with the packages of
// benchmark/requirements.txt from PyPI). Run by run.mjs before measuring and by scripts/test.mjs
// before the tests, so a fresh clone's `npm install && npm test` has them; the library itself
// keeps no install script.
//
//   node benchmark/setup.mjs   installs what is missing; exits non-zero if that fails
//
// Without a Python 3 the Python rows are skipped, saying so (pythonStatus()); with one, a
// failure to make the environment or install the packages is a failure, never a skip.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = fileURLToPath(new URL('.', import.meta.url))
const root = join(here, '..')
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

/** The peers that are not installed (or, for the node-gyp ones, not built). */
export function missingPeers() {
  const pkg = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'))
  const built = { 'fs-ext': 'build/Release/fs_ext.node', 'os-lock': 'build/Release/addon.node' }
  return Object.keys(pkg.devDependencies).filter((name) => {
    const dir = join(here, 'node_modules', name)
    return !existsSync(join(dir, 'package.json')) || (built[name] && !existsSync(join(dir, built[name])))
  })
}

export function setup({ stdio = 'inherit' } = {}) {
  const missing = missingPeers()
  if (missing.length) {
    console.error(`benchmark: installing ${missing.join(', ')}`)
    execFileSync(npm, ['install', '--no-audit', '--no-fund'], { cwd: here, stdio, shell: process.platform === 'win32' })
    const still = missingPeers()
    if (still.length) throw new Error(`benchmark peers still missing after npm install: ${still.join(', ')}`)
  }
  if (process.platform === 'linux' && floorIsStale()) {
    console.error('benchmark: building the floor (bare-futex)')
    execFileSync(
      join(root, 'node_modules/.bin/napi'),
      ['build', '--platform', '--release', '--manifest-path', join(here, 'bare-futex/Cargo.toml'), '--output-dir', join(here, 'build'), '--js', 'bare.cjs', '--no-dts-header', '--dts', 'bare.d.ts'],
      { cwd: root, stdio },
    )
  }
  setupPython({ stdio })
}

/**
 * Whether the floor must be (re)built: never built, or its sources changed since (a stale build
 * would measure an older floor, or lack a function the contestants call).
 */
function floorIsStale() {
  const built = join(here, 'build')
  const binaries = existsSync(built) ? readdirSync(built).filter((f) => f.endsWith('.node')) : []
  if (!existsSync(join(built, 'bare.cjs')) || binaries.length === 0) return true
  const builtAt = Math.min(...binaries.map((f) => statSync(join(built, f)).mtimeMs))
  const crate = join(here, 'bare-futex')
  const sources = [join(crate, 'Cargo.toml'), join(crate, 'build.rs'), ...readdirSync(join(crate, 'src')).map((f) => join(crate, 'src', f))]
  return sources.some((f) => statSync(f).mtimeMs > builtAt)
}

// --- the Python locks ---
const venv = join(here, '.venv')
const venvPython = join(venv, process.platform === 'win32' ? 'Scripts/python.exe' : 'bin/python')
const PY_MODULES = ['shmlock', 'fasteners', 'filelock', 'portalocker']

/** A Python 3 interpreter on the PATH (its command), or null. */
function findPython() {
  for (const cmd of process.platform === 'win32' ? ['python', 'py'] : ['python3', 'python']) {
    const r = spawnSync(cmd, ['-c', 'import sys; print(sys.version_info[0])'], { encoding: 'utf8' })
    if (r.status === 0 && r.stdout.trim() === '3') return cmd
  }
  return null
}

/**
 * { python } (the environment's interpreter, ready) or { skip } (why the Python rows cannot
 * run: only when no Python 3 is found).
 */
export function pythonStatus() {
  if (existsSync(venvPython)) return { python: venvPython }
  return findPython() ? { skip: 'the benchmark environment is not set up (node benchmark/setup.mjs)' } : { skip: 'no Python 3 found on the PATH (python3 or python)' }
}

function pythonReady() {
  return existsSync(venvPython) && spawnSync(venvPython, ['-c', `import ${PY_MODULES.join(', ')}`]).status === 0
}

export function setupPython({ stdio = 'inherit' } = {}) {
  if (pythonReady()) return
  const python = findPython()
  if (!python) {
    console.error('benchmark: no Python 3 found (python3 or python on the PATH): the Python rows (shmlock, fasteners, filelock, portalocker) will be skipped')
    return
  }
  if (!existsSync(venvPython)) {
    console.error(`benchmark: making a Python virtual environment in ${venv}`)
    execFileSync(python, ['-m', 'venv', venv], { stdio })
  }
  console.error(`benchmark: installing ${PY_MODULES.join(', ')} from PyPI into it`)
  execFileSync(venvPython, ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '-q', '-r', join(here, 'requirements.txt')], { stdio })
  if (!pythonReady()) throw new Error(`the Python locks are still missing from ${venv} after pip install`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) setup()
