// The communication service as a Fastify app: the library's plugin owns the registry client, the
// tenant database, the per-schema migrations and token checks; this package adds messages, the
// queue, delivery, metrics and the API documentation.
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { checkBodyHook, multitenantPlugin, openApiConventions, openApiRefResolver, opsGuard, platformErrorHandler, type MultitenantPluginOptions } from '@platform/multitenant/fastify'
import { Providers, type ProviderDefaults } from './delivery/providers/index.ts'
import type { Provider } from './delivery/providers/types.ts'
import { DEFAULT_RETRY, deliveryHandler, type RetryPolicy } from './delivery/worker.ts'
import { MessageStore } from './messages/store.ts'
import { commMetrics, type CommMetrics } from './metrics.ts'
import { DeliveryQueue, type QueueDepth } from './queue/boss.ts'
import { messageRoutes } from './routes/messages.ts'
import { adminRoutes } from './routes/admin.ts'
import { configRoutes } from './routes/config.ts'
import { ConsoleCodes, consoleRoutes } from './routes/console.ts'
import { StatsRecorder, tenantStats } from './stats.ts'
import { templateRoutes } from './routes/templates.ts'
import { webhookRoutes, type CallbackProvider } from './routes/webhooks.ts'
import type { KeyRing } from './secrets.ts'
import { RenderPool, type RenderPoolOptions } from './templates/pool.ts'
import { TemplateStore } from './templates/store.ts'
import { senderProblems, type SenderPolicy } from './senders.ts'
import { commSettings } from './settings.ts'

export { KeyRing } from './secrets.ts'

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url))

export type CommRole = 'api' | 'worker' | 'all'

export interface CommConfig {
  multitenant: MultitenantPluginOptions
  /** The service login's URL for the default cluster's queue. */
  queueUrl: string
  /** Further clusters' queues by cluster name (a tenant's job lives on its own cluster). */
  queueUrls?: Record<string, string>
  /** `api` takes requests only, `worker` delivers only, `all` both (default). */
  role?: CommRole
  /** Jobs delivered at once by this process, and at most per tenant across all workers (fairness). */
  concurrency?: { local: number, perTenant: number }
  /** Attempts per message and the backoff between them. */
  retry?: Partial<RetryPolicy>
  /** The queue's crash recovery: heartbeat and how often dead workers' jobs are looked for, in seconds. */
  queue?: { heartbeatSeconds?: number, superviseSeconds?: number }
  /** Platform provider defaults (the log provider for email and SMS when nothing is configured). */
  providers?: Partial<Omit<ProviderDefaults, 'allowWebhookHosts'>>
  /** Webhook hosts allowed despite being private (development only). */
  allowWebhookHosts?: string[]
  /** Node process metrics on /metrics (default true). */
  processMetrics?: boolean
  /** Each provider's callback signing secret (COMM_CALLBACK_SECRET_SMS_HTTP, COMM_CALLBACK_SECRET_SMTP). */
  callbackSecrets?: Partial<Record<CallbackProvider, string>>
  /** The key ring that seals tenants' secrets (COMM_ENCRYPTION_KEYS); without it, secret writes are refused. */
  keys?: KeyRing | null
  /** The template render pool: threads, hard time limit, renders in flight per tenant (COMM_RENDER_*). */
  render?: RenderPoolOptions
  /** OPS_TOKEN: when set, `/metrics` and `/docs` need `Authorization: Bearer <token>`. */
  opsToken?: string | undefined
}

/** The routes the library's per-tenant request limit (`multitenant.rateLimit`) applies to. */
export const RATE_LIMITED_ROUTES = /^\/v1\/(messages|templates)(\/|$)/

export interface CommDeps {
  logger?: FastifyBaseLogger
  /** One provider for every tenant and channel (tests); by default each is chosen per tenant. */
  provider?: Provider
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The default cluster's queue. */
    commQueue: DeliveryQueue
    commProviders: Providers
    commMetrics: CommMetrics
    /** One-time console sign-in codes: `/console#code=<consoleCodes.issue(token)>` signs in once. */
    consoleCodes: ConsoleCodes
  }
}

export async function buildApp (config: CommConfig, deps: CommDeps = {}): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger ?? pino({ level: 'silent' }),
    bodyLimit: 512 * 1024,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } }
  })
  app.setErrorHandler(platformErrorHandler())
  try {
    await compose(app, config, deps)
  } catch (err) {
    // A start that fails half-way (a queue unreachable, a bad setting) closes what it opened.
    await app.close()
    throw err
  }
  return app
}

async function compose (app: FastifyInstance, config: CommConfig, deps: CommDeps): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Communication service', version: '1', description: 'Accepts email, SMS and webhook messages for a tenant, queues them durably and delivers them. Every tenant route takes the tenant from the token, X-Tenant-ID or the host.' },
      servers: [{ url: 'http://127.0.0.1:4200', description: 'The development stack (npm start)' }],
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      security: [{ bearer: [] }],
      tags: [
        { name: 'messages', description: 'Send and follow email, SMS and webhook messages' },
        { name: 'templates', description: 'Templates with locale variants and versions' },
        { name: 'config', description: 'The tenant\'s communication settings' },
        { name: 'webhooks', description: 'Providers\' signed delivery receipts' },
        { name: 'admin', description: 'The platform admin view' },
        { name: 'operations', description: 'Health, readiness and metrics (metrics and docs need the ops token when one is set)' }
      ]
    },
    refResolver: openApiRefResolver
  })
  openApiConventions(app)
  const guard = opsGuard(config.opsToken)
  await app.register(swaggerUi, { routePrefix: '/docs', uiHooks: { onRequest: guard } })
  // With `multitenant.rateLimit`, the per-tenant request limit guards the template and message
  // routes (where rendering and accepting cost most); other routes opt out before it is installed.
  app.addHook('onRoute', (route) => {
    const routeConfig = route.config as { rateLimit?: unknown } | undefined
    if (!RATE_LIMITED_ROUTES.test(route.url) && routeConfig?.rateLimit === undefined) route.config = { ...route.config, rateLimit: false } as typeof route.config
  })
  await app.register(multitenantPlugin, { migrations: { dir: MIGRATIONS_DIR }, exclude: ['/health', '/ready', '/metrics', '/docs*', '/console*'], ...config.multitenant })
  // Depth, NUL characters and unsafe numbers: a hostile body is a 400, never a recursive walker's stack overflow.
  app.addHook('preValidation', checkBodyHook)
  const role = config.role ?? 'all'

  // One queue per cluster: a tenant's message and its job are on the tenant's own cluster.
  // Dedicated mode (TENANT): the same code, pinned to one tenant, with a queue of its own.
  const dedicated = config.multitenant.fixedTenant
  const urls = { ...config.queueUrls, default: config.queueUrl }
  const queues = new Map<string, DeliveryQueue>()
  // Counts for the admin view, added to the default cluster's queue schema once a second.
  const stats = new StatsRecorder(() => queues.get('default') as DeliveryQueue)
  app.addHook('onClose', async () => {
    await stats.close()
    await Promise.all([...queues.values()].map(async (q) => await q.stop()))
  })
  for (const [cluster, url] of Object.entries(urls)) {
    const queue = new DeliveryQueue({ url, ...config.queue, max: role === 'api' ? 4 : 8, ...(dedicated === undefined ? {} : { tenant: dedicated }) })
    await queue.start()
    queues.set(cluster, queue)
  }
  const queueOf = (cluster: string): DeliveryQueue => {
    const queue = queues.get(cluster)
    /* c8 ignore next: TenantDb refuses a tenant on an unconfigured cluster before its queue is asked for */
    if (queue === undefined) throw Object.assign(new Error(`no queue is configured for cluster ${cluster}`), { code: 'SERVICE_UNAVAILABLE', statusCode: 503 })
    return queue
  }
  app.decorate('commQueue', queueOf('default'))
  await stats.install()

  const metrics = commMetrics({
    processMetrics: config.processMetrics ?? true,
    depth: async () => new Map<string, QueueDepth>(await Promise.all([...queues].map(async ([cluster, q]) => [cluster, await q.depth()] as const)))
  })
  app.decorate('commMetrics', metrics)
  app.addHook('onResponse', async (request, reply) => {
    metrics.requests.observe({ method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) }, reply.elapsedTime / 1000)
  })

  const providers = new Providers({
    email: 'log',
    sms: 'log',
    webhook: 'webhook',
    emailFrom: '',
    smsSenderId: '',
    smtp: null,
    smsHttp: null,
    // Without a configured secret, signatures verify only against this process's own (development).
    webhookSecret: randomBytes(32).toString('base64'),
    timeout: 10_000,
    ...config.providers,
    allowWebhookHosts: config.allowWebhookHosts ?? [],
    keys: config.keys ?? null
  }, app.log)
  app.decorate('commProviders', providers)
  app.addHook('onClose', async () => await providers.close())
  const settings = commSettings((tenant, problems) => app.log.warn({ tenant, problems }, 'config.comm is not valid: this tenant\'s messages fail until it is fixed'))
  const retry = { ...DEFAULT_RETRY, ...config.retry }
  const platform = config.providers ?? {}
  const senders: SenderPolicy = { baseDomain: config.multitenant.baseDomain, emailFrom: platform.emailFrom ?? '', smsSenderId: platform.smsSenderId ?? '' }

  // Operations routes: no tenant, no token (scrapers and probes).
  const OPEN = { tenant: false, auth: false } as const
  const status = { type: 'object', properties: { status: { type: 'string' }, registry: { type: 'boolean' }, database: { type: 'boolean' } } } as const
  app.get('/health', { config: OPEN, schema: { summary: 'Liveness', tags: ['operations'], security: [], response: { 200: status } } }, async () => ({ status: 'ok' }))
  app.get('/ready', { config: OPEN, schema: { summary: 'Readiness: the database and the registry answer', tags: ['operations'], security: [], response: { 200: status, 503: status } } }, async (_request, reply) => {
    const registry = app.tenantRegistry.state.state === 'up'
    const database = await app.tenantDb.system(async (tx) => await tx.sql`select 1`).then(() => true, () => false)
    /* c8 ignore next: the 503 side needs the database or the registry down (the library's readiness tests cover the probes) */
    return await reply.code(registry && database ? 200 : 503).send({ status: registry && database ? 'ready' : 'unavailable', registry, database })
  })
  app.get('/metrics', { config: OPEN, onRequest: guard, schema: { hide: true } }, async (_request, reply) => {
    return await reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })

  if (role !== 'worker') {
    // Templates render in worker threads, created with the app and stopped with it.
    const pool = new RenderPool({
      /* c8 ignore next: see RenderPool's 'error' listener */
      onError: (err) => app.log.warn({ err: { message: err.message } }, 'a template render thread failed'),
      ...config.render
    })
    app.addHook('onClose', async () => await pool.close())
    const templates = new TemplateStore(app.tenantDb, pool)
    const store = new MessageStore(app.tenantDb, queueOf, retry.attempts)
    await app.register(messageRoutes, { store, templates, metrics, stats, allowHosts: config.allowWebhookHosts ?? [] })
    await app.register(adminRoutes, { store, dedicated, stats: async () => await tenantStats(queueOf('default'), [...queues.values()]) })
    await app.register(templateRoutes, { templates })
    const codes = new ConsoleCodes()
    app.decorate('consoleCodes', codes)
    await app.register(consoleRoutes, { codes })
    await app.register(webhookRoutes, { db: app.tenantDb, stats, dedicated, secrets: config.callbackSecrets ?? {} })
    await app.register(configRoutes, {
      keys: config.keys ?? null,
      allowHosts: config.allowWebhookHosts ?? [],
      platform: { smtp: platform.smtp != null, smsHttp: platform.smsHttp != null, emailFrom: senders.emailFrom !== '', smsSenderId: senders.smsSenderId !== '' },
      senders
    })
  }
  if (role !== 'api') {
    const handler = deliveryHandler({
      db: app.tenantDb,
      tenants: app.tenantRegistry,
      queue: queueOf,
      settings: (tenant) => providers.settings(settings.for(tenant)),
      // Email senders are checked here; an SMS sender id is one tenant's by the registry's index.
      senders: (context, channel) => {
        if (channel !== 'email') return null
        const problems = senderProblems(context.settings, context.tenant, senders)
        return problems.length === 0 ? null : `${problems.join('; ')}: the message is not sent as another's sender (change config.comm)`
      },
      provider: deps.provider === undefined ? (context, channel) => providers.for(context, channel) : () => deps.provider as Provider,
      retry,
      metrics,
      stats,
      log: app.log
    })
    for (const queue of queues.values()) await queue.work(config.concurrency ?? { local: 16, perTenant: 4 }, handler)
  }
}
