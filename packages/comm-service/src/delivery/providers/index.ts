// The providers, chosen per tenant and channel: the tenant's `config.comm.providers` first, then
// the platform's defaults from the environment. Only the delivery code calls them.
import type { FastifyBaseLogger } from 'fastify'
import { liveSecrets, type CommSettings } from '../../settings.ts'
import { LogProvider } from './log.ts'
import { SmsHttpProvider, type SmsHttpOptions } from './sms-http.ts'
import { SmtpProvider, type SmtpServer } from './smtp.ts'
import { PermanentError, TransientError, type OutgoingMessage, type Provider, type SendContext } from './types.ts'
import { tenantWebhookSecret, WebhookProvider } from './webhook.ts'
import { secretContext, type KeyRing } from '../../secrets.ts'
import { hostProblem } from '../../messages/validate.ts'

export interface ProviderDefaults {
  /** Per channel, when the tenant names none (env COMM_EMAIL_PROVIDER, COMM_SMS_PROVIDER). */
  email: 'log' | 'smtp'
  sms: 'log' | 'sms-http'
  webhook: 'webhook' | 'log'
  /** Sender identities when the tenant has none (COMM_EMAIL_FROM, COMM_SMS_SENDER_ID). */
  emailFrom: string
  smsSenderId: string
  /** The platform's SMTP server (SMTP_URL); a tenant may name its own host and port. */
  smtp: SmtpServer | null
  /** The platform's SMS HTTP API (SMS_HTTP_URL, SMS_HTTP_TOKEN). */
  smsHttp: SmsHttpOptions | null
  /** The secret each tenant's webhook signing secret is derived from (COMM_WEBHOOK_SECRET). */
  webhookSecret: string
  /** Webhook hosts allowed to resolve to private addresses (development). */
  allowWebhookHosts: readonly string[]
  /** Per-attempt timeout of every provider, in ms (COMM_SEND_TIMEOUT_MS, default 10 s). */
  timeout: number
  /** Opens tenants' sealed credentials (COMM_ENCRYPTION_KEYS); null when none is configured. */
  keys: KeyRing | null
}

export class Providers {
  readonly log: LogProvider
  readonly smtp: SmtpProvider
  readonly webhook: WebhookProvider
  readonly smsHttp: SmsHttpProvider | null
  /** Tenants' own SMS APIs, one client per distinct URL and token. */
  readonly #tenantSms = new Map<string, SmsHttpProvider>()
  readonly #defaults: ProviderDefaults

  constructor (defaults: ProviderDefaults, log?: FastifyBaseLogger) {
    this.#defaults = defaults
    this.log = new LogProvider(log === undefined ? {} : { log })
    this.smtp = new SmtpProvider({ server: async (context) => await this.smtpServer(context.settings, context.tenant.id), timeout: defaults.timeout })
    this.webhook = new WebhookProvider({ secrets: (tenant, settings) => this.webhookSecrets(settings, tenant.id), timeout: defaults.timeout, allowHosts: defaults.allowWebhookHosts })
    this.smsHttp = defaults.smsHttp === null ? null : new SmsHttpProvider({ ...defaults.smsHttp, timeout: defaults.timeout })
  }

  /** Opens one of the tenant's sealed credentials; a box that does not open fails the message permanently. */
  open (box: string, tenant: string, field: string): string {
    if (this.#defaults.keys === null) throw new PermanentError(`${field}: the tenant's credential is encrypted and COMM_ENCRYPTION_KEYS is not set`)
    try {
      return this.#defaults.keys.open(box, secretContext(tenant, field))
    } catch (err) {
      throw new PermanentError(`${field}: ${(err as Error).message}`)
    }
  }

  /**
   * The tenant's webhook signing secrets, newest first (a rotated-out one while its grace period
   * lasts), or the one derived from COMM_WEBHOOK_SECRET for a tenant that never rotated.
   */
  webhookSecrets (settings: CommSettings, tenant: string, now = Date.now()): string[] {
    const live = liveSecrets(settings, now)
    if (live.length === 0) return [tenantWebhookSecret(this.#defaults.webhookSecret, tenant)]
    return live.map((s) => this.open(s.secret, tenant, 'webhook.secret'))
  }

  /** The tenant's settings with the platform's sender identities where it has none. */
  settings (settings: CommSettings): CommSettings {
    return {
      ...settings,
      emailFrom: settings.emailFrom === '' ? this.#defaults.emailFrom : settings.emailFrom,
      smsSenderId: settings.smsSenderId === '' ? this.#defaults.smsSenderId : settings.smsSenderId
    }
  }

  /**
   * The tenant's own SMTP server with its own credentials (never the platform's), or the
   * platform's server. A tenant's host must resolve to public addresses only (unless allowed).
   */
  async smtpServer (settings: CommSettings, tenant: string): Promise<SmtpServer | null> {
    const { smtp } = settings
    if (smtp.host === '') return this.#defaults.smtp
    await assertPublicHost(smtp.host, this.#defaults.allowWebhookHosts, 'smtp')
    const port = smtp.port === 0 ? (smtp.secure ? 465 : 587) : smtp.port
    const auth = smtp.user === '' ? {} : { user: smtp.user, password: smtp.password === '' ? '' : this.open(smtp.password, tenant, 'smtp.password') }
    return { host: smtp.host, port, secure: smtp.secure, ...auth }
  }

  /** The tenant's own SMS API (its URL, its sealed token), or the platform's. */
  async smsFor (settings: CommSettings, tenant: string): Promise<SmsHttpProvider> {
    const { smsHttp } = settings
    if (smsHttp.url === '') {
      if (this.smsHttp === null) throw new PermanentError('sms-http: the platform has no SMS API configured (SMS_HTTP_URL) and the tenant none of its own')
      return this.smsHttp
    }
    await assertPublicHost(new URL(smsHttp.url).hostname, this.#defaults.allowWebhookHosts, 'sms-http')
    const token = smsHttp.token === '' ? undefined : this.open(smsHttp.token, tenant, 'smsHttp.token')
    const key = JSON.stringify([smsHttp.url, token ?? ''])
    let provider = this.#tenantSms.get(key)
    if (provider === undefined) {
      provider = new SmsHttpProvider({ url: smsHttp.url, ...(token === undefined ? {} : { token }), timeout: this.#defaults.timeout })
      this.#tenantSms.set(key, provider)
    }
    return provider
  }

  /** The provider for this tenant's message on this channel. */
  for (context: SendContext, channel: OutgoingMessage['channel']): Provider {
    const name = context.settings.providers[channel] || this.#defaults[channel]
    if (name === 'log') return this.log
    if (name === 'smtp') return this.smtp
    if (name === 'webhook') return this.webhook
    return { name: 'sms-http', send: async (message, ctx) => await (await this.smsFor(ctx.settings, ctx.tenant.id)).send(message, ctx) }
  }

  async close (): Promise<void> {
    await Promise.all([this.smtp.close(), this.webhook.close(), this.smsHttp?.close(), ...[...this.#tenantSms.values()].map(async (p) => await p.close())])
    this.#tenantSms.clear()
  }
}

/** A tenant's own server must resolve, and to public addresses only (unless allowed for development). */
async function assertPublicHost (host: string, allowHosts: readonly string[], provider: string): Promise<void> {
  const problem = await hostProblem(host, allowHosts)
  if (problem === 'unresolved') throw new TransientError(`${provider}: ${host} does not resolve`)
  if (problem === 'private') throw new PermanentError(`${provider}: ${host} resolves to a non-public address`)
}
