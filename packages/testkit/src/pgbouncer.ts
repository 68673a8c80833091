import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './embedded-postgres.ts'

export interface RunningPgBouncer {
  /** Connection URL through PgBouncer to `database`. */
  readonly url: string
  readonly version: string
  stop (): Promise<void>
}

/** The PgBouncer binary (Debian's `pgbouncer` package), or null when it is not installed. */
export function findPgBouncer (): string | null {
  /* c8 ignore next: where Debian puts it, or nowhere */
  return ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'].find((path) => existsSync(path)) ?? null
}

async function listening (port: number, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => { socket.end(); resolve(true) })
      socket.on('error', () => resolve(false))
    })
    if (ok) return
    /* c8 ignore start: PgBouncer is usually listening at the first try */
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('PgBouncer did not start listening')
}
/* c8 ignore stop */

/**
 * Starts PgBouncer in transaction pooling mode in front of a PostgreSQL server (`upstream`, a
 * postgres:// URL whose user and password PgBouncer uses for its server connections).
 */
export async function startPgBouncer (upstream: string, options: { poolSize?: number } = {}): Promise<RunningPgBouncer> {
  const bin = findPgBouncer()
  /* c8 ignore next: CI installs pgbouncer */
  if (bin === null) throw new Error('pgbouncer is not installed (Debian: apt-get install pgbouncer)')
  /* c8 ignore next: every PgBouncer prints its version */
  const version = /PgBouncer (\S+)/.exec(spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown'
  const up = new URL(upstream)
  const dir = await mkdtemp(join(tmpdir(), 'pgbouncer-'))
  await chmod(dir, 0o777) // PgBouncer refuses to run as root; it runs as `nobody` then
  const port = await freePort()
  const ini = join(dir, 'pgbouncer.ini')
  await writeFile(ini, `[databases]
* = host=${up.hostname} port=${up.port} user=${decodeURIComponent(up.username)} password=${decodeURIComponent(up.password)}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = ${options.poolSize ?? 4}
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits,search_path,application_name,options,client_min_messages
logfile = ${join(dir, 'pgbouncer.log')}
`)
  await chmod(ini, 0o644)
  /* c8 ignore next: PgBouncer refuses to run as root */
  const args = process.getuid?.() === 0 ? ['-u', 'nobody', ini] : [ini]
  const child = spawn(bin, args, { stdio: 'ignore' })
  const exited = once(child, 'exit')
  try {
    await Promise.race([listening(port, Date.now() + 10_000), exited.then(([code]) => { throw new Error(`pgbouncer exited with ${String(code)}`) })])
  /* c8 ignore start: a PgBouncer that does not come up (bad build, no permission) */
  } catch (err) {
    child.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
    throw err
  }
  /* c8 ignore stop */
  const url = new URL(upstream)
  url.port = String(port)
  return {
    url: url.toString(),
    version,
    async stop () {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await exited
      }
      await rm(dir, { recursive: true, force: true })
    }
  }
}
