import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyError } from 'fastify'
import type { Sql } from 'postgres'
import { authPlugin } from './plugins/auth.ts'
import { tenantRoutes } from './routes/tenants.ts'
import { TenantStore, type TenantStoreOptions } from './tenants.ts'

export interface RegistryConfig {
  jwtSecret: string
  baseDomain?: string | undefined
  issuer?: string
  audience?: string
}

export interface BuildOptions {
  config: RegistryConfig
  sql: Sql
  logger?: FastifyBaseLogger | boolean
  /** Test hooks for the store. */
  store?: Pick<TenantStoreOptions, 'beforeActivate'>
}

export const DEFAULT_ISSUER = 'tenant-registry'
export const DEFAULT_AUDIENCE = 'platform'

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
    return reply.code(status).send({ statusCode: status, code, error: reply.raw.statusMessage ?? 'Error', message: error.message })
  })

  await app.register(authPlugin, {
    secret: config.jwtSecret,
    issuer: config.issuer ?? DEFAULT_ISSUER,
    audience: config.audience ?? DEFAULT_AUDIENCE
  })

  app.get('/health', async () => ({ status: 'ok' }))
  app.get('/ready', async (request, reply) => {
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
