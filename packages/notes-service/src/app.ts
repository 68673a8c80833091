// The notes service as a Fastify app: the library's plugin owns the registry client, the
// database, the migrations and token checks; this file adds the routes.
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify'
import createError from '@fastify/error'
import type { PlatformClaims } from '@platform/multitenant'
import { multitenantPlugin, platformErrorHandler, withTenant, type MultitenantPluginOptions } from '@platform/multitenant/fastify'
import { decodeCursor, NoteStore, type NotePatch } from './notes.ts'
import { BODY_LIMIT, notesSettings } from './settings.ts'

/** The SQL files this service applies to every tenant schema. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url))

const NotFoundError = createError<'NOT_FOUND', 404, []>('NOT_FOUND', 'Note not found', 404, undefined, false)
const LimitError = createError<'CONFLICT', 409, [number]>('CONFLICT', 'The tenant has reached its limit of %d notes', 409, undefined, false)
const TooLongError = createError<'VALIDATION_FAILED', 400, [number]>('VALIDATION_FAILED', 'body is longer than this tenant\'s limit of %d characters', 400, undefined, false)
const CursorError = createError<'VALIDATION_FAILED', 400, []>('VALIDATION_FAILED', 'cursor is not a cursor from this API', 400, undefined, false)

export interface BuildOptions {
  /** The library plugin's options (registry, db, auth …); `migrations` defaults to this package's. */
  multitenant: MultitenantPluginOptions
  /** Default: no logging. */
  logger?: FastifyBaseLogger
}

/** The note's author: the verified token's subject (every notes route requires a token). */
const author = (request: FastifyRequest): string => (request.claims as PlatformClaims).sub

const title = { type: 'string', minLength: 1, maxLength: 200, pattern: '^[^\\u0000-\\u001f\\u007f]+$' } as const
const body = { type: 'string', maxLength: BODY_LIMIT } as const
const tags = { type: 'array', maxItems: 10, uniqueItems: true, items: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,31}$' } } as const
const note = {
  type: 'object',
  properties: { id: { type: 'integer' }, title: { type: 'string' }, body: { type: 'string' }, tags: { type: 'array', items: { type: 'string' } }, author: { type: 'string' }, createdAt: { type: 'string' }, updatedAt: { type: 'string' } }
} as const
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[1-9][0-9]{0,15}$' } } } as const

export async function buildApp (options: BuildOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.logger === undefined ? {} : { loggerInstance: options.logger }),
    // Bodies are small: the limit of a note plus its envelope.
    bodyLimit: 4 * BODY_LIMIT + 16_384,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } }
  })
  app.setErrorHandler(platformErrorHandler())
  await app.register(multitenantPlugin, { migrations: { dir: MIGRATIONS_DIR }, ...options.multitenant })
  const store = new NoteStore(app.tenantDb)
  const settings = notesSettings((tenant, problems) => app.log.warn({ tenant, problems }, 'config.notes is not valid: the defaults apply'))

  app.get('/health', { config: { tenant: false, auth: false } }, async () => ({ status: 'ok' }))
  app.get('/ready', { config: { tenant: false, auth: false } }, async (_request, reply) => {
    const registry = app.tenantRegistry.state.state === 'up'
    const database = await app.tenantDb.system(async (tx) => await tx.sql`select 1`).then(() => true, () => false)
    return await reply.code(registry && database ? 200 : 503).send({ status: registry && database ? 'ready' : 'unavailable', registry, database })
  })

  app.post<{ Body: { title: string, body?: string, tags?: string[] } }>('/v1/notes', {
    config: { auth: { scope: 'notes:write' } },
    schema: { body: { type: 'object', required: ['title'], additionalProperties: false, properties: { title, body, tags } }, response: { 201: note } }
  }, withTenant(async (request, reply) => {
    const limits = settings.for(request.tenant)
    const text = request.body.body ?? ''
    if (text.length > limits.maxBodyLength) throw new TooLongError(limits.maxBodyLength)
    const created = await store.create({ title: request.body.title, body: text, tags: request.body.tags ?? [], author: author(request) }, limits.maxNotes)
    if (created === null) throw new LimitError(limits.maxNotes)
    return await reply.code(201).header('location', `/v1/notes/${created.id}`).send(created)
  }))

  app.get<{ Querystring: { limit?: string, cursor?: string, tag?: string } }>('/v1/notes', {
    config: { auth: { scope: 'notes:read' } },
    schema: {
      querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'string', pattern: '^(100|[1-9][0-9]?)$' }, cursor: { type: 'string', maxLength: 24 }, tag: tags.items } },
      response: { 200: { type: 'object', properties: { items: { type: 'array', items: note }, next: { type: ['string', 'null'] } } } }
    }
  }, withTenant(async (request) => {
    const cursor = request.query.cursor === undefined ? undefined : decodeCursor(request.query.cursor)
    if (cursor === null) throw new CursorError()
    return await store.list({ limit: Number(request.query.limit ?? 20), cursor, tag: request.query.tag })
  }))

  app.get<{ Params: { id: string } }>('/v1/notes/:id', {
    config: { auth: { scope: 'notes:read' } },
    schema: { params: idParams, response: { 200: note } }
  }, withTenant(async (request) => {
    const found = await store.get(Number(request.params.id))
    if (found === undefined) throw new NotFoundError()
    return found
  }))

  app.patch<{ Params: { id: string }, Body: NotePatch }>('/v1/notes/:id', {
    config: { auth: { scope: 'notes:write' } },
    schema: { params: idParams, body: { type: 'object', minProperties: 1, additionalProperties: false, properties: { title, body, tags } }, response: { 200: note } }
  }, withTenant(async (request) => {
    const limit = settings.for(request.tenant).maxBodyLength
    if (request.body.body !== undefined && request.body.body.length > limit) throw new TooLongError(limit)
    const updated = await store.update(Number(request.params.id), request.body)
    if (updated === undefined) throw new NotFoundError()
    return updated
  }))

  app.delete<{ Params: { id: string } }>('/v1/notes/:id', {
    config: { auth: { scope: 'notes:write' } },
    schema: { params: idParams }
  }, withTenant(async (request, reply) => {
    if (!await store.remove(Number(request.params.id))) throw new NotFoundError()
    return await reply.code(204).send()
  }))

  app.get('/v1/settings', { config: { auth: { scope: 'notes:read' } } }, withTenant(async (request) => settings.for(request.tenant)))

  return app
}
