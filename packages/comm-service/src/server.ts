import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { listenService } from '@platform/multitenant/fastify'
import type { RunningService } from '@platform/multitenant'
import { pino } from 'pino'
import { buildApp } from './app.ts'
import type { CommEnvConfig } from './config.ts'

export interface RunningComm extends RunningService {
  app: FastifyInstance
}

/**
 * Builds the app (registry checked, tenants migrated, queue started, workers running) and
 * listens. `close()` stops taking requests, lets in-flight deliveries finish (pg-boss's graceful
 * stop; a job whose send is cut off is picked up again through its heartbeat) and disconnects.
 */
export async function startCommServer (config: CommEnvConfig, logger: FastifyBaseLogger = pino({ level: config.logLevel })): Promise<RunningComm> {
  return await listenService(await buildApp(config, { logger }), config)
}
