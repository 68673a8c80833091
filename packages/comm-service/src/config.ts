// The service's environment, checked at start; a wrong variable is named in the error.
import { EnvError, multitenantOptionsFromEnv } from '@platform/multitenant/fastify'
import type { CommConfig, CommRole } from './app.ts'

export { EnvError }

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
 * COMM_WEBHOOK_ALLOW_HOSTS (comma-separated, development only), PORT (4200), HOST, LOG_LEVEL.
 */
export function loadConfig (env: NodeJS.ProcessEnv = process.env): CommEnvConfig {
  const multitenant = multitenantOptionsFromEnv(env)
  const clusters = (multitenant.db as { clusters?: Record<string, string> } | undefined)?.clusters
  if (clusters?.default === undefined) throw new EnvError('DATABASE_URL', 'is required: the comm-service login (NOSUPERUSER, a member of platform_services, owner of the queue schema)')
  const role = (env.COMM_ROLE?.trim() || 'all') as CommRole
  if (!ROLES.includes(role)) throw new EnvError('COMM_ROLE', `must be one of ${ROLES.join(', ')}`)
  const rawPort = env.PORT?.trim() || '4200'
  const port = Number(rawPort)
  if (!/^\d+$/.test(rawPort) || port > 65535) throw new EnvError('PORT', `must be a port number from 0 to 65535, got "${rawPort}"`)
  const logLevel = env.LOG_LEVEL?.trim() || 'info'
  if (!LEVELS.includes(logLevel)) throw new EnvError('LOG_LEVEL', `must be one of ${LEVELS.join(', ')}`)
  return {
    multitenant,
    queueUrl: clusters.default,
    role,
    concurrency: { local: positive(env, 'COMM_CONCURRENCY', 16, 1000), perTenant: positive(env, 'COMM_TENANT_CONCURRENCY', 4, 1000) },
    allowWebhookHosts: (env.COMM_WEBHOOK_ALLOW_HOSTS ?? '').split(',').map((h) => h.trim()).filter(Boolean),
    port,
    host: env.HOST?.trim() || '127.0.0.1',
    logLevel
  }
}
