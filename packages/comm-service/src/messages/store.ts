// Messages in the tenant's schema, through the library's TenantDb: nothing here names a tenant
// or a schema, the unit of work does. The delivery job is written in the same transaction.
// JSON goes out as text with a cast: drizzle owns the pool's JSON serializer (see TenantDb).
import { createHash, randomUUID } from 'node:crypto'
import createError from '@fastify/error'
import { RateLimitedError, type Tenant } from '@platform/multitenant'
import type { TenantDb, TenantTx } from '@platform/multitenant/pg'
import type { DeliveryQueue } from '../queue/boss.ts'
import type { MessageInput } from './validate.ts'

export const NotFoundError = createError<'NOT_FOUND', 404, []>('NOT_FOUND', 'Message not found', 404, undefined, false)
export const ConflictError = createError<'CONFLICT', 409, [string]>('CONFLICT', '%s', 409, undefined, false)
export const IdempotencyKeyReusedError = createError<'IDEMPOTENCY_KEY_REUSED', 422, []>(
  'IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was used with a different request', 422, undefined, false)

export type MessageStatus = 'queued' | 'sending' | 'sent' | 'delivered' | 'failed' | 'bounced' | 'canceled'

export interface Message {
  id: string
  channel: string
  to: string
  subject: string | null
  status: MessageStatus
  metadata: Record<string, unknown>
  scheduledAt: string | null
  attempts: number
  lastError: string | null
  providerMessageId: string | null
  createdAt: string
  updatedAt: string
  /** The template, version and locale the content was rendered from, or null for inline content. */
  template: { name: string, version: number, locale: string } | null
  /** Who sent it: the user's `sub`, or `svc:<name>` for a service; null for messages from before it was recorded. */
  sentBy: string | null
}

export interface MessageDetail extends Message {
  history: Array<{ status: string, at: string, detail?: string }>
}

/** Where the tenant stands against its tightest send limit after this request. */
export interface RateState {
  limit: number
  remaining: number
  /** Seconds until the window resets. */
  reset: number
}

export interface Accepted {
  statusCode: number
  body: { id: string, status: string }
  /** True when this is the stored answer to an earlier request with the same key. */
  replayed: boolean
  /** The tenant's send limit, when it has one (absent on a replay: it was not counted). */
  rate?: RateState
}

/** Over a send limit: nothing was stored. `rate` feeds the rate-limit headers. */
export class SendLimitError extends RateLimitedError {
  readonly rate: RateState
  constructor (rate: RateState) {
    super(rate.reset)
    this.rate = rate
  }
}

// The windows' rows, kept at one per kind: a new window starts the count again.
const WINDOW_ROWS = {
  minute: "('minute', date_trunc('minute', now()), 1)",
  day: "('day', date_trunc('day', now(), 'UTC'), 1)"
} as const

/**
 * Counts this message against the tenant's `limits.messagesPerMinute` and `messagesPerDay`, in
 * the accepting transaction (a refusal rolls the message back; the row lock makes the count exact
 * across instances). Runs last, so the lock is held only until the commit.
 */
async function countSend (tx: TenantTx<Record<string, unknown>>, limits: Record<string, unknown>): Promise<RateState | undefined> {
  const caps = new Map<string, number>()
  for (const [name, key] of [['minute', 'messagesPerMinute'], ['day', 'messagesPerDay']] as const) {
    const value = limits[key]
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0) caps.set(name, value)
  }
  if (caps.size === 0) return undefined
  const rows = await tx.sql.unsafe<Array<{ name: 'minute' | 'day', count: number, reset: number }>>(`
    insert into send_counters (name, window_start, count) values ${[...caps.keys()].map((name) => WINDOW_ROWS[name as keyof typeof WINDOW_ROWS]).join(', ')}
    on conflict (name) do update set
      count = case when send_counters.window_start = excluded.window_start then send_counters.count + 1 else 1 end,
      window_start = excluded.window_start
    returning name, count, ceil(extract(epoch from window_start + case name when 'minute' then interval '1 minute' else interval '1 day' end - now()))::int as reset`)
  let tightest: RateState | undefined
  for (const row of rows) {
    const limit = caps.get(row.name) as number
    const state = { limit, remaining: Math.max(0, limit - row.count), reset: Math.max(1, row.reset) }
    if (row.count > limit) throw new SendLimitError({ ...state, remaining: 0 })
    if (tightest === undefined || state.remaining < tightest.remaining) tightest = state
  }
  return tightest
}

interface Row {
  id: string
  channel: string
  recipient: string
  subject: string | null
  status: MessageStatus
  metadata: Record<string, unknown>
  scheduled_at: string | null
  attempts: number
  last_error: string | null
  provider_message_id: string | null
  created_at: string
  updated_at: string
  template_name: string | null
  template_version: number | null
  template_locale: string | null
  sent_by: string | null
}

// Times as ISO 8601 text with microseconds (to_json): exact in cursors, readable in answers.
const COLUMNS = 'id, channel, recipient, subject, status, metadata::text as metadata, to_json(scheduled_at) #>> \'{}\' as scheduled_at, attempts, last_error, provider_message_id, ' +
  'to_json(created_at) #>> \'{}\' as created_at, to_json(updated_at) #>> \'{}\' as updated_at, template_name, template_version, template_locale, sent_by'

function toMessage (row: Row): Message {
  return {
    id: row.id,
    channel: row.channel,
    to: row.recipient,
    subject: row.subject,
    status: row.status,
    metadata: JSON.parse(row.metadata as unknown as string) as Record<string, unknown>,
    scheduledAt: row.scheduled_at,
    attempts: row.attempts,
    lastError: row.last_error,
    providerMessageId: row.provider_message_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    template: row.template_name === null ? null : { name: row.template_name, version: row.template_version as number, locale: row.template_locale as string },
    sentBy: row.sent_by
  }
}

/** A request's fingerprint for idempotency: the canonical JSON of its body. */
export function fingerprint (input: MessageInput): string {
  const canonical = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(canonical)
    if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]))
    return value
  }
  return createHash('sha256').update(JSON.stringify(canonical(input))).digest('hex')
}

/** Cursor pages, newest first: the last row's (created_at, id), opaque. */
export function encodeCursor (row: Pick<Row, 'created_at' | 'id'>): string {
  return Buffer.from(JSON.stringify([row.created_at, row.id])).toString('base64url')
}
export function decodeCursor (cursor: string): [string, string] | null {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString()) as unknown
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && !Number.isNaN(Date.parse(value[0])) &&
      typeof value[1] === 'string' && /^[0-9a-f-]{36}$/.test(value[1])) return [value[0], value[1]]
  } catch {}
  return null
}

export class MessageStore {
  readonly #db: TenantDb<Record<string, unknown>>
  readonly #queue: (cluster: string) => DeliveryQueue
  readonly #attempts: number

  /** `queue` gives a cluster's queue; `attempts` is each message's attempt budget. */
  constructor (db: TenantDb<Record<string, unknown>>, queue: (cluster: string) => DeliveryQueue, attempts = 5) {
    this.#db = db
    this.#queue = queue
    this.#attempts = attempts
  }

  async #enqueue (tx: TenantTx<Record<string, unknown>>, tenant: Tenant, id: string, startAfter?: Date): Promise<void> {
    await tx.asService(async (sql) => await this.#queue(tenant.database).enqueue(sql, { tenant: tenant.id, database: tenant.database, messageId: id }, { tier: tenant.tier, startAfter }))
  }

  /**
   * Accepts a message: with an idempotency key, the key, the message, its first status event and
   * its delivery job are one transaction; a concurrent duplicate waits on the key and then gets the
   * first answer. `sentBy` records who sent it (the user's `sub` or `svc:<name>`).
   */
  async accept (tenant: Tenant, input: MessageInput, key?: string, from?: { request: MessageInput, template: { name: string, version: number, locale: string } }, sentBy?: string): Promise<Accepted> {
    const id = randomUUID()
    const answer = { id, status: 'queued' }
    const template = from?.template
    return await this.#db.transaction(async (tx) => {
      if (key !== undefined) {
        // The request as sent (a template's name and data, not its rendering, which a new
        // version could change).
        const print = fingerprint(from?.request ?? input)
        const claimed = await tx.sql`
          insert into idempotency_keys (key, fingerprint, message_id, status_code, response) values (${key}, ${print}, ${id}, 202, ${JSON.stringify(answer)}::jsonb)
          on conflict (key) do update set fingerprint = excluded.fingerprint, message_id = excluded.message_id, response = excluded.response, created_at = now()
            where idempotency_keys.created_at < now() - interval '24 hours'
          returning key`
        if (claimed.length === 0) {
          const [first] = await tx.sql<Array<{ fingerprint: string, status_code: number, response: string }>>`select fingerprint, status_code, response::text as response from idempotency_keys where key = ${key}`
          if (first?.fingerprint !== print) throw new IdempotencyKeyReusedError()
          return { statusCode: first.status_code, body: JSON.parse(first.response) as { id: string, status: string }, replayed: true }
        }
      }
      // The message and its first event in one statement (one round trip).
      await tx.sql`
        with message as (
          insert into messages (id, channel, recipient, subject, text_body, html_body, body, metadata, scheduled_at, max_attempts, template_name, template_version, template_locale, sent_by)
          values (${id}, ${input.channel}, ${input.to}, ${input.subject ?? null}, ${input.text ?? null}, ${input.html ?? null}, ${input.body ?? null}, ${JSON.stringify(input.metadata ?? {})}::jsonb, ${input.scheduledAt ?? null}, ${this.#attempts},
            ${template?.name ?? null}, ${template?.version ?? null}, ${template?.locale ?? null}, ${sentBy ?? null})
          returning id)
        insert into message_events (message_id, status) select id, 'queued' from message`
      await this.#enqueue(tx, tenant, id, input.scheduledAt === undefined ? undefined : new Date(input.scheduledAt))
      /* c8 ignore next: the registry always sends limits */
      const rate = await countSend(tx, tenant.limits ?? {})
      return { statusCode: 202, body: answer, replayed: false, ...(rate === undefined ? {} : { rate }) }
    }, { tenant })
  }

  async get (id: string): Promise<MessageDetail> {
    return await this.#db.transaction(async (tx) => {
      const [row] = await tx.sql.unsafe<Row[]>(`select ${COLUMNS} from messages where id = $1`, [id])
      if (row === undefined) throw new NotFoundError()
      const events = await tx.sql<Array<{ status: string, at: string, detail: string | null }>>`select status, to_json(at) #>> '{}' as at, detail from message_events where message_id = ${id} order by id`
      return { ...toMessage(row), history: events.map((e) => ({ status: e.status, at: e.at, ...(e.detail === null ? {} : { detail: e.detail }) })) }
    })
  }

  async list (query: { limit: number, cursor?: [string, string] | undefined, status?: string | undefined, channel?: string | undefined, to?: string | undefined }): Promise<{ items: Message[], next: string | null }> {
    const where: string[] = []
    const params: unknown[] = []
    const add = (sql: string, ...values: unknown[]): void => {
      where.push(sql.replace(/\?/g, () => `$${params.push(values.shift())}`))
    }
    if (query.cursor !== undefined) add('(created_at, id) < (?::timestamptz, ?::uuid)', ...query.cursor)
    if (query.status !== undefined) add('status = ?', query.status)
    if (query.channel !== undefined) add('channel = ?', query.channel)
    if (query.to !== undefined) add('recipient = ?', query.to)
    params.push(query.limit + 1)
    const rows = await this.#db.query(`select ${COLUMNS} from messages ${where.length === 0 ? '' : `where ${where.join(' and ')}`} order by created_at desc, id desc limit $${params.length}`, params) as unknown as Row[]
    const items = rows.slice(0, query.limit)
    return { items: items.map(toMessage), next: rows.length > query.limit ? encodeCursor(items.at(-1) as Row) : null }
  }

  /**
   * Redrives a dead-lettered (`failed`) message: back to `queued` with a fresh attempt budget and a
   * new job; 409 for any other status, 404 if unknown.
   */
  async retry (tenant: Tenant, id: string): Promise<Message> {
    return await this.#db.transaction(async (tx) => {
      const [row] = await tx.sql.unsafe<Row[]>(`update messages set status = 'queued', max_attempts = attempts + $2, claimed_by = null, updated_at = now() where id = $1 and status = 'failed' returning ${COLUMNS}`, [id, this.#attempts])
      if (row === undefined) {
        const [found] = await tx.sql<Array<{ status: string }>>`select status from messages where id = ${id}`
        if (found === undefined) throw new NotFoundError()
        throw new ConflictError(`the message is ${found.status}: only a failed message can be retried`)
      }
      await tx.sql`insert into message_events (message_id, status, detail) values (${id}, 'queued', 'redriven')`
      await this.#enqueue(tx, tenant, id)
      return toMessage(row)
    }, { tenant })
  }

  /** Cancels a message that is queued or scheduled; 409 once sending started, 404 if unknown. */
  async cancel (id: string): Promise<Message> {
    return await this.#db.transaction(async (tx) => {
      const [row] = await tx.sql.unsafe<Row[]>(`update messages set status = 'canceled', updated_at = now() where id = $1 and status = 'queued' returning ${COLUMNS}`, [id])
      if (row === undefined) {
        const [found] = await tx.sql<Array<{ status: string }>>`select status from messages where id = ${id}`
        if (found === undefined) throw new NotFoundError()
        throw new ConflictError(`the message is ${found.status}: only a queued message can be canceled`)
      }
      await tx.sql`insert into message_events (message_id, status) values (${id}, 'canceled')`
      return toMessage(row)
    })
  }
}
