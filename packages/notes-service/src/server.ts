import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { listenService } from '@platform/multitenant/fastify'
import type { RunningService } from '@platform/multitenant'
import { pino } from 'pino'
import { buildApp } from './app.ts'
import type { NotesConfig } from './config.ts'

export interface RunningNotes extends RunningService {
  app: FastifyInstance
}

/** Builds the app (registry checked, tenants migrated), listens; `close()` drains and disconnects. */
export async function startNotesServer (config: NotesConfig, logger: FastifyBaseLogger = pino({ level: config.logLevel })): Promise<RunningNotes> {
  return await listenService(await buildApp({ multitenant: config.multitenant, logger, comm: config.comm }), config)
}
