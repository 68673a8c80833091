// The providers, chosen per tenant and channel: the tenant's `config.comm.providers` first, then
// the platform's defaults from the environment. Only the delivery code calls them.
import type { FastifyBaseLogger } from 'fastify'
import type { CommSettings } from '../../settings.ts'
import { LogProvider } from './log.ts'
import { SmsHttpProvider, type SmsHttpOptions } from './sms-http.ts'
import { SmtpProvider, type SmtpServer } from './smtp.ts'
import { PermanentError, type OutgoingMessage, type Provider, type SendContext } from './types.ts'
import { tenantWebhookSecret, WebhookProvider } from './webhook.ts'

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
}

export class Providers {
  readonly log: LogProvider
  readonly smtp: SmtpProvider
  readonly webhook: WebhookProvider
  readonly smsHttp: SmsHttpProvider | null
  readonly #defaults: ProviderDefaults

  constructor (defaults: ProviderDefaults, log?: FastifyBaseLogger) {
    this.#defaults = defaults
    this.log = new LogProvider(log === undefined ? {} : { log })
    this.smtp = new SmtpProvider({ server: (context) => this.smtpServer(context.settings), timeout: defaults.timeout })
    this.webhook = new WebhookProvider({ secret: (tenant) => tenantWebhookSecret(defaults.webhookSecret, tenant.id), timeout: defaults.timeout, allowHosts: defaults.allowWebhookHosts })
    this.smsHttp = defaults.smsHttp === null ? null : new SmsHttpProvider({ ...defaults.smsHttp, timeout: defaults.timeout })
  }

  /** The tenant's settings with the platform's sender identities where it has none. */
  settings (settings: CommSettings): CommSettings {
    return {
      ...settings,
      emailFrom: settings.emailFrom === '' ? this.#defaults.emailFrom : settings.emailFrom,
      smsSenderId: settings.smsSenderId === '' ? this.#defaults.smsSenderId : settings.smsSenderId
    }
  }

  /** The tenant's own SMTP host with the platform's credentials, or the platform's server. */
  smtpServer (settings: CommSettings): SmtpServer | null {
    const platform = this.#defaults.smtp
    if (settings.smtp.host === '') return platform
    const port = settings.smtp.port === 0 ? (settings.smtp.secure ? 465 : 587) : settings.smtp.port
    return { host: settings.smtp.host, port, secure: settings.smtp.secure }
  }

  /** The provider for this tenant's message on this channel. */
  for (context: SendContext, channel: OutgoingMessage['channel']): Provider {
    const name = context.settings.providers[channel] || this.#defaults[channel]
    if (name === 'log') return this.log
    if (name === 'smtp') return this.smtp
    if (name === 'webhook') return this.webhook
    if (this.smsHttp === null) throw new PermanentError('sms-http: the platform has no SMS API configured (SMS_HTTP_URL)')
    return this.smsHttp
  }

  async close (): Promise<void> {
    await Promise.all([this.smtp.close(), this.webhook.close(), this.smsHttp?.close()])
  }
}
