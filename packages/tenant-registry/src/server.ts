import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { pino } from 'pino'
import postgres, { type Sql } from 'postgres'
import { buildApp } from './app.ts'
import type { RegistryEnvConfig } from './config.ts'
import { migrateRegistry } from './db/migrate.ts'

/** pino: pretty on a terminal, JSON lines otherwise (for log shippers). */
export function createLogger (level: string, pretty = process.stdout.isTTY): FastifyBaseLogger {
  return pino({
    level,
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } } : {})
  })
}

export interface RunningRegistry {
  app: FastifyInstance
  sql: Sql
  url: string
  close (): Promise<void>
}

export interface StartOptions {
  config: RegistryEnvConfig & { databaseUrl: string }
  logger?: FastifyBaseLogger
  /** Connections in the registry's pool (default 10). */
  poolSize?: number
}

/** Connects, applies the registry's migrations, and listens. `close()` drains and disconnects. */
export async function startRegistryServer (options: StartOptions): Promise<RunningRegistry> {
  const { config } = options
  const logger = options.logger ?? createLogger(config.logLevel)
  const sql = postgres(config.databaseUrl, { max: options.poolSize ?? 10, onnotice: () => {}, connection: { application_name: 'tenant-registry' } })
  let app: FastifyInstance | undefined
  try {
    const migrations = await migrateRegistry(sql)
    if (migrations.applied.length > 0) logger.info({ applied: migrations.applied }, 'registry migrations applied')
    app = await buildApp({ config: { jwt: config.jwt, baseDomain: config.baseDomain }, sql, logger })
    const address = await app.listen({ port: config.port, host: config.host })
    const url = address.replace('[::1]', 'localhost')
    let closing: Promise<void> | undefined
    const running: FastifyInstance = app
    return {
      app,
      sql,
      url,
      close () {
        closing ??= (async () => {
          await running.close()
          await sql.end({ timeout: 5 })
        })()
        return closing
      }
    }
  } catch (err) {
    await app?.close()
    await sql.end({ timeout: 1 })
    throw err
  }
}

/**
 * Stops `close` on SIGINT/SIGTERM (once; a second signal exits at once) and exits 0 when done.
 * Returns a function that removes the handlers.
 */
export function closeOnSignals (close: () => Promise<void>, log: (line: string) => void): () => void {
  let stopping = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log(`${signal} again: exiting now`)
      process.exit(130)
    }
    stopping = true
    log(`${signal}: shutting down`)
    close().then(() => process.exit(0), (err: unknown) => {
      log(`shutdown failed: ${String(err)}`)
      process.exit(1)
    })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  return () => {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
