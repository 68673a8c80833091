// The communication service as a Fastify app: the library's plugin owns the registry client, the
// tenant database, the per-schema migrations and token checks; this package adds messages, the
// queue and delivery.
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { multitenantPlugin, platformErrorHandler, type MultitenantPluginOptions } from '@platform/multitenant/fastify'
import { LogProvider } from './delivery/providers/log.ts'
import type { Provider } from './delivery/providers/types.ts'
import { deliveryHandler } from './delivery/worker.ts'
import { MessageStore } from './messages/store.ts'
import { DeliveryQueue } from './queue/boss.ts'
import { messageRoutes } from './routes/messages.ts'

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url))

export type CommRole = 'api' | 'worker' | 'all'

export interface CommConfig {
  multitenant: MultitenantPluginOptions
  /** The service login's URL for the default cluster's queue. */
  queueUrl: string
  /** `api` takes requests only, `worker` delivers only, `all` both (default). */
  role?: CommRole
  /** Jobs delivered at once by this process, and at most per tenant (fairness). */
  concurrency?: { local: number, perTenant: number }
  /** Webhook hosts allowed despite being private (development only). */
  allowWebhookHosts?: string[]
}

export interface CommDeps {
  logger?: FastifyBaseLogger
  /** The provider for a tenant and channel (default: the log provider for everything). */
  provider?: Provider
}

declare module 'fastify' {
  interface FastifyInstance {
    commQueue: DeliveryQueue
  }
}

export async function buildApp (config: CommConfig, deps: CommDeps = {}): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger ?? pino({ level: 'silent' }),
    bodyLimit: 512 * 1024,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } }
  })
  app.setErrorHandler(platformErrorHandler())
  await app.register(multitenantPlugin, { migrations: { dir: MIGRATIONS_DIR }, ...config.multitenant })
  const queue = new DeliveryQueue({ url: config.queueUrl })
  await queue.start()
  app.decorate('commQueue', queue)
  app.addHook('onClose', async () => await queue.stop())
  const role = config.role ?? 'all'
  const provider = deps.provider ?? new LogProvider({ log: app.log })

  app.get('/health', { config: { tenant: false, auth: false } }, async () => ({ status: 'ok' }))
  if (role !== 'worker') {
    await app.register(messageRoutes, { store: new MessageStore(app.tenantDb, queue), allowHosts: config.allowWebhookHosts ?? [] })
  }
  if (role !== 'api') {
    await queue.work(config.concurrency ?? { local: 8, perTenant: 2 }, deliveryHandler({ db: app.tenantDb, tenants: app.tenantRegistry, provider: () => provider, log: app.log }))
  }
  return app
}
