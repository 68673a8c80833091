import type { FastifyInstance } from 'fastify'
import type { RunningService } from '../process.ts'

/**
 * Listens, or closes the app (its pools, its registry client) when it cannot — a port in use
 * leaves nothing open. `close()` stops taking requests, drains and disconnects; calling it again
 * returns the same promise.
 */
export async function listenService<App extends FastifyInstance> (app: App, options: { port: number, host: string }): Promise<RunningService & { app: App }> {
  try {
    const address = await app.listen({ port: options.port, host: options.host })
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
