// GET/PATCH /v1/config: the tenant's communication settings (`config.comm` in the registry).
// The registry stays the owner: a PATCH is merged here, checked so that a configuration that
// cannot work is refused now (not at 3 a.m.), its secrets sealed with the key ring, and forwarded
// to the registry with the caller's own token and If-Match; the local cache is refreshed from the
// registry's answer. Secrets are never returned: GET says whether each is set and since when.
import { randomBytes } from 'node:crypto'
import createError from '@fastify/error'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { mergeConfig, TenantUnavailableError, type Tenant } from '@platform/multitenant'
import { errorResponse, withTenant } from '@platform/multitenant/fastify'
import { request } from 'undici'
import { hostAllowed, hostProblem, ValidationError } from '../messages/validate.ts'
import { ACCESS } from '../roles.ts'
import { secretContext, type KeyRing } from '../secrets.ts'
import { senderProblems, storedSenders, type SenderPolicy } from '../senders.ts'
import { check, COMM_DEFAULTS, EMAIL_PROVIDERS, HOST, liveSecrets, SMS_PROVIDERS, WEBHOOK_PROVIDERS, type CommSettings, type WebhookSecret } from '../settings.ts'

export const PreconditionFailedError = createError<'PRECONDITION_FAILED', 412, []>('PRECONDITION_FAILED', 'The configuration changed since the version in If-Match', 412, undefined, false)
export const EncryptionNotConfiguredError = createError<'SERVICE_UNAVAILABLE', 503, []>('SERVICE_UNAVAILABLE', 'Secrets cannot be stored: the service has no COMM_ENCRYPTION_KEYS', 503, undefined, false)

export interface ConfigRoutesOptions {
  /** Seals secrets before they leave the service; null: secret writes are refused. */
  keys: KeyRing | null
  /** Hosts a tenant may name although they resolve to private addresses (development). */
  allowHosts: readonly string[]
  /** What the platform provides when a tenant names nothing of its own. */
  platform: { smtp: boolean, smsHttp: boolean, emailFrom: boolean, smsSenderId: boolean }
  /** Whose senders are whose: BASE_DOMAIN and the platform's default sender identities. */
  senders: SenderPolicy
  /** Days a rotated-out webhook secret keeps signing, by default. */
  graceHours?: number
}

export interface ConfigPatch {
  emailFrom?: string | null
  emailFromName?: string | null
  replyTo?: string | null
  smsSenderId?: string | null
  providers?: { email?: string | null, sms?: string | null, webhook?: string | null }
  smtp?: { host?: string | null, port?: number | null, secure?: boolean | null, user?: string | null, password?: string | null, allowPlaintextAuth?: boolean | null }
  smsHttp?: { url?: string | null, token?: string | null }
  webhook?: { rotateSecret?: boolean, graceHours?: number }
}

const text = (maxLength: number): { type: string[], maxLength: number } => ({ type: ['string', 'null'], maxLength })
const patchBody = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    emailFrom: text(320),
    emailFromName: text(100),
    replyTo: text(320),
    smsSenderId: text(16),
    providers: {
      type: 'object',
      additionalProperties: false,
      properties: {
        email: { type: ['string', 'null'], enum: [...EMAIL_PROVIDERS, null] },
        sms: { type: ['string', 'null'], enum: [...SMS_PROVIDERS, null] },
        webhook: { type: ['string', 'null'], enum: [...WEBHOOK_PROVIDERS, null] }
      }
    },
    smtp: {
      type: 'object',
      additionalProperties: false,
      properties: {
        host: text(253),
        port: { type: ['integer', 'null'], minimum: 1, maximum: 65535 },
        secure: { type: ['boolean', 'null'] },
        user: text(256),
        password: { type: ['string', 'null'], minLength: 1, maxLength: 1024 },
        allowPlaintextAuth: { type: ['boolean', 'null'] }
      }
    },
    smsHttp: {
      type: 'object',
      additionalProperties: false,
      properties: { url: text(2048), token: { type: ['string', 'null'], minLength: 1, maxLength: 4096 } }
    },
    webhook: {
      type: 'object',
      additionalProperties: false,
      properties: { rotateSecret: { type: 'boolean' }, graceHours: { type: 'integer', minimum: 0, maximum: 720 } }
    }
  }
} as const

const secretState = { type: 'object', properties: { set: { type: 'boolean' }, setAt: { type: ['string', 'null'] } } } as const
const configSchema = {
  type: 'object',
  properties: {
    emailFrom: { type: 'string' },
    emailFromName: { type: 'string' },
    replyTo: { type: 'string' },
    smsSenderId: { type: 'string' },
    providers: { type: 'object', properties: { email: { type: 'string' }, sms: { type: 'string' }, webhook: { type: 'string' } } },
    smtp: { type: 'object', properties: { host: { type: 'string' }, port: { type: 'integer' }, secure: { type: 'boolean' }, user: { type: 'string' }, password: secretState, allowPlaintextAuth: { type: 'boolean' } } },
    smsHttp: { type: 'object', properties: { url: { type: 'string' }, token: secretState } },
    webhook: {
      type: 'object',
      properties: {
        secret: { type: 'object', properties: { set: { type: 'boolean' }, setAt: { type: ['string', 'null'] }, derived: { type: 'boolean' } } },
        previousValidUntil: { type: ['string', 'null'] },
        newSecret: { type: 'string' }
      }
    },
    problems: { type: 'array', items: { type: 'string' } },
    version: { type: 'integer' }
  }
} as const

/**
 * The stored section as the API shows it: secrets only as "set, since"; `problems` names what
 * keeps it from working (a sender that is not the tenant's own among them).
 */
export function configView (tenant: Tenant, senders: SenderPolicy, now = Date.now()): Record<string, unknown> {
  const raw = (tenant.config as { comm?: unknown }).comm
  const settings = mergeConfig(COMM_DEFAULTS, raw)
  const problems = check(settings)
  if (problems.length === 0) problems.push(...senderProblems(settings, tenant, senders))
  const live = liveSecrets(settings, now)
  const previous = live.find((s) => s.expiresAt !== null)
  return {
    emailFrom: settings.emailFrom,
    emailFromName: settings.emailFromName,
    replyTo: settings.replyTo,
    smsSenderId: settings.smsSenderId,
    providers: settings.providers,
    smtp: { host: settings.smtp.host, port: settings.smtp.port, secure: settings.smtp.secure, user: settings.smtp.user, password: state(settings.smtp.password, settings.smtp.passwordSetAt), allowPlaintextAuth: settings.smtp.allowPlaintextAuth === true },
    smsHttp: { url: settings.smsHttp.url, token: state(settings.smsHttp.token, settings.smsHttp.tokenSetAt) },
    webhook: { secret: { set: live.length > 0, setAt: live[0]?.createdAt ?? null, derived: live.length === 0 }, previousValidUntil: previous?.expiresAt ?? null },
    ...(problems.length > 0 ? { problems } : {}),
    version: tenant.version
  }
}

const state = (box: string, at: string): { set: boolean, setAt: string | null } => ({ set: box !== '', setAt: box === '' ? null : (at || null) })

const etagOf = (tenant: Tenant): string => `"${tenant.id}.${tenant.version}"`

export async function configRoutes (app: FastifyInstance, options: ConfigRoutesOptions): Promise<void> {
  app.get('/v1/config', {
    config: { auth: ACCESS.readConfig },
    schema: { summary: 'The tenant\'s communication settings (secrets only as set/unset)', tags: ['config'], response: { 200: { ...configSchema, description: 'The settings', headers: { etag: { type: 'string', description: 'For If-Match on PATCH' } } } } }
  }, withTenant(async (request, reply) => await reply.header('etag', etagOf(request.tenant)).send(configView(request.tenant, options.senders))))

  app.patch<{ Body: ConfigPatch, Headers: { 'if-match'?: string } }>('/v1/config', {
    config: { auth: ACCESS.writeConfig },
    schema: { summary: 'Change the tenant\'s communication settings; forwarded to the registry (If-Match → 412 when stale)', tags: ['config'], body: patchBody, headers: { type: 'object', properties: { 'if-match': { type: 'string', description: 'The ETag from GET: a stale one gets 412' } } }, response: { 200: { ...configSchema, description: 'The settings after the change', headers: { etag: { type: 'string' } } }, 412: errorResponse(412) } }
  }, withTenant(async (request, reply) => {
    const tenantId = request.tenant.id
    const ifMatch = request.headers['if-match']
    if (ifMatch !== undefined && !/^"[a-z0-9-]+\.\d+"$/.test(ifMatch.trim())) throw new PreconditionFailedError()
    const authorization = request.headers.authorization as string
    const write = async (attempt: number): Promise<FastifyReply> => {
      app.tenantRegistry.invalidate(tenantId)
      const current = await app.tenantRegistry.getTenant(tenantId)
      /* c8 ignore next: the request's tenant was just resolved; only a purge in between removes it */
      if (current === null) throw new TenantUnavailableError()
      const next = applyPatch(mergeConfig(COMM_DEFAULTS, (current.config as { comm?: unknown }).comm), request.body, tenantId, options)
      next.settings = storedSenders(next.settings, options.senders)
      await assertWorkable(next.settings, options, current)
      const answer = await forward(app.tenantRegistry.url, tenantId, authorization, ifMatch ?? etagOf(current), { config: { comm: next.settings } })
      // Without If-Match, a write that lost a race with another is merged again on the fresh record.
      if (answer.status === 412 && ifMatch === undefined && attempt < 2) return await write(attempt + 1)
      if (answer.status !== 200) return await reply.code(answer.status).send(answer.body)
      const updated = answer.body as Tenant
      app.tenantRegistry.remember(updated, etagOf(updated))
      const view = configView(updated, options.senders)
      if (next.newSecret !== undefined) (view.webhook as Record<string, unknown>).newSecret = next.newSecret
      return await reply.header('etag', etagOf(updated)).send(view)
    }
    return await write(0)
  }))
}

/** The merged settings after `patch`, with new secrets sealed; `newSecret` once, when one was generated. */
export function applyPatch (settings: CommSettings, patch: ConfigPatch, tenant: string, options: Pick<ConfigRoutesOptions, 'keys' | 'graceHours'>, now = new Date()): { settings: CommSettings, newSecret?: string } {
  const out = structuredClone(settings) as CommSettings
  const at = now.toISOString()
  const seal = (plain: string, field: string): string => {
    if (options.keys === null) throw new EncryptionNotConfiguredError()
    return options.keys.seal(plain, secretContext(tenant, field))
  }
  if (patch.emailFrom !== undefined) out.emailFrom = patch.emailFrom ?? ''
  if (patch.emailFromName !== undefined) out.emailFromName = patch.emailFromName ?? ''
  if (patch.replyTo !== undefined) out.replyTo = patch.replyTo ?? ''
  if (patch.smsSenderId !== undefined) out.smsSenderId = patch.smsSenderId ?? ''
  for (const channel of ['email', 'sms', 'webhook'] as const) {
    const value = patch.providers?.[channel]
    if (value !== undefined) (out.providers as Record<string, string>)[channel] = value ?? ''
  }
  const smtp = patch.smtp
  if (smtp !== undefined) {
    if (smtp.host !== undefined) out.smtp.host = (smtp.host ?? '').toLowerCase()
    if (smtp.port !== undefined) out.smtp.port = smtp.port ?? 0
    if (smtp.secure !== undefined) out.smtp.secure = smtp.secure ?? false
    if (smtp.user !== undefined) out.smtp.user = smtp.user ?? ''
    if (smtp.allowPlaintextAuth !== undefined) out.smtp.allowPlaintextAuth = smtp.allowPlaintextAuth ?? false
    if (smtp.password !== undefined) {
      out.smtp.password = smtp.password === null ? '' : seal(smtp.password, 'smtp.password')
      out.smtp.passwordSetAt = smtp.password === null ? '' : at
    }
  }
  const sms = patch.smsHttp
  if (sms !== undefined) {
    if (sms.url !== undefined) out.smsHttp.url = sms.url ?? ''
    if (sms.token !== undefined) {
      out.smsHttp.token = sms.token === null ? '' : seal(sms.token, 'smsHttp.token')
      out.smsHttp.tokenSetAt = sms.token === null ? '' : at
    }
  }
  let newSecret: string | undefined
  const live = liveSecrets(out, now.getTime())
  out.webhook.secrets = live
  if (patch.webhook?.rotateSecret === true) {
    newSecret = `whsec_${randomBytes(32).toString('base64')}`
    const grace = (patch.webhook.graceHours ?? options.graceHours ?? 24) * 3_600_000
    const previous: WebhookSecret[] = live.slice(0, 1).map((s) => ({ ...s, expiresAt: grace === 0 ? at : new Date(now.getTime() + grace).toISOString() }))
    out.webhook.secrets = [{ secret: seal(newSecret, 'webhook.secret'), createdAt: at, expiresAt: null }, ...previous.filter((s) => Date.parse(s.expiresAt as string) > now.getTime())]
  }
  return newSecret === undefined ? { settings: out } : { settings: out, newSecret }
}

/**
 * Refuses a configuration that cannot work, with every reason, senders that are not `tenant`'s
 * own among them (an SMS sender id another tenant holds is the registry's 409).
 */
export async function assertWorkable (settings: CommSettings, options: Pick<ConfigRoutesOptions, 'allowHosts' | 'platform' | 'senders'>, tenant: Pick<Tenant, 'id' | 'domains'>): Promise<void> {
  // The stored section's own checks (shapes, senders, hosts' form), then what needs the platform or DNS.
  const problems = check(settings)
  if (problems.length === 0) problems.push(...senderProblems(settings, tenant, options.senders))
  const { providers, smtp, smsHttp } = settings
  if (providers.email === 'smtp') {
    if (smtp.host === '' && !options.platform.smtp) problems.push('providers.email is smtp: set smtp.host (the platform has no SMTP server)')
    if (settings.emailFrom === '' && !options.platform.emailFrom) problems.push('providers.email is smtp: set emailFrom (the platform has no default sender)')
  }
  if (providers.sms === 'sms-http') {
    if (smsHttp.url === '' && !options.platform.smsHttp) problems.push('providers.sms is sms-http: set smsHttp.url (the platform has no SMS API)')
    if (settings.smsSenderId === '' && !options.platform.smsSenderId) problems.push('providers.sms is sms-http: set smsSenderId (the platform has no default sender id)')
  }
  if (smtp.user !== '' && smtp.password === '') problems.push('smtp.user is set: smtp.password is required')
  if (smtp.password !== '' && smtp.user === '') problems.push('smtp.password is set: smtp.user is required')
  if ((smtp.user !== '' || smtp.port !== 0) && smtp.host === '') problems.push('smtp.user and smtp.port need smtp.host (the platform\'s own server keeps its own credentials)')
  if (smsHttp.token !== '' && smsHttp.url === '') problems.push('smsHttp.token needs smsHttp.url (the platform\'s own API keeps its own token)')
  const reach = async (what: string, host: string, port: number): Promise<void> => {
    const problem = await hostProblem(host, port, { allow: options.allowHosts })
    if (problem === 'unresolved') problems.push(`${what} ${host} does not resolve`)
    if (problem === 'private') problems.push(`${what} ${host} resolves to a non-public address`)
  }
  if (smtp.host !== '' && HOST.test(smtp.host)) await reach('smtp.host', smtp.host, smtp.port === 0 ? (smtp.secure ? 465 : 587) : smtp.port)
  if (smsHttp.url !== '' && URL.canParse(smsHttp.url)) {
    const url = new URL(smsHttp.url)
    if (url.username !== '' || url.password !== '') problems.push('smsHttp.url must not carry credentials (set smsHttp.token)')
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
    if (url.protocol === 'http:' && !hostAllowed(options.allowHosts, url.hostname, port)) problems.push('smsHttp.url must be https')
    await reach('smsHttp.url:', url.hostname, port)
  }
  if (problems.length > 0) throw new ValidationError(problems.join('; '))
}

/** The PATCH as the registry sees it: the caller's token, and If-Match. */
async function forward (registryUrl: string, tenant: string, authorization: string, ifMatch: string, body: unknown): Promise<{ status: number, body: unknown }> {
  try {
    const res = await request(`${registryUrl}/v1/tenants/${tenant}`, {
      method: 'PATCH',
      headers: { authorization, 'if-match': ifMatch, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      headersTimeout: 10_000,
      bodyTimeout: 10_000
    })
    const answer = await res.body.json().catch(() => null) as { code?: string, message?: string } | null
    // The registry's refusals pass through with its codes; anything unexpected is a 503.
    if (res.statusCode === 200 || (res.statusCode >= 400 && res.statusCode < 500 && typeof answer?.code === 'string')) return { status: res.statusCode, body: answer }
    /* c8 ignore start: a registry answering 5xx, or failing between the read just made and this write */
    throw new Error(`registry answered ${res.statusCode}`)
  } catch (err) {
    const unavailable = new TenantUnavailableError()
    unavailable.cause = err
    throw unavailable
  }
  /* c8 ignore stop */
}
