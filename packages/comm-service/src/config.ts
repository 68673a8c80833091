// The service's environment, checked at start; a wrong variable is named in the error.
import { EnvError, multitenantOptionsFromEnv } from '@platform/multitenant/fastify'
import type { CommConfig, CommRole } from './app.ts'
import { parseAllowEntry } from './delivery/address.ts'
import { parseSmtpUrl } from './delivery/providers/smtp.ts'
import type { CallbackProvider } from './routes/webhooks.ts'
import { KeyRing } from './secrets.ts'
import { SENDER_EMAIL, SENDER_ID } from './settings.ts'
import type { RenderPoolOptions } from './templates/pool.ts'

export { EnvError }

/** The audience of the tokens other services obtain to call the comm-service. */
export const COMM_AUDIENCE = 'comm'

export interface CommEnvConfig extends CommConfig {
  port: number
  host: string
  logLevel: string
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const ROLES: CommRole[] = ['api', 'worker', 'all']

function positive (env: NodeJS.ProcessEnv, name: string, fallback: number, max: number): number {
  const raw = env[name]?.trim() || String(fallback)
  const value = Number(raw)
  if (!/^\d+$/.test(raw) || value < 1 || value > max) throw new EnvError(name, `must be a whole number from 1 to ${max}, got "${raw}"`)
  return value
}

/**
 * The platform's variables (REGISTRY_URL, SERVICE_TOKEN, DATABASE_URL, JWT_*, BASE_DOMAIN,
 * TENANT) through the library, plus COMM_ROLE (api, worker or all), COMM_CONCURRENCY (jobs at once
 * in this process, default 16), COMM_TENANT_CONCURRENCY (at most per tenant, default 4),
 * COMM_WEBHOOK_ALLOW_HOSTS (see `allowHostsFromEnv`), OPS_TOKEN (`/metrics` and `/docs`
 * need it as a bearer token; at least 16 characters), PORT (4200), HOST, LOG_LEVEL,
 * and the platform's provider defaults and retry policy (see `providersFromEnv`, `retryFromEnv`).
 */
export function loadConfig (env: NodeJS.ProcessEnv = process.env): CommEnvConfig {
  const multitenant = { ...multitenantOptionsFromEnv(env), ...rateLimitFromEnv(env) }
  // Tokens other services obtained for this service (token exchange, audience `comm`) are
  // accepted beside those for JWT_AUDIENCE. The library always sets `auth` from the environment.
  const auth = multitenant.auth as NonNullable<typeof multitenant.auth>
  auth.audience = [...new Set([auth.audience, COMM_AUDIENCE].flat())]
  const clusters = (multitenant.db as { clusters?: Record<string, string> } | undefined)?.clusters
  if (clusters?.default === undefined) throw new EnvError('DATABASE_URL', 'is required: the comm-service login (NOSUPERUSER, a member of platform_services, owner of the queue schema)')
  const role = (env.COMM_ROLE?.trim() || 'all') as CommRole
  if (!ROLES.includes(role)) throw new EnvError('COMM_ROLE', `must be one of ${ROLES.join(', ')}`)
  const rawPort = env.PORT?.trim() || '4200'
  const port = Number(rawPort)
  if (!/^\d+$/.test(rawPort) || port > 65535) throw new EnvError('PORT', `must be a port number from 0 to 65535, got "${rawPort}"`)
  const logLevel = env.LOG_LEVEL?.trim() || 'info'
  if (!LEVELS.includes(logLevel)) throw new EnvError('LOG_LEVEL', `must be one of ${LEVELS.join(', ')}`)
  const opsToken = env.OPS_TOKEN?.trim() || undefined
  if (opsToken !== undefined && opsToken.length < 16) throw new EnvError('OPS_TOKEN', 'must be at least 16 characters')
  return {
    multitenant,
    queueUrl: clusters.default,
    role,
    concurrency: { local: positive(env, 'COMM_CONCURRENCY', 16, 1000), perTenant: positive(env, 'COMM_TENANT_CONCURRENCY', 4, 1000) },
    queueUrls: clusters,
    allowWebhookHosts: allowHostsFromEnv(env),
    providers: providersFromEnv(env),
    retry: {
      attempts: positive(env, 'COMM_MAX_ATTEMPTS', 5, 100),
      baseMs: positive(env, 'COMM_RETRY_BASE_MS', 2000, 3_600_000),
      maxMs: positive(env, 'COMM_RETRY_MAX_MS', 600_000, 86_400_000)
    },
    keys: keysFromEnv(env),
    callbackSecrets: callbackSecretsFromEnv(env),
    render: renderFromEnv(env),
    opsToken,
    port,
    host: env.HOST?.trim() || '127.0.0.1',
    logLevel
  }
}

/**
 * COMM_WEBHOOK_ALLOW_HOSTS (development only): comma-separated `host:port` (or `[IPv6]:port`)
 * entries that a tenant's webhook, SMTP host or SMS URL may name although they resolve to
 * private addresses; a bare `host` allows every port of it.
 */
export function allowHostsFromEnv (env: NodeJS.ProcessEnv): string[] {
  const entries = (env.COMM_WEBHOOK_ALLOW_HOSTS ?? '').split(',').map((h) => h.trim()).filter(Boolean)
  for (const entry of entries) {
    try {
      parseAllowEntry(entry)
    } catch (err) {
      throw new EnvError('COMM_WEBHOOK_ALLOW_HOSTS', (err as Error).message)
    }
  }
  return entries
}

/**
 * The platform's provider defaults: SMTP_URL (`smtp://user:password@host:port`, or `smtps://`),
 * SMS_HTTP_URL and SMS_HTTP_TOKEN, COMM_EMAIL_PROVIDER (`log` or `smtp`; default `smtp` when
 * SMTP_URL is set), COMM_SMS_PROVIDER (`log` or `sms-http`; default `sms-http` when SMS_HTTP_URL
 * is set), COMM_EMAIL_FROM and COMM_SMS_SENDER_ID (for tenants without their own), COMM_WEBHOOK_SECRET
 * (each tenant's signing secret is derived from it; at least 32 characters) and
 * COMM_SEND_TIMEOUT_MS (per attempt, default 10,000), and COMM_ALLOW_PLAINTEXT_SMTP_AUTH (`true`
 * or `false`, the default): whether SMTP credentials may go without TLS, to the platform's server
 * and to a tenant's own server whose configuration says so too (`smtp.allowPlaintextAuth`).
 */
export function providersFromEnv (env: NodeJS.ProcessEnv): NonNullable<CommConfig['providers']> {
  const out: NonNullable<CommConfig['providers']> = {}
  const smtpUrl = env.SMTP_URL?.trim()
  if (smtpUrl) {
    try {
      out.smtp = parseSmtpUrl(smtpUrl)
    } catch (err) {
      throw new EnvError('SMTP_URL', `${(err as Error).message.replace(/^Invalid URL$/, 'must be a URL')} (smtp://user:password@host:port)`)
    }
  }
  const smsUrl = env.SMS_HTTP_URL?.trim()
  if (smsUrl) {
    if (!/^https?:\/\/[^/]/.test(smsUrl) || !URL.canParse(smsUrl)) throw new EnvError('SMS_HTTP_URL', 'must be an http(s) URL')
    out.smsHttp = { url: smsUrl, ...(env.SMS_HTTP_TOKEN?.trim() ? { token: env.SMS_HTTP_TOKEN.trim() } : {}) }
  }
  const email = env.COMM_EMAIL_PROVIDER?.trim() || (out.smtp === undefined ? 'log' : 'smtp')
  if (email !== 'log' && email !== 'smtp') throw new EnvError('COMM_EMAIL_PROVIDER', 'must be log or smtp')
  if (email === 'smtp' && out.smtp === undefined) throw new EnvError('SMTP_URL', 'is required when COMM_EMAIL_PROVIDER is smtp')
  out.email = email
  const sms = env.COMM_SMS_PROVIDER?.trim() || (out.smsHttp === undefined ? 'log' : 'sms-http')
  if (sms !== 'log' && sms !== 'sms-http') throw new EnvError('COMM_SMS_PROVIDER', 'must be log or sms-http')
  if (sms === 'sms-http' && out.smsHttp === undefined) throw new EnvError('SMS_HTTP_URL', 'is required when COMM_SMS_PROVIDER is sms-http')
  out.sms = sms
  const from = env.COMM_EMAIL_FROM?.trim()
  if (from) {
    if (!SENDER_EMAIL.test(from)) throw new EnvError('COMM_EMAIL_FROM', 'must be an email address')
    out.emailFrom = from
  }
  const sender = env.COMM_SMS_SENDER_ID?.trim()
  if (sender) {
    if (!SENDER_ID.test(sender)) throw new EnvError('COMM_SMS_SENDER_ID', 'must be 1 to 11 letters, digits or spaces, or an E.164 number')
    out.smsSenderId = sender
  }
  const secret = env.COMM_WEBHOOK_SECRET?.trim()
  if (secret) {
    if (secret.length < 32) throw new EnvError('COMM_WEBHOOK_SECRET', 'must be at least 32 characters')
    out.webhookSecret = secret
  }
  out.timeout = positive(env, 'COMM_SEND_TIMEOUT_MS', 10_000, 120_000)
  const plaintext = env.COMM_ALLOW_PLAINTEXT_SMTP_AUTH?.trim() || 'false'
  if (plaintext !== 'true' && plaintext !== 'false') throw new EnvError('COMM_ALLOW_PLAINTEXT_SMTP_AUTH', `must be true or false, got "${plaintext}"`)
  out.allowPlaintextSmtpAuth = plaintext === 'true'
  return out
}

/**
 * COMM_ENCRYPTION_KEYS: `id:base64key,…`, newest first (each key 32 random bytes, e.g.
 * `k1:$(openssl rand -base64 32)`). Unset: tenants' secrets cannot be stored (PATCH answers 503).
 */
export function keysFromEnv (env: NodeJS.ProcessEnv): KeyRing | null {
  const raw = env.COMM_ENCRYPTION_KEYS?.trim()
  if (!raw) return null
  try {
    return KeyRing.parse(raw)
  } catch (err) {
    throw new EnvError('COMM_ENCRYPTION_KEYS', `${(err as Error).message} (id:base64key,… newest first, each key 32 random bytes)`)
  }
}

/** COMM_CALLBACK_SECRET_SMS_HTTP and COMM_CALLBACK_SECRET_SMTP: the secrets providers sign their callbacks with. */
export function callbackSecretsFromEnv (env: NodeJS.ProcessEnv): Partial<Record<CallbackProvider, string>> {
  const out: Partial<Record<CallbackProvider, string>> = {}
  for (const [provider, name] of [['sms-http', 'COMM_CALLBACK_SECRET_SMS_HTTP'], ['smtp', 'COMM_CALLBACK_SECRET_SMTP']] as const) {
    const secret = env[name]?.trim()
    if (!secret) continue
    if (!secret.startsWith('whsec_') && secret.length < 32) throw new EnvError(name, 'must be a whsec_… secret or at least 32 characters')
    out[provider] = secret
  }
  return out
}

/**
 * The library's per-tenant request limit on the template and message routes: COMM_RATE_LIMIT
 * (`on`, the default, or `off`) and requests per minute by tier, COMM_RATE_LIMIT_FREE (300),
 * COMM_RATE_LIMIT_STANDARD (3,000), COMM_RATE_LIMIT_PREMIUM (30,000); a tenant's own
 * `limits.requestsPerMinute` in the registry wins over its tier's.
 */
export function rateLimitFromEnv (env: NodeJS.ProcessEnv): Pick<CommConfig['multitenant'], 'rateLimit'> {
  const raw = env.COMM_RATE_LIMIT?.trim() || 'on'
  if (raw !== 'on' && raw !== 'off') throw new EnvError('COMM_RATE_LIMIT', 'must be on or off')
  if (raw === 'off') return { rateLimit: false }
  return {
    rateLimit: {
      timeWindow: '1 minute',
      tiers: {
        free: positive(env, 'COMM_RATE_LIMIT_FREE', 300, 1_000_000),
        standard: positive(env, 'COMM_RATE_LIMIT_STANDARD', 3000, 1_000_000),
        premium: positive(env, 'COMM_RATE_LIMIT_PREMIUM', 30_000, 1_000_000)
      }
    }
  }
}

/**
 * The template render pool: COMM_RENDER_THREADS (worker threads, default 2 to 4 by cores),
 * COMM_RENDER_TIMEOUT_MS (the hard limit of one render, 1,000) and COMM_RENDER_PER_TENANT (renders
 * one tenant may have in flight, 2).
 */
export function renderFromEnv (env: NodeJS.ProcessEnv): RenderPoolOptions {
  return {
    ...(env.COMM_RENDER_THREADS?.trim() ? { threads: positive(env, 'COMM_RENDER_THREADS', 2, 64) } : {}),
    timeoutMs: positive(env, 'COMM_RENDER_TIMEOUT_MS', 1000, 60_000),
    perTenant: positive(env, 'COMM_RENDER_PER_TENANT', 2, 100)
  }
}
