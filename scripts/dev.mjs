#!/usr/bin/env node
// Entry point of the Quick start (`npm start`, `npm test`). Plain JavaScript that runs on any Node
// with npm: when this Node is older than the project needs, it installs Node 24 (npm package
// `node@24`, which ships the binary) and pnpm into ./.tools and re-runs itself with them.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { constants } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const tools = join(root, '.tools')
const toolsBin = join(tools, 'node_modules', '.bin')
const NODE_SPEC = 'node@24'
const PNPM_SPEC = 'pnpm@10.34.9'
const command = process.argv[2]
const rest = process.argv.slice(3)

function say (line) {
  process.stderr.write(`[dev] ${line}\n`)
}

function run (cmd, args, env = process.env) {
  const result = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, env })
  if (result.error) {
    say(`could not run ${cmd}: ${result.error.message}`)
    process.exit(127)
  }
  if (result.status !== 0) process.exit(result.status ?? 1)
}

/**
 * Runs a long-lived command as a supervised child: signals that reach this process (Ctrl-C is
 * SIGINT to the terminal's whole process group; `kill <npm pid>` is SIGTERM to the parent alone)
 * are passed on once, and if this process's own parent disappears (npm killed with -9) the child
 * is stopped too, so nothing is left running. With `ownGroup` the child leads a process group of
 * its own: a terminal's SIGINT reaches it only through here, and what it started (PostgreSQL)
 * not at all, so it can stop its services first and the database last.
 */
function supervise (cmd, args, env, { ownGroup = false } = {}) {
  const child = spawn(cmd, args, { stdio: 'inherit', cwd: root, env, detached: ownGroup })
  const last = new Map()
  const forward = (signal) => {
    // The same signal often arrives twice (from the terminal and from npm): pass it on once.
    const now = Date.now()
    if (now - (last.get(signal) ?? 0) < 1000) return
    last.set(signal, now)
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => forward(signal))
  const parent = process.ppid
  const watch = setInterval(() => { if (process.ppid !== parent) forward('SIGTERM') }, 500)
  child.on('error', (err) => {
    say(`could not run ${cmd}: ${err.message}`)
    process.exit(127)
  })
  child.on('exit', (code, signal) => {
    clearInterval(watch)
    process.exit(code ?? 128 + (constants.signals[signal] ?? 1))
  })
}

function has (bin, env) {
  return spawnSync(bin, ['--version'], { stdio: 'ignore', env }).status === 0
}

const [major, minor] = process.versions.node.split('.').map(Number)
const nodeOk = major >= 24 || (major === 22 && minor >= 19) || major === 23
const env = { ...process.env, PATH: `${toolsBin}${delimiter}${process.env.PATH ?? ''}` }

if (!nodeOk || !has('pnpm', env)) {
  const wanted = [nodeOk ? null : NODE_SPEC, has('pnpm', env) ? null : PNPM_SPEC].filter(Boolean)
  if (!existsSync(join(toolsBin, nodeOk ? 'pnpm' : 'node')) || !has('pnpm', env)) {
    say(`Node ${process.versions.node} ${nodeOk ? 'is fine' : 'is too old (need 24, or 22.19+)'}; installing ${wanted.join(' and ')} into .tools/`)
    run('npm', ['install', '--prefix', tools, '--no-save', '--no-audit', '--no-fund', '--loglevel=error', NODE_SPEC, PNPM_SPEC])
  }
}
if (!nodeOk) {
  // Re-run this script with the project-local Node 24 (supervised: `start` runs until stopped).
  supervise(join(toolsBin, 'node'), [fileURLToPath(import.meta.url), ...process.argv.slice(2)], env)
} else {
  main()
}

function main () {
  const frozen = process.env.CI ? ['--frozen-lockfile'] : []
  switch (command) {
    case 'setup':
      run('pnpm', ['install', ...frozen], env)
      run('pnpm', ['run', 'build'], env)
      break
    case 'test':
      run('pnpm', ['install', ...frozen], env)
      run('pnpm', ['run', 'build'], env)
      run('pnpm', ['exec', 'with-pg', 'pnpm', '-r', '--workspace-concurrency=1', '--no-bail', '--reporter=append-only', 'run', 'test', ...rest], env)
      break
    case 'start':
      run('pnpm', ['install', ...frozen], env)
      run('pnpm', ['run', 'build'], env)
      supervise('node', [join(root, 'packages', 'stack', 'src', 'dev.ts'), ...rest], env, { ownGroup: true })
      break
    case 'run':
      // A TypeScript entry point (the registry or migration CLI) on the project's Node.
      run('node', rest, env)
      break
    default:
      say('usage: node scripts/dev.mjs setup|test|start|run <file> [args…]')
      process.exit(2)
  }
}
