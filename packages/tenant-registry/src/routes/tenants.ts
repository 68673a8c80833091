import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { errorResponse } from '@platform/multitenant/fastify'
import { hasRole, hasScope, TenantNotFoundError, type PlatformClaims, type Tenant, type TenantStatus, type TenantTier } from '@platform/multitenant'
import { ForbiddenError, PreconditionFailedError, ValidationError } from '../errors.ts'
import { assertOwnTenant } from '../plugins/auth.ts'
import type { CreateTenantInput, UpdateTenantInput } from '../tenants.ts'
import { createBody, DOMAIN, idParams, listQuery, patchBody, TENANT_ID, tenantSchema } from './schemas.ts'

const READ = { auth: { scope: 'tenants:read' } }
const WRITE = { auth: { scope: 'tenants:write', admin: true } }
const errors = Object.fromEntries([400, 401, 403, 404, 409, 412].map((status) => [status, errorResponse(status)]))

const etagOf = (tenant: Tenant): string => `"${tenant.id}.${tenant.version}"`

function sendTenant (reply: FastifyReply, tenant: Tenant, status = 200): FastifyReply {
  return reply.code(status).header('etag', etagOf(tenant)).send(tenant)
}

function versionFromIfMatch (header: string | undefined, id: string): number | undefined {
  if (header === undefined) return undefined
  const match = /^"([a-z0-9-]+)\.(\d+)"$/.exec(header.trim())
  if (match === null || match[1] !== id) return -1
  return Number(match[2])
}

/**
 * A platform admin with tenants:write changes anything; a tenant's own owner or admin with
 * config:write changes its `config` and nothing else (a service such as the comm-service forwards
 * its users' configuration writes with their token, so the registry decides, not the service).
 */
function assertMayPatch (request: FastifyRequest, id: string, body: Record<string, unknown>): void {
  const claims = request.claims as PlatformClaims
  if (claims.tenant === undefined) {
    if (!hasRole(claims, 'platform-admin')) throw new ForbiddenError('platform-admin only')
    if (!hasScope(claims, 'tenants:write')) throw new ForbiddenError('the token lacks the tenants:write scope')
    return
  }
  assertOwnTenant(request, id)
  if (!hasScope(claims, 'config:write')) throw new ForbiddenError('the token lacks the config:write scope')
  if (!hasRole(claims, 'owner') && !hasRole(claims, 'admin')) throw new ForbiddenError('one of these roles is needed: owner, admin')
  const other = Object.keys(body).find((key) => key !== 'config')
  if (other !== undefined) throw new ForbiddenError(`a tenant token may change config only, not ${other}`)
}

export async function tenantRoutes (app: FastifyInstance): Promise<void> {
  const store = app.tenants
  app.addHook('onRoute', (route) => {
    route.schema = { tags: ['tenants'], security: [{ bearer: [] }], ...route.schema }
  })

  app.post('/tenants', { config: WRITE, schema: { summary: 'Create and provision a tenant (schema, role)', body: createBody, response: { 201: tenantSchema, ...errors } } }, async (request, reply) => {
    const stop = app.metrics.provisionSeconds.startTimer()
    let tenant: Tenant
    try {
      tenant = await store.create(request.body as CreateTenantInput)
    } catch (err) {
      app.metrics.provisioned.inc({ outcome: (err as { statusCode?: number }).statusCode === 409 ? 'conflict' : 'failed' })
      throw err
    }
    stop()
    app.metrics.provisioned.inc({ outcome: 'created' })
    return sendTenant(reply.header('location', `/v1/tenants/${tenant.id}`), tenant, 201)
  })

  app.get('/tenants', { config: READ, schema: { summary: 'A page of tenants', querystring: listQuery, response: { 200: { type: 'object', properties: { items: { type: 'array', items: tenantSchema }, total: { type: 'integer' }, limit: { type: 'integer' }, offset: { type: 'integer' } } }, ...errors } } }, async (request) => {
    const query = request.query as { limit: number, offset: number, status?: TenantStatus, tier?: TenantTier, q?: string }
    const own = request.claims?.tenant
    if (own !== undefined) {
      // A tenant token lists only its own tenant.
      const tenant = await store.get(own)
      const items = tenant === null || (query.status !== undefined && tenant.status !== query.status) || (query.tier !== undefined && tenant.tier !== query.tier) ? [] : [tenant]
      return { items: items.slice(query.offset, query.offset + query.limit), total: items.length, limit: query.limit, offset: query.offset }
    }
    const page = await store.list(query)
    return { ...page, limit: query.limit, offset: query.offset }
  })

  app.get('/tenants/:id', { config: READ, schema: { summary: 'One tenant, with ETag (If-None-Match → 304)', params: idParams, response: { 200: { ...tenantSchema, description: 'The tenant', headers: { etag: { type: 'string', description: 'The tenant\'s version, for If-None-Match and If-Match' } } }, 304: { description: 'Not modified', type: 'null' }, ...errors } } }, async (request, reply) => {
    const { id } = request.params as { id: string }
    assertOwnTenant(request, id)
    const tenant = await store.require(id)
    const etag = etagOf(tenant)
    const inm = request.headers['if-none-match']
    if (inm !== undefined && inm.split(',').some((v) => v.trim() === etag || v.trim() === '*')) {
      return reply.code(304).header('etag', etag).send()
    }
    return sendTenant(reply, tenant)
  })

  app.patch('/tenants/:id', { config: { auth: {} }, schema: { summary: 'Partial update (JSON merge patch for config, limits, metadata); If-Match → 412 when stale. A tenant\'s owner or admin with config:write may change its own config only. config: at most 64 KiB, its comm section checked against its schema and email senders at the tenant\'s own domains (400); an SMS sender id another tenant holds → 409', params: idParams, body: patchBody, response: { 200: tenantSchema, ...errors } } }, async (request, reply) => {
    const { id } = request.params as { id: string }
    assertMayPatch(request, id, request.body as Record<string, unknown>)
    const version = versionFromIfMatch(request.headers['if-match'], id)
    if (version === -1) throw new PreconditionFailedError()
    return sendTenant(reply, await store.update(id, request.body as UpdateTenantInput, version))
  })

  for (const [action, status] of [['suspend', 'suspended'], ['activate', 'active']] as const) {
    app.post(`/tenants/:id/${action}`, { config: WRITE, schema: { summary: `${action === 'suspend' ? 'Suspend' : 'Activate'} a tenant`, params: idParams, response: { 200: tenantSchema, ...errors } } }, async (request, reply) => {
      const { id } = request.params as { id: string }
      return sendTenant(reply, await store.setStatus(id, status, `tenant.${status}`))
    })
  }

  app.delete('/tenants/:id', {
    config: WRITE,
    schema: {
      summary: 'Archive a tenant; with purge=true&confirm=<id> also drop its schema and role',
      params: idParams,
      querystring: { type: 'object', additionalProperties: false, properties: { purge: { type: 'boolean', default: false }, confirm: TENANT_ID } },
      response: { 200: tenantSchema, 204: { type: 'null' }, ...errors }
    }
  }, async (request, reply) => {
    const { id } = request.params as { id: string }
    const { purge, confirm } = request.query as { purge: boolean, confirm?: string }
    if (purge && confirm !== id) throw new ValidationError('purge needs confirm=<tenant id>')
    const tenant = await store.remove(id, purge)
    return tenant === null ? reply.code(204).send() : sendTenant(reply, tenant)
  })

  app.post('/tenants/:id/domains', {
    config: WRITE,
    schema: {
      summary: 'Add a custom domain (unique across tenants)',
      params: idParams,
      body: { type: 'object', additionalProperties: false, required: ['domain'], properties: { domain: DOMAIN, primary: { type: 'boolean', default: false } } },
      response: { 201: tenantSchema, ...errors }
    }
  }, async (request, reply) => {
    const { id } = request.params as { id: string }
    const { domain, primary } = request.body as { domain: string, primary: boolean }
    return sendTenant(reply, await store.addDomain(id, domain, primary), 201)
  })

  app.delete('/tenants/:id/domains/:domain', {
    config: WRITE,
    schema: { summary: 'Remove a custom domain', params: { type: 'object', required: ['id', 'domain'], properties: { id: TENANT_ID, domain: DOMAIN } }, response: { 200: tenantSchema, ...errors } }
  }, async (request, reply) => {
    const { id, domain } = request.params as { id: string, domain: string }
    return sendTenant(reply, await store.removeDomain(id, domain))
  })

  app.get('/resolve', {
    config: READ,
    schema: { summary: 'The tenant for a host: custom domain, or subdomain of BASE_DOMAIN', querystring: { type: 'object', additionalProperties: false, required: ['host'], properties: { host: DOMAIN } }, response: { 200: tenantSchema, ...errors } }
  }, async (request: FastifyRequest, reply) => {
    const { host } = request.query as { host: string }
    const tenant = await store.resolveHost(host)
    if (tenant === null) throw new TenantNotFoundError()
    if (request.claims?.tenant !== undefined && request.claims?.tenant !== tenant.id) throw new TenantNotFoundError()
    return sendTenant(reply, tenant)
  })

  app.get('/changes', {
    config: READ,
    schema: {
      summary: 'Change feed (long poll): changes after a sequence number, waiting up to `wait` seconds',
      querystring: { type: 'object', additionalProperties: false, properties: { after: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0 }, wait: { type: 'integer', minimum: 0, maximum: 60, default: 0 }, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 500 } } },
      response: {
        200: { type: 'object', properties: { items: { type: 'array', items: { type: 'object', properties: { seq: { type: 'integer' }, tenantId: { type: 'string' }, type: { type: 'string' }, at: { type: 'string' } } } }, next: { type: 'integer' }, head: { type: 'integer' } } },
        ...errors
      }
    }
  }, async (request) => {
    if (request.claims?.tenant !== undefined) throw new ForbiddenError('the change feed is for services')
    const { after, wait, limit } = request.query as { after: number, wait: number, limit: number }
    if (wait === 0) {
      // A plain read is exact: it sees every change committed before it, from any instance.
      const items = await store.changesAfter(after, limit)
      return { items, next: items.at(-1)?.seq ?? after, head: await store.lastSeq() }
    }
    // Long polls (the herd: thousands re-poll at once after every change) are answered from the
    // feed's memory and share one query per change (see ChangeFeed).
    let items = await app.feed.read(after, limit)
    if (items.length === 0) {
      const gone = new AbortController()
      const onClose = (): void => { gone.abort() }
      request.raw.once('close', onClose)
      await app.feed.wait(after, wait * 1000, gone.signal)
      request.raw.off('close', onClose)
      items = await app.feed.read(after, limit)
    }
    // `head` is the newest sequence number: a follower starts there, and a head behind its own
    // position tells it the log was reset and its cache cannot be trusted.
    return { items, next: items.at(-1)?.seq ?? after, head: await app.feed.confirmedHead() }
  })
}
