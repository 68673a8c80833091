// The service's environment, checked at start; a wrong variable is named in the error.
import { EnvError, multitenantOptionsFromEnv, type MultitenantPluginOptions } from '@platform/multitenant/fastify'

export interface NotesConfig {
  /** Registry, database clusters and token verification, from the platform's variables. */
  multitenant: MultitenantPluginOptions
  port: number
  host: string
  logLevel: string
  /**
   * COMM_URL: the comm-service, for `notify` (an email to the note's author). Unset: `notify` is
   * refused. Calls use this service's REGISTRY_URL and SERVICE_TOKEN for the token exchange.
   */
  comm?: NotifyOptions | undefined
}

/** Where notification emails go: the comm-service, called with tokens the registry exchanges. */
export interface NotifyOptions {
  url: string
  exchange: { registry: string, credential: string }
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

export { EnvError }

/**
 * REGISTRY_URL, SERVICE_TOKEN, DATABASE_URL (and DATABASE_URL_<NAME>), JWT_SECRET or
 * JWT_PUBLIC_KEY or JWKS_URL (with JWT_ISSUER, JWT_AUDIENCE, JWT_*_CLAIM), BASE_DOMAIN, TENANT
 * (the library's `multitenantOptionsFromEnv`), and PORT (default 4100), HOST (127.0.0.1),
 * LOG_LEVEL (info), COMM_URL (optional: the comm-service, for `notify`).
 */
export function loadConfig (env: NodeJS.ProcessEnv = process.env): NotesConfig {
  const multitenant = multitenantOptionsFromEnv(env)
  if (multitenant.db === undefined) throw new EnvError('DATABASE_URL', 'is required: a service login (NOSUPERUSER, a member of the platform_services group)')
  const rawPort = env.PORT?.trim() || '4100'
  const port = Number(rawPort)
  if (!/^\d+$/.test(rawPort) || port > 65535) throw new EnvError('PORT', `must be a port number from 0 to 65535, got "${rawPort}"`)
  const host = env.HOST?.trim() || '127.0.0.1'
  const logLevel = env.LOG_LEVEL?.trim() || 'info'
  if (!LEVELS.includes(logLevel)) throw new EnvError('LOG_LEVEL', `must be one of ${LEVELS.join(', ')}`)
  const commUrl = env.COMM_URL?.trim() || undefined
  let comm: NotifyOptions | undefined
  if (commUrl !== undefined) {
    let url: URL | undefined
    try {
      url = new URL(commUrl)
    } catch {}
    if (url === undefined || !['http:', 'https:'].includes(url.protocol)) throw new EnvError('COMM_URL', 'must be an http(s) URL, e.g. http://comm:4200')
    // multitenantOptionsFromEnv required both: the registry is where exchanges go.
    comm = { url: url.href, exchange: { registry: (env.REGISTRY_URL as string).trim(), credential: (env.SERVICE_TOKEN as string).trim() } }
  }
  return { multitenant, port, host, logLevel, comm }
}
