import type { FastifyInstance } from 'fastify'
import { errorResponse } from '@platform/multitenant/fastify'
import { ForbiddenError } from '../errors.ts'
import { AUDIENCE, MAX_CREDENTIAL_TTL, SCOPE_WORD, SERVICE_NAME, type ServiceInput } from '../services.ts'

const READ = { auth: { scope: 'tenants:read', admin: true } }
const WRITE = { auth: { scope: 'tenants:write', admin: true } }
const errors = Object.fromEntries([400, 401, 403, 404, 409].map((status) => [status, errorResponse(status)]))

const NAME = { type: 'string', pattern: SERVICE_NAME.source, maxLength: 40, description: 'The service\'s name; its tokens\' subject is svc:<name>' } as const
const SCOPES = { type: 'array', maxItems: 50, uniqueItems: true, items: { type: 'string', pattern: SCOPE_WORD.source, not: { const: 'tokens:exchange' } }, description: 'Scopes it may use on a tenant\'s behalf (e.g. messages:send)' } as const
const AUDIENCES = { type: 'array', maxItems: 50, uniqueItems: true, items: { type: 'string', pattern: AUDIENCE.source, maxLength: 128 }, description: 'Services it may call: the aud of its exchanged tokens' } as const
const EXPIRES_IN = { type: 'integer', minimum: 60, maximum: MAX_CREDENTIAL_TTL, description: 'The credential\'s lifetime in seconds (default one year)' } as const

const credentialInfo = { type: 'object', properties: { id: { type: 'string' }, createdAt: { type: 'string' }, expiresAt: { type: 'string' }, revokedAt: { type: ['string', 'null'] } } } as const
const serviceSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    scopes: { type: 'array', items: { type: 'string' } },
    audiences: { type: 'array', items: { type: 'string' } },
    status: { type: 'string', enum: ['active', 'revoked'] },
    credentials: { type: 'array', items: credentialInfo },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
    revokedAt: { type: ['string', 'null'] },
    version: { type: 'integer' }
  }
} as const
const issuedSchema = { type: 'object', description: 'A credential, shown once: keep its token as the service\'s SERVICE_TOKEN', properties: { ...credentialInfo.properties, token: { type: 'string' } } } as const
const nameParams = { type: 'object', required: ['name'], properties: { name: NAME } } as const

/**
 * Registered services (platform admins only): what each may do on a tenant's behalf and whom it
 * may call, and its credentials (long-lived service tokens, each revocable by id).
 */
export async function serviceRoutes (app: FastifyInstance): Promise<void> {
  const store = app.services
  const issuer = (): NonNullable<typeof app.issuer> => {
    if (app.issuer === null) throw new ForbiddenError('this registry holds no signing key (JWT_PRIVATE_KEY): it verifies tokens only')
    return app.issuer
  }
  app.addHook('onRoute', (route) => {
    route.schema = { tags: ['services'], security: [{ bearer: [] }], ...route.schema }
  })

  app.post('/services', {
    config: WRITE,
    schema: {
      summary: 'Register a service and get its first credential',
      body: { type: 'object', additionalProperties: false, required: ['name', 'scopes', 'audiences'], properties: { name: NAME, scopes: SCOPES, audiences: AUDIENCES, expiresIn: EXPIRES_IN }, examples: [{ name: 'orders', scopes: ['messages:send', 'messages:read'], audiences: ['comm'] }] },
      response: { 201: { ...serviceSchema, properties: { ...serviceSchema.properties, credential: issuedSchema } }, ...errors }
    }
  }, async (request, reply) => {
    const body = request.body as ServiceInput & { expiresIn?: number }
    const sign = issuer()
    await store.create(body)
    const credential = await store.issueCredential(body.name, sign, body.expiresIn)
    const service = await store.require(body.name)
    return reply.code(201).header('location', `/v1/services/${body.name}`).header('cache-control', 'no-store').send({ ...service, credential })
  })

  app.get('/services', { config: READ, schema: { summary: 'Every registered service', response: { 200: { type: 'object', properties: { items: { type: 'array', items: serviceSchema } } }, ...errors } } }, async () => {
    return { items: await store.list() }
  })

  app.get('/services/:name', { config: READ, schema: { summary: 'One registered service', params: nameParams, response: { 200: serviceSchema, ...errors } } }, async (request) => {
    return await store.require((request.params as { name: string }).name)
  })

  app.patch('/services/:name', {
    config: WRITE,
    schema: { summary: 'Change what a service may do (takes effect on its next exchange)', params: nameParams, body: { type: 'object', additionalProperties: false, minProperties: 1, properties: { scopes: SCOPES, audiences: AUDIENCES } }, response: { 200: serviceSchema, ...errors } }
  }, async (request) => {
    return await store.update((request.params as { name: string }).name, request.body as Partial<ServiceInput>)
  })

  app.delete('/services/:name', { config: WRITE, schema: { summary: 'Revoke a service: every credential stops working at once', params: nameParams, response: { 200: serviceSchema, ...errors } } }, async (request) => {
    return await store.revoke((request.params as { name: string }).name)
  })

  app.post('/services/:name/credentials', {
    config: WRITE,
    schema: { summary: 'A new credential for a service (rotation: the old ones stay valid until revoked)', params: nameParams, body: { type: ['object', 'null'], additionalProperties: false, properties: { expiresIn: EXPIRES_IN } }, response: { 201: issuedSchema, ...errors } }
  }, async (request, reply) => {
    const { name } = request.params as { name: string }
    const sign = issuer()
    const credential = await store.issueCredential(name, sign, (request.body as { expiresIn?: number } | null)?.expiresIn)
    return reply.code(201).header('cache-control', 'no-store').send(credential)
  })

  app.delete('/services/:name/credentials/:id', {
    config: WRITE,
    schema: { summary: 'Revoke one credential', params: { type: 'object', required: ['name', 'id'], properties: { name: NAME, id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } } }, response: { 200: serviceSchema, ...errors } }
  }, async (request) => {
    const { name, id } = request.params as { name: string, id: string }
    return await store.revokeCredential(name, id)
  })
}
