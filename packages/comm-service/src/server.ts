import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { buildApp } from './app.ts'
import type { CommEnvConfig } from './config.ts'

export interface RunningComm {
  app: FastifyInstance
  url: string
  close (): Promise<void>
}

/**
 * Builds the app (registry checked, tenants migrated, queue started, workers running) and
 * listens. `close()` stops taking requests, lets in-flight deliveries finish (pg-boss's graceful
 * stop; a job whose send is cut off is picked up again after its expiry) and disconnects.
 */
export async function startCommServer (config: CommEnvConfig, logger: FastifyBaseLogger = pino({ level: config.logLevel })): Promise<RunningComm> {
  const app = await buildApp(config, { logger })
  try {
    const address = await app.listen({ port: config.port, host: config.host })
    let closing: Promise<void> | undefined
    return {
      app,
      url: address,
      close () {
        closing ??= app.close()
        return closing
      }
    }
  } catch (err) {
    await app.close()
    throw err
  }
}
