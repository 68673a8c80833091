// The notes service as a Fastify app: the library's plugin owns the registry client, the
// database, the migrations and token checks; this file adds the routes.
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify'
import createError from '@fastify/error'
import type { PlatformClaims } from '@platform/multitenant'
import { multitenantPlugin, platformErrorHandler, withTenant, type MultitenantPluginOptions } from '@platform/multitenant/fastify'
import { createCommClient, CommError, type CommClient } from '@platform/comm-service/client'
import type { NotifyOptions } from './config.ts'
import { decodeCursor, NoteStore, type Note, type NotePatch } from './notes.ts'
import { BODY_LIMIT, notesSettings } from './settings.ts'

/** The SQL files this service applies to every tenant schema. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url))

const NotFoundError = createError<'NOT_FOUND', 404, []>('NOT_FOUND', 'Note not found', 404, undefined, false)
const LimitError = createError<'CONFLICT', 409, [number]>('CONFLICT', 'The tenant has reached its limit of %d notes', 409, undefined, false)
const TooLongError = createError<'VALIDATION_FAILED', 400, [number]>('VALIDATION_FAILED', 'body is longer than this tenant\'s limit of %d characters', 400, undefined, false)
const CursorError = createError<'VALIDATION_FAILED', 400, []>('VALIDATION_FAILED', 'cursor is not a cursor from this API', 400, undefined, false)
const NotifyError = createError<'VALIDATION_FAILED', 400, [string]>('VALIDATION_FAILED', 'notify: %s', 400, undefined, false)

export interface BuildOptions {
  /** The library plugin's options (registry, db, auth …); `migrations` defaults to this package's. */
  multitenant: MultitenantPluginOptions
  /** Default: no logging. */
  logger?: FastifyBaseLogger
  /** The comm-service for `notify` (COMM_URL); unset, `notify: true` is a 400. */
  comm?: NotifyOptions | undefined
}

/** What became of a note's `notify`: the comm-service's message, or why there is none. */
export type Notification = { status: 'queued', messageId: string } | { status: 'failed', code: string, message: string }

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/

/** Where `notify` sends: the token's `email` claim, else its `sub` when that is an address. */
function authorEmail (claims: PlatformClaims & { email?: unknown }): string | undefined {
  if (typeof claims.email === 'string' && EMAIL.test(claims.email)) return claims.email
  return EMAIL.test(claims.sub) ? claims.sub : undefined
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
const notification = {
  type: 'object',
  properties: { status: { type: 'string', enum: ['queued', 'failed'] }, messageId: { type: 'string' }, code: { type: 'string' }, message: { type: 'string' } }
} as const
const created = { ...note, properties: { ...note.properties, notification } } as const
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
  // The comm-service's typed client: X-Tenant-ID and a token the registry exchanged for the
  // current tenant and the `comm` audience are added by the library, cached and refreshed.
  const comm: CommClient | undefined = options.comm === undefined ? undefined : createCommClient({ url: options.comm.url, exchange: options.comm.exchange })
  if (comm !== undefined) app.addHook('onClose', async () => { await comm.close() })

  /** Emails the note's author; a failure is answered and logged, never fails the note. */
  async function notify (request: FastifyRequest, tenant: string, to: string, saved: Note): Promise<Notification> {
    try {
      const sent = await (comm as CommClient).send({
        channel: 'email',
        to,
        subject: `Note saved: ${saved.title}`,
        text: `Your note "${saved.title}" (#${saved.id}) is saved.`,
        metadata: { note: saved.id },
        idempotencyKey: `note-${tenant}-${saved.id}`
      })
      return { status: 'queued', messageId: sent.id }
    } catch (err) {
      const e = err as Error & { code?: unknown }
      /* c8 ignore next: the client's, the library's and undici's errors all carry a code */
      const raw = typeof e.code === 'string' ? e.code : ''
      request.log.warn({ note: saved.id, code: raw, err: e.message }, 'notify: the email was not sent')
      // The comm-service's and the tenant's refusals are told as they are; anything else
      // (registry or comm-service down, the credential refused) is this service's problem:
      // the library's code (MT_…) or SERVICE_UNAVAILABLE, and no detail.
      const told = err instanceof CommError || raw.startsWith('TENANT_')
      const code = told || raw.startsWith('MT_') ? raw : 'SERVICE_UNAVAILABLE'
      return { status: 'failed', code, message: told ? e.message : 'the email could not be sent now; the note is saved' }
    }
  }

  app.get('/health', { config: { tenant: false, auth: false } }, async () => ({ status: 'ok' }))
  app.get('/ready', { config: { tenant: false, auth: false } }, async (_request, reply) => {
    const registry = app.tenantRegistry.state.state === 'up'
    const database = await app.tenantDb.system(async (tx) => await tx.sql`select 1`).then(() => true, () => false)
    return await reply.code(registry && database ? 200 : 503).send({ status: registry && database ? 'ready' : 'unavailable', registry, database })
  })

  app.post<{ Body: { title: string, body?: string, tags?: string[], notify?: boolean } }>('/v1/notes', {
    config: { auth: { scope: 'notes:write' } },
    schema: { body: { type: 'object', required: ['title'], additionalProperties: false, properties: { title, body, tags, notify: { type: 'boolean' } } }, response: { 201: created } }
  }, withTenant(async (request, reply) => {
    const limits = settings.for(request.tenant)
    const text = request.body.body ?? ''
    if (text.length > limits.maxBodyLength) throw new TooLongError(limits.maxBodyLength)
    let to: string | undefined
    if (request.body.notify === true) {
      if (comm === undefined) throw new NotifyError('this notes service sends no email (COMM_URL is not set)')
      to = authorEmail(request.claims as PlatformClaims)
      if (to === undefined) throw new NotifyError('the token carries no email address (an email claim, or a sub that is one)')
    }
    const saved = await store.create({ title: request.body.title, body: text, tags: request.body.tags ?? [], author: author(request) }, limits.maxNotes)
    if (saved === null) throw new LimitError(limits.maxNotes)
    const answer = to === undefined ? saved : { ...saved, notification: await notify(request, request.tenant.id, to, saved) }
    return await reply.code(201).header('location', `/v1/notes/${saved.id}`).send(answer)
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
