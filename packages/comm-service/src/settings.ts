// A tenant's communication settings: the registry's `config.comm`, typed, merged with defaults and
// validated. An empty string means "the platform's default" (from the service's environment).
import { defineTenantConfig, type TenantConfig } from '@platform/multitenant'
import { KeyRing } from './secrets.ts'

export const EMAIL_PROVIDERS = ['log', 'smtp'] as const
export const SMS_PROVIDERS = ['log', 'sms-http'] as const
export const WEBHOOK_PROVIDERS = ['webhook', 'log'] as const

export interface CommSettings {
  /** The tenant's From address (`no-reply@acme.example.com`). */
  emailFrom: string
  /** The display name beside it (`Acme`). */
  emailFromName: string
  /** Where replies go (`support@acme.example.com`); '' for none. At one of the tenant's domains too. */
  replyTo: string
  /** The SMS sender id (`ACME`: 1–11 letters and digits, or a phone number). */
  smsSenderId: string
  /** The provider per channel. */
  providers: { email: '' | typeof EMAIL_PROVIDERS[number], sms: '' | typeof SMS_PROVIDERS[number], webhook: '' | typeof WEBHOOK_PROVIDERS[number] }
  /**
   * The tenant's own SMTP relay; `password` is a sealed box (see secrets.ts), never plaintext.
   * Credentials go over TLS only, unless `allowPlaintextAuth` and the platform allows it too.
   */
  smtp: { host: string, port: number, secure: boolean, user: string, password: string, passwordSetAt: string, allowPlaintextAuth?: boolean }
  /** The tenant's own SMS HTTP API; `token` is a sealed box. */
  smsHttp: { url: string, token: string, tokenSetAt: string }
  /** Webhook signing secrets (sealed), newest first; an older one signs too until `expiresAt`. */
  webhook: { secrets: WebhookSecret[] }
}

export interface WebhookSecret {
  secret: string
  createdAt: string
  expiresAt: string | null
}

export const COMM_DEFAULTS: Readonly<CommSettings> = {
  emailFrom: '',
  emailFromName: '',
  replyTo: '',
  smsSenderId: '',
  providers: { email: '', sms: '', webhook: '' },
  smtp: { host: '', port: 0, secure: false, user: '', password: '', passwordSetAt: '', allowPlaintextAuth: false },
  smsHttp: { url: '', token: '', tokenSetAt: '' },
  webhook: { secrets: [] }
}

/** A sender address (`emailFrom`, COMM_EMAIL_FROM). */
export const SENDER_EMAIL = /^[^\s@<>",;]{1,64}@[^\s@<>",;]{1,255}$/
/** An SMS sender id (`smsSenderId`, COMM_SMS_SENDER_ID): alphanumeric, or a phone number. */
export const SENDER_ID = /^([A-Za-z0-9 ]{1,11}|\+[1-9]\d{6,14})$/
/** A host name or an IPv4 address (`smtp.host`). */
export const HOST = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/

export function check (value: CommSettings): string[] {
  const problems: string[] = []
  if (value.emailFrom !== '' && !SENDER_EMAIL.test(value.emailFrom)) problems.push('emailFrom must be an email address')
  if (value.replyTo !== '' && !SENDER_EMAIL.test(value.replyTo)) problems.push('replyTo must be an email address')
  if (value.emailFromName.length > 100 || /[\r\n"<>@]/.test(value.emailFromName)) problems.push('emailFromName must be at most 100 characters, without line breaks, quotes, angle brackets or "@" (a name must not read as another address)')
  if (value.smsSenderId !== '' && !SENDER_ID.test(value.smsSenderId)) problems.push('smsSenderId must be 1 to 11 letters, digits or spaces, or an E.164 number')
  const { providers, smtp } = value
  if (!(['', ...EMAIL_PROVIDERS] as string[]).includes(providers.email)) problems.push(`providers.email must be one of ${EMAIL_PROVIDERS.join(', ')}`)
  if (!(['', ...SMS_PROVIDERS] as string[]).includes(providers.sms)) problems.push(`providers.sms must be one of ${SMS_PROVIDERS.join(', ')}`)
  if (!(['', ...WEBHOOK_PROVIDERS] as string[]).includes(providers.webhook)) problems.push(`providers.webhook must be one of ${WEBHOOK_PROVIDERS.join(', ')}`)
  if (smtp.host !== '' && !HOST.test(smtp.host)) problems.push('smtp.host must be a host name or an IPv4 address')
  if (!Number.isInteger(smtp.port) || smtp.port < 0 || smtp.port > 65535) problems.push('smtp.port must be a port number (0: the default for secure or not)')
  if (typeof smtp.secure !== 'boolean') problems.push('smtp.secure must be true or false')
  if (smtp.allowPlaintextAuth !== undefined && typeof smtp.allowPlaintextAuth !== 'boolean') problems.push('smtp.allowPlaintextAuth must be true or false')
  if (typeof smtp.user !== 'string' || smtp.user.length > 256 || /[\r\n]/.test(smtp.user)) problems.push('smtp.user must be at most 256 characters on one line')
  if (typeof smtp.password !== 'string' || (smtp.password !== '' && !KeyRing.isBox(smtp.password))) problems.push('smtp.password must be set through the comm-service (it stores it encrypted)')
  const { smsHttp, webhook } = value
  if (typeof smsHttp.url !== 'string' || (smsHttp.url !== '' && !/^https?:\/\/[^/?#]+/.test(smsHttp.url)) || (smsHttp.url !== '' && !URL.canParse(smsHttp.url))) problems.push('smsHttp.url must be an http(s) URL')
  if (typeof smsHttp.token !== 'string' || (smsHttp.token !== '' && !KeyRing.isBox(smsHttp.token))) problems.push('smsHttp.token must be set through the comm-service (it stores it encrypted)')
  if (!Array.isArray(webhook.secrets) || webhook.secrets.length > 2 || !webhook.secrets.every((s) => typeof s === 'object' && s !== null && typeof s.secret === 'string' && KeyRing.isBox(s.secret))) problems.push('webhook.secrets must be generated through the comm-service (rotateSecret)')
  return problems
}

/** The webhook secrets still signing at `now`, newest first (none when the stored list is not one). */
export function liveSecrets (settings: Pick<CommSettings, 'webhook'>, now: number): WebhookSecret[] {
  const list = settings.webhook.secrets
  return Array.isArray(list) ? list.filter((s) => s.expiresAt === null || Date.parse(s.expiresAt) > now) : []
}

/** The settings view; `report` hears once per tenant record whose section is not valid. */
export const commSettings = (report: (tenant: string, problems: string[]) => void): TenantConfig<CommSettings> => defineTenantConfig<CommSettings>({
  service: 'comm',
  defaults: COMM_DEFAULTS,
  validate: (value) => {
    const problems = check(value)
    return problems.length > 0 ? { problems } : value
  },
  // A stored section that cannot work must not send with another identity: messages of that
  // tenant fail with the problems named, and the operator hears once per record.
  invalid: 'throw',
  onInvalid: (tenant, problems) => report(tenant.id, problems)
})
