import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { pino } from 'pino'
import postgres, { type Sql } from 'postgres'
import { buildApp } from './app.ts'
import { checkHardening } from '@platform/multitenant/pg'
import { ConfigError, type RegistryEnvConfig } from './config.ts'
import { migrateRegistry } from './db/migrate.ts'

/** pino: pretty on a terminal, JSON lines otherwise (for log shippers). */
export function createLogger (level: string, pretty = process.stdout.isTTY): FastifyBaseLogger {
  /* c8 ignore next 3: tests run without a terminal */
  if (pretty) {
    return pino({ level, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } })
  }
  return pino({ level })
}

export interface RunningRegistry {
  app: FastifyInstance
  sql: Sql
  url: string
  close (): Promise<void>
}

export interface StartOptions {
  config: RegistryEnvConfig & { databaseUrl: string }
  logger: FastifyBaseLogger
  /** Connections in the registry's pool (default 10). */
  poolSize?: number
  /** Run as a database superuser (refused otherwise: README, "Database roles"). */
  allowSuperuser?: boolean
  /** Lifetime of exchanged tokens in seconds (1 to 300, default 300; tests make it short). */
  exchangeTtl?: number
}

/** Connects, applies the registry's migrations, and listens. `close()` drains and disconnects. */
export async function startRegistryServer (options: StartOptions): Promise<RunningRegistry> {
  const { config } = options
  const { logger, poolSize = 10 } = options
  const sql = postgres(config.databaseUrl, { max: poolSize, connection: { application_name: 'tenant-registry', client_min_messages: 'warning' } })
  let app: FastifyInstance | undefined
  try {
    const hardening = await checkHardening(sql)
    if (hardening.superuser && options.allowSuperuser !== true && config.allowSuperuser !== true) {
      throw new ConfigError('DATABASE_URL', 'connects as a superuser; the registry runs as a NOSUPERUSER CREATEROLE login (run `tenant-registry setup-database` once), or set REGISTRY_ALLOW_SUPERUSER=true to run as one anyway')
    }
    for (const weaker of hardening.weaker) logger.warn({ guarantee: 'weaker' }, weaker)
    const migrations = await migrateRegistry(sql)
    if (migrations.applied.length > 0) logger.info({ applied: migrations.applied }, 'registry migrations applied')
    // (exchangeTtl: other packages' tests shorten exchanged tokens; no registry test starts a server with it.)
    /* c8 ignore next */
    app = await buildApp({ config: { jwt: config.jwt, baseDomain: config.baseDomain, clusters: config.clusters, opsToken: config.opsToken, docs: config.docs, ...(options.exchangeTtl === undefined ? {} : { exchangeTtl: options.exchangeTtl }) }, sql, logger })
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

/** Kept here for the registry's callers; the implementation is the library's (every service uses it). */
export { closeOnSignals } from '@platform/multitenant'
