// The platform admin view: platform tokens with the platform-admin role only, no tenant context.
// GET /v1/admin/stats reads one table and the queue (never a loop over the tenants' schemas);
// GET /v1/admin/tenants/:id/messages reads one tenant's messages in that tenant's own scope (its
// role, its schema, nothing else reachable), and every read is logged with the operator's subject.
import type { FastifyInstance } from 'fastify'
import { runAsTenant, TenantMismatchError, TenantNotFoundError, TENANT_ID_PATTERN } from '@platform/multitenant'
import { decodeCursor, type MessageStore } from '../messages/store.ts'
import { ValidationError } from '../messages/validate.ts'
import { ACCESS } from '../roles.ts'
import { COUNTED, zeroCounts, type TenantStats } from '../stats.ts'
import { listQuery, messagePageSchema } from './messages.ts'

export interface AdminRoutesOptions {
  stats: () => Promise<TenantStats[]>
  store: MessageStore
  /** Dedicated mode: the one tenant this instance may show. */
  dedicated?: string | undefined
}

const counts = { type: 'object', properties: Object.fromEntries(COUNTED.map((s) => [s, { type: 'integer' }])) }

export async function adminRoutes (app: FastifyInstance, options: AdminRoutesOptions): Promise<void> {
  const ADMIN = { tenant: false, auth: ACCESS.platformAdmin } as const

  app.get('/v1/admin/stats', {
    config: ADMIN,
    schema: {
      summary: 'Per-tenant counts by status for the last 24 hours, and each tenant\'s queue depth and oldest job (platform-admin)',
      tags: ['admin'],
      response: {
        200: {
          type: 'object',
          properties: {
            generatedAt: { type: 'string' },
            windowHours: { type: 'integer' },
            tenants: { type: 'array', items: { type: 'object', properties: { tenant: { type: 'string' }, counts, queue: { type: 'object', properties: { depth: { type: 'integer' }, oldestSeconds: { type: 'number' } } } } } },
            totals: counts
          }
        }
      }
    }
  }, async (request) => {
    const all = await options.stats()
    const tenants = options.dedicated === undefined ? all : all.filter((s) => s.tenant === options.dedicated)
    const totals = zeroCounts()
    for (const s of tenants) for (const status of COUNTED) totals[status] += s.counts[status]
    request.log.info({ admin: request.claims?.sub, tenants: tenants.length }, 'platform admin read the stats')
    return { generatedAt: new Date().toISOString(), windowHours: 24, tenants, totals }
  })

  app.get<{ Params: { id: string }, Querystring: { limit?: string, cursor?: string, status?: string, channel?: string, to?: string } }>('/v1/admin/tenants/:id/messages', {
    config: ADMIN,
    schema: {
      summary: 'One tenant\'s messages, read by a platform operator in that tenant\'s scope (logged)',
      tags: ['admin'],
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: TENANT_ID_PATTERN.source, maxLength: 56 } } },
      querystring: listQuery,
      response: { 200: messagePageSchema }
    }
  }, async (request) => {
    const id = request.params.id
    if (options.dedicated !== undefined && id !== options.dedicated) throw new TenantMismatchError()
    const tenant = await app.tenantRegistry.getTenant(id)
    if (tenant === null) throw new TenantNotFoundError()
    const cursor = request.query.cursor === undefined ? undefined : decodeCursor(request.query.cursor)
    if (cursor === null) throw new ValidationError('cursor is not a cursor from this API')
    request.log.warn({ admin: request.claims?.sub, tenant: id, query: request.query }, 'platform admin read a tenant\'s messages')
    return await runAsTenant(tenant, async () => await options.store.list({ limit: Number(request.query.limit ?? 20), cursor, status: request.query.status, channel: request.query.channel, to: request.query.to }))
  })
}
