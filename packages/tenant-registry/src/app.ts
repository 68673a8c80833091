import { STATUS_CODES } from 'node:http'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyError } from 'fastify'
import type { Sql } from 'postgres'
import type { JwtKeys } from './config.ts'
import { authPlugin } from './plugins/auth.ts'
import { metricsPlugin } from './plugins/metrics.ts'
import { tenantRoutes } from './routes/tenants.ts'
import { TenantStore, type TenantStoreOptions } from './tenants.ts'
import { DEFAULT_AUDIENCE, DEFAULT_ISSUER } from './tokens.ts'

export interface RegistryConfig {
  jwt: JwtKeys
  baseDomain?: string | undefined
  issuer?: string
  audience?: string
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
  }
}

/** The registry as a Fastify app; its dependencies come in, nothing is read from the environment. */
export async function buildApp (options: BuildOptions): Promise<FastifyInstance> {
  const { config, sql } = options
  const app = Fastify({
    ...(typeof options.logger === 'object' ? { loggerInstance: options.logger } : { logger: options.logger ?? false }),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } }
  })
  const store = new TenantStore(sql, { baseDomain: config.baseDomain, ...options.store })
  app.decorate('tenants', store)
  await store.listen()
  // Closing wakes every long poll so it answers now, and answers sent while closing end their
  // keep-alive connection, so nothing holds the shutdown.
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
    store.changes.emit('change', Number.MAX_SAFE_INTEGER)
  })
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close')
  })

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation !== undefined) {
      return reply.code(400).send({ statusCode: 400, code: 'VALIDATION_FAILED', error: 'Bad Request', message: error.message })
    }
    const status = error.statusCode ?? 500
    if (status >= 500 && error.code !== 'TENANT_UNAVAILABLE') {
      request.log.error({ err: error }, 'request failed')
      return reply.code(500).send({ statusCode: 500, code: 'INTERNAL', error: 'Internal Server Error', message: 'Internal error' })
    }
    const code = error.code?.startsWith('FST_') === true ? (status === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'VALIDATION_FAILED') : error.code
    return reply.code(status).send({ statusCode: status, code, error: STATUS_CODES[status], message: error.message })
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Tenant registry', version: '1', description: 'Owns tenants and domains, provisions tenant schemas, answers look-ups, publishes changes.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } }
    }
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })
  await app.register(metricsPlugin, { store, processMetrics: options.processMetrics ?? true })
  await app.register(authPlugin, {
    keys: config.jwt,
    issuer: config.issuer ?? DEFAULT_ISSUER,
    audience: config.audience ?? DEFAULT_AUDIENCE
  })

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
  return app
}
