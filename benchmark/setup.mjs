// The benchmark's own setup: its peers (devDependencies of benchmark/package.json, two of them
// built by node-gyp at install) and the floor (benchmark/bare-futex, built with napi). Run by
// run.mjs before measuring and by scripts/test.mjs before the tests, so a fresh clone's
// `npm install && npm test` has them; the library itself keeps no install script.
//
//   node benchmark/setup.mjs   installs what is missing; exits non-zero if that fails
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
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
  if (process.platform === 'linux' && !existsSync(join(here, 'build/bare.cjs'))) {
    console.error('benchmark: building the floor (bare-futex)')
    execFileSync(
      join(root, 'node_modules/.bin/napi'),
      ['build', '--platform', '--release', '--manifest-path', join(here, 'bare-futex/Cargo.toml'), '--output-dir', join(here, 'build'), '--js', 'bare.cjs', '--no-dts-header', '--dts', 'bare.d.ts'],
      { cwd: root, stdio },
    )
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) setup()
