import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { openApiConventions, openApiRefResolver, platformErrorHandler } from '@platform/multitenant/fastify'
import type { Sql } from 'postgres'
import type { JwtKeys } from './config.ts'
import { createKeyRing } from './keys.ts'
import { registryAuth } from './plugins/auth.ts'
import { serviceCredentialCheck } from './plugins/credentials.ts'
import { opsGuard, strictValidation } from './plugins/guard.ts'
import { metricsPlugin } from './plugins/metrics.ts'
import { ChangeFeed } from './feed.ts'
import { serviceRoutes } from './routes/services.ts'
import { jwksRoute, tokenRoutes } from './routes/token.ts'
import { tenantRoutes } from './routes/tenants.ts'
import { MAX_EXCHANGED_TTL } from './exchange.ts'
import { ServiceStore } from './services.ts'
import { TenantStore, type TenantStoreOptions } from './tenants.ts'
import { DEFAULT_AUDIENCE, DEFAULT_ISSUER, tokenIssuer, type TokenIssuer } from './tokens.ts'

export interface RegistryConfig {
  jwt: JwtKeys
  baseDomain?: string | undefined
  issuer?: string
  audience?: string
  /** Cluster names a tenant's `database` may name (default `['default']`; DATABASE_URL_<NAME> adds more). */
  clusters?: string[]
  /** When set, `/metrics` and `/docs` need `Authorization: Bearer <OPS_TOKEN>`. */
  opsToken?: string | undefined
  /** Serve `/docs` (default true; DOCS=off). */
  docs?: boolean
  /** Change-feed long polls waiting at once, at most (default 10,000). */
  maxFeedWaiters?: number
  /** Lifetime of exchanged tokens (`POST /v1/token`) in seconds: 1 to 300 (default 300). */
  exchangeTtl?: number
  /** `Cache-Control: max-age` of `/.well-known/jwks.json` in seconds (default 300). */
  jwksMaxAge?: number
}

export interface BuildOptions {
  config: RegistryConfig
  sql: Sql
  logger?: FastifyBaseLogger | boolean
  /** Node process metrics on /metrics (default true; tests with many apps turn them off). */
  processMetrics?: boolean
  /** Test hooks for the store. */
  store?: Pick<TenantStoreOptions, 'beforeActivate'>
}

declare module 'fastify' {
  interface FastifyInstance {
    tenants: TenantStore
    feed: ChangeFeed
    services: ServiceStore
    /** Signs the registry's tokens; `null` on a registry without a private key (verify only). */
    issuer: TokenIssuer | null
  }
}

/** The registry as a Fastify app; its dependencies come in, nothing is read from the environment. */
export async function buildApp (options: BuildOptions): Promise<FastifyInstance> {
  const { config, sql } = options
  const exchangeTtl = config.exchangeTtl ?? MAX_EXCHANGED_TTL
  if (!Number.isInteger(exchangeTtl) || exchangeTtl < 1 || exchangeTtl > MAX_EXCHANGED_TTL) throw new RangeError(`exchangeTtl must be 1 to ${MAX_EXCHANGED_TTL} seconds`)
  const keys = createKeyRing(config.jwt)
  const issuer = config.issuer ?? DEFAULT_ISSUER
  const audience = config.audience ?? DEFAULT_AUDIENCE
  const app = Fastify({
    ...(typeof options.logger === 'object' ? { loggerInstance: options.logger } : { logger: options.logger ?? false })
  })
  strictValidation(app)
  if (keys.secret !== undefined) app.log.warn('JWT_SECRET: a shared HS256 secret is for development only (whoever verifies with it can mint any token); use JWT_PRIVATE_KEY and JWT_PUBLIC_KEY')
  const store = new TenantStore(sql, { baseDomain: config.baseDomain, clusters: config.clusters, ...options.store })
  app.decorate('tenants', store)
  app.decorate('services', new ServiceStore(sql))
  app.decorate('issuer', keys.signing === undefined ? null : tokenIssuer(keys, { issuer, audience }))
  await store.listen()
  const feed = new ChangeFeed(store, { maxWaiters: config.maxFeedWaiters, onWaiters: (delta) => app.metrics?.waiters.inc(delta) })
  await feed.start()
  app.decorate('feed', feed)
  // Closing wakes every long poll so it answers now, and answers sent while closing end their
  // keep-alive connection, so nothing holds the shutdown.
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
    feed.close()
  })
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close')
  })

  // DESIGN's error shape; nothing internal (SQL, parameters, stacks) in answers or logs.
  app.setErrorHandler(platformErrorHandler())

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Tenant registry', version: '1', description: 'Owns tenants and domains, provisions tenant schemas, answers look-ups, publishes changes.' },
      servers: [{ url: 'http://127.0.0.1:4000', description: 'The development stack (npm start)' }],
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      tags: [{ name: 'tenants', description: 'Tenants, their domains, look-ups and the change feed' }, { name: 'services', description: 'Registered services and their credentials (platform admins)' }, { name: 'tokens', description: 'Token exchange and the public signing keys' }, { name: 'operations', description: 'Health and readiness (metrics and docs need the ops token when one is set)' }]
    },
    refResolver: openApiRefResolver
  })
  openApiConventions(app)
  const guard = opsGuard(config.opsToken)
  if (config.docs !== false) {
    await app.register(swaggerUi, { routePrefix: '/docs', uiHooks: { onRequest: guard } })
  }
  await app.register(metricsPlugin, { store, processMetrics: options.processMetrics ?? true, onRequest: guard })
  await app.register(registryAuth, { keys, issuer, audience })
  await app.register(serviceCredentialCheck, { services: app.services })

  const status = { type: 'object', properties: { status: { type: 'string' } } } as const
  app.get('/health', { schema: { summary: 'Liveness', response: { 200: status } } }, async () => ({ status: 'ok' }))
  app.get('/ready', { schema: { summary: 'Readiness: the database answers', response: { 200: status, 503: status } } }, async (request, reply) => {
    try {
      await sql`select 1`
      return { status: 'ready' }
    } catch {
      return reply.code(503).send({ status: 'unavailable' })
    }
  })
  await app.register(tenantRoutes, { prefix: '/v1' })
  await app.register(serviceRoutes, { prefix: '/v1' })
  await app.register(tokenRoutes, { prefix: '/v1', ttl: exchangeTtl })
  await app.register(jwksRoute, { jwks: keys.jwks, maxAge: config.jwksMaxAge ?? 300 })
  return app
}
