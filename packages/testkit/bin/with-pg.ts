#!/usr/bin/env node
// Runs a command with DATABASE_URL pointing at a real PostgreSQL server: the one already named by
// DATABASE_URL, or an embedded one started for this run and removed afterwards, also when the
// command fails or the run is interrupted.
import { spawn } from 'node:child_process'
import { startEmbeddedPostgres } from '../src/embedded-postgres.ts'

const [command, ...args] = process.argv.slice(2)
if (command === undefined) {
  process.stderr.write('usage: with-pg <command> [args…]\n')
  process.exit(2)
}

function run (env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(command as string, args, { stdio: 'inherit', env, shell: false })
    const forward = (signal: NodeJS.Signals) => { child.kill(signal) }
    process.on('SIGINT', forward)
    process.on('SIGTERM', forward)
    child.on('error', (err) => {
      process.stderr.write(`with-pg: could not run ${command}: ${err.message}\n`)
      resolve(127)
    })
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward)
      process.off('SIGTERM', forward)
      resolve(code ?? (signal !== null ? 1 : 0))
    })
  })
}

// embedded-postgres installs an exit hook that ends the process with status 0, so the status is
// passed to process.exit explicitly.
let status: number
if (process.env.DATABASE_URL !== undefined && process.env.DATABASE_URL !== '') {
  status = await run(process.env)
} else {
  const started = Date.now()
  const pg = await startEmbeddedPostgres()
  process.stderr.write(`with-pg: embedded PostgreSQL on port ${pg.port} (${Date.now() - started} ms)\n`)
  try {
    status = await run({ ...process.env, DATABASE_URL: pg.url })
  } finally {
    await pg.stop()
  }
}
process.exit(status)
