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
import { BlockedAddressError, pinAddresses, type Resolve } from '../address.ts'

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
  /** Hosts or `host:port`s a tenant's webhook, SMTP host or SMS URL may name although they resolve to private addresses (development). */
  allowWebhookHosts: readonly string[]
  /**
   * Whether SMTP credentials may be sent without TLS (COMM_ALLOW_PLAINTEXT_SMTP_AUTH, default
   * false): for the platform's server, and for a tenant's that also says so (`smtp.allowPlaintextAuth`).
   */
  allowPlaintextSmtpAuth?: boolean
  /** How tenants' host names are resolved (default: the system's; tests answer as a rebinding DNS would). */
  resolve?: Resolve
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
  /** The address each tenant's SMTP host was last connected to (tenant, host, port). */
  readonly #smtpPins = new Map<string, string>()

  constructor (defaults: ProviderDefaults, log?: FastifyBaseLogger) {
    this.#defaults = defaults
    this.log = new LogProvider(log === undefined ? {} : { log })
    this.smtp = new SmtpProvider({ server: async (context) => await this.smtpServer(context.settings, context.tenant.id), timeout: defaults.timeout })
    const resolve = defaults.resolve === undefined ? {} : { resolve: defaults.resolve }
    this.webhook = new WebhookProvider({ secrets: (tenant, settings) => this.webhookSecrets(settings, tenant.id), timeout: defaults.timeout, allowHosts: defaults.allowWebhookHosts, ...resolve })
    // The platform's own SMS API is the operator's: reached as configured, without the tenant checks.
    this.smsHttp = defaults.smsHttp === null ? null : new SmsHttpProvider({ ...defaults.smsHttp, timeout: defaults.timeout })
  }

  /** Opens one of the tenant's sealed credentials; a box that does not open fails the message permanently. */
  open (box: string, tenant: string, field: string): string {
    if (this.#defaults.keys === null) throw new PermanentError(`${field}: the tenant's credential is encrypted and COMM_ENCRYPTION_KEYS is not set`)
    try {
      return this.#defaults.keys.open(box, secretContext(tenant, field))
    } catch (err) {
      throw new PermanentError(`${field} cannot be decrypted: ${(err as Error).message}`)
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
   * platform's server. A tenant's host is resolved here, once: it must resolve to public
   * addresses only (unless allowed), and the connection goes to the address checked, with the
   * name kept for TLS. Credentials go over TLS only, unless both the tenant and the platform
   * allow plaintext.
   */
  async smtpServer (settings: CommSettings, tenant: string): Promise<SmtpServer | null> {
    const { smtp } = settings
    const plaintext = this.#defaults.allowPlaintextSmtpAuth === true
    if (smtp.host === '') return this.#defaults.smtp === null ? null : { ...this.#defaults.smtp, ...(plaintext ? { plaintextAuth: true } : {}) }
    const port = smtp.port === 0 ? (smtp.secure ? 465 : 587) : smtp.port
    // The address used last time while it is still among the checked ones: a round-robin name
    // keeps the tenant on one pooled transport instead of a new one per answer.
    const addresses = await this.#pin(smtp.host, port, 'smtp')
    const pinKey = JSON.stringify([tenant, smtp.host, port])
    const previous = this.#smtpPins.get(pinKey)
    const address = previous !== undefined && addresses.includes(previous) ? previous : addresses[0] as string
    this.#smtpPins.set(pinKey, address)
    const auth = smtp.user === '' ? {} : { user: smtp.user, password: smtp.password === '' ? '' : this.open(smtp.password, tenant, 'smtp.password') }
    const servername = address === smtp.host ? {} : { servername: smtp.host }
    return { host: address, ...servername, port, secure: smtp.secure, ...auth, ...(plaintext && smtp.allowPlaintextAuth === true ? { plaintextAuth: true } : {}) }
  }

  /** A tenant's host resolved once and checked: unresolved is transient, a non-public address permanent. */
  async #pin (host: string, port: number, provider: string): Promise<string[]> {
    const resolve = this.#defaults.resolve === undefined ? {} : { resolve: this.#defaults.resolve }
    try {
      return await pinAddresses(host, port, { allow: this.#defaults.allowWebhookHosts, ...resolve })
    } catch (err) {
      if (err instanceof BlockedAddressError) throw new PermanentError(`${provider}: ${(err as Error).message}`)
      throw new TransientError(`${provider}: ${(err as Error).message}`)
    }
  }

  /** The tenant's own SMS API (its URL, its sealed token), or the platform's. */
  async smsFor (settings: CommSettings, tenant: string): Promise<SmsHttpProvider> {
    const { smsHttp } = settings
    if (smsHttp.url === '') {
      if (this.smsHttp === null) throw new PermanentError('sms-http: the platform has no SMS API configured (SMS_HTTP_URL) and the tenant none of its own')
      return this.smsHttp
    }
    const token = smsHttp.token === '' ? undefined : this.open(smsHttp.token, tenant, 'smsHttp.token')
    const key = JSON.stringify([smsHttp.url, token ?? ''])
    let provider = this.#tenantSms.get(key)
    if (provider === undefined) {
      // The URL's host is resolved and checked by the connection itself (one resolution, the
      // connection to the address checked): see ../address.ts.
      const resolve = this.#defaults.resolve === undefined ? {} : { resolve: this.#defaults.resolve }
      provider = new SmsHttpProvider({ url: smsHttp.url, ...(token === undefined ? {} : { token }), timeout: this.#defaults.timeout, pin: { allow: this.#defaults.allowWebhookHosts, ...resolve } })
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
