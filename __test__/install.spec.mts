// The prebuilt install: the main package and the linux-x64-gnu package, packed as they are
// published, installed into a new project with --ignore-scripts, offline, and with no cargo,
// rustc or C compiler on PATH; then a lock is used there, from CommonJS and from ESM.
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'ava'

const root = fileURLToPath(new URL('../../', import.meta.url))
const npmCli = join(dirname(process.execPath), 'npm')

function pack(dir: string, into: string): string {
  const out = execFileSync(process.execPath, [npmCli, 'pack', '--ignore-scripts', '--json', '--pack-destination', into], { cwd: dir, encoding: 'utf8' })
  return join(into, (JSON.parse(out) as Array<{ filename: string }>)[0].filename)
}

// The package under test is the linux-x64-gnu one: elsewhere there is no binary of it to pack.
const glibc = Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime)
const linuxX64Gnu = process.platform === 'linux' && process.arch === 'x64' && glibc

;(linuxX64Gnu ? test : test.skip)('installs from the two packed packages with no compiler and no install script, and works', (t) => {
  const work = mkdtempSync(join(tmpdir(), 'proclock-install-'))
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const platform = JSON.parse(readFileSync(join(root, 'npm/linux-x64-gnu/package.json'), 'utf8'))
  t.is(platform.version, pkg.version)

  // The platform package: its package.json from npm/ and the built binary.
  const platDir = join(work, 'platform')
  mkdirSync(platDir)
  copyFileSync(join(root, 'npm/linux-x64-gnu/package.json'), join(platDir, 'package.json'))
  copyFileSync(join(root, 'dist', platform.main), join(platDir, platform.main))
  const platTgz = pack(platDir, work)

  // The main package as `napi prepublish` publishes it: optionalDependencies on the platform
  // packages, no binary inside.
  const mainDir = join(work, 'main')
  mkdirSync(mainDir)
  cpSync(join(root, 'dist'), join(mainDir, 'dist'), { recursive: true })
  writeFileSync(join(mainDir, 'package.json'), JSON.stringify({ ...pkg, optionalDependencies: { [platform.name]: pkg.version } }, null, 2))
  copyFileSync(join(root, 'README.md'), join(mainDir, 'README.md'))
  const mainTgz = pack(mainDir, work)
  const listing = execFileSync('tar', ['-tzf', mainTgz], { encoding: 'utf8' })
  t.false(listing.includes('.node'), 'the main package ships no binary')
  t.true(listing.includes('package/dist/index.mjs'))
  const scripts = Object.keys(pkg.scripts ?? {})
  t.deepEqual(scripts.filter((s) => ['preinstall', 'install', 'postinstall'].includes(s)), [], 'no install scripts')

  // A PATH with node and npm only.
  const bin = join(work, 'bin')
  mkdirSync(bin)
  symlinkSync(process.execPath, join(bin, 'node'))
  symlinkSync(npmCli, join(bin, 'npm'))
  const env = { HOME: process.env.HOME ?? work, PATH: bin, npm_config_cache: join(work, 'npm-cache'), PROCLOCK_DIR: join(work, 'locks') }
  for (const tool of ['cargo', 'rustc', 'cc', 'gcc', 'clang']) {
    t.truthy(spawnSync(tool, ['--version'], { env }).error, `${tool} must not be reachable`)
  }

  const app = join(work, 'app')
  mkdirSync(app)
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'app', private: true, dependencies: { proclock: `file:${mainTgz}`, [platform.name]: `file:${platTgz}` } }),
  )
  const install = spawnSync(process.execPath, [npmCli, 'install', '--ignore-scripts', '--offline', '--no-audit', '--no-fund'], { cwd: app, env, encoding: 'utf8' })
  t.is(install.status, 0, install.stderr)
  t.true(existsSync(join(app, 'node_modules', platform.name, platform.main)))
  t.false(readdirSync(join(app, 'node_modules/proclock/dist')).some((f) => f.endsWith('.node')))

  const use = `
    const { Lock } = require('proclock')
    const a = new Lock('installed'), b = new Lock('installed')
    const got = a.tryAcquire(), blocked = !b.tryAcquire(), token = a.token
    a.release(); a.close(); b.close()
    console.log(JSON.stringify({ got, blocked, token: String(token) }))`
  const cjs = spawnSync(process.execPath, ['-e', use], { cwd: app, env, encoding: 'utf8' })
  t.is(cjs.status, 0, cjs.stderr)
  const used = JSON.parse(cjs.stdout) as { got: boolean; blocked: boolean; token: string }
  t.deepEqual({ ...used, token: /^[1-9]\d*$/.test(used.token) }, { got: true, blocked: true, token: true })
  const esm = spawnSync(process.execPath, ['--input-type=module', '-e', `import { Lock, LockTimeoutError } from 'proclock'; const l = new Lock('esm'); l.acquireSync(); console.log(l.held, typeof LockTimeoutError)`], { cwd: app, env, encoding: 'utf8' })
  t.is(esm.status, 0, esm.stderr)
  t.is(esm.stdout.trim(), 'true function')
})
