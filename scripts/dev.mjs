#!/usr/bin/env node
// Entry point of the Quick start (`npm start`, `npm test`). Plain JavaScript that runs on any Node
// with npm: when this Node is older than the project needs, it installs Node 24 (npm package
// `node@24`, which ships the binary) and pnpm into ./.tools and re-runs itself with them.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
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
  // Re-run this script with the project-local Node 24.
  run(join(toolsBin, 'node'), [fileURLToPath(import.meta.url), ...process.argv.slice(2)], env)
  process.exit(0)
}

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
    if (existsSync(join(root, 'packages', 'stack', 'src', 'dev.ts'))) {
      run('node', [join(root, 'packages', 'stack', 'src', 'dev.ts'), ...rest], env)
    } else {
      say('installed and built; the registry service arrives in its own issue')
    }
    break
  case 'run':
    // A TypeScript entry point (the registry or migration CLI) on the project's Node.
    run('node', rest, env)
    break
  default:
    say('usage: node scripts/dev.mjs setup|test|start|run <file> [args…]')
    process.exit(2)
}
