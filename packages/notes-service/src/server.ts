import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { buildApp } from './app.ts'
import type { NotesConfig } from './config.ts'

export interface RunningNotes {
  app: FastifyInstance
  url: string
  close (): Promise<void>
}

/** Builds the app (registry checked, tenants migrated), listens; `close()` drains and disconnects. */
export async function startNotesServer (config: NotesConfig, logger: FastifyBaseLogger = pino({ level: config.logLevel })): Promise<RunningNotes> {
  const app = await buildApp({ multitenant: config.multitenant, logger })
  try {
    const address = await app.listen({ port: config.port, host: config.host })
    let closing: Promise<void> | undefined
    return {
      app,
      url: address.replace('[::1]', 'localhost'),
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
