import { clusterVariables } from '../clusters.ts'
import { isValidTenantId } from '../tenant-id.ts'
import type { MultitenantPluginOptions } from './plugin.ts'

/** A variable of the environment that is missing or wrong; `variable` names it. */
export class EnvError extends Error {
  readonly code = 'MT_INVALID_ENV'
  readonly variable: string
  constructor (variable: string, problem: string) {
    super(`${variable} ${problem}`)
    this.name = 'EnvError'
    this.variable = variable
  }
}

function value (env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = env[name]?.trim()
  return raw === undefined || raw === '' ? undefined : raw
}

function url (env: NodeJS.ProcessEnv, name: string, protocols: string[]): string | undefined {
  const raw = value(env, name)
  if (raw === undefined) return undefined
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    throw new EnvError(name, `must be an absolute URL (${protocols.join(' or ')}), got "${raw.replace(/\/\/[^@/]*@/, '//…@')}"`)
  }
  if (!protocols.includes(parsed.protocol.slice(0, -1))) throw new EnvError(name, `must be a ${protocols.join(' or ')} URL`)
  return raw
}

export interface EnvOptionsDefaults {
  /** `iss` accepted when JWT_ISSUER is unset. Default: `'tenant-registry'`. */
  issuer?: string
  /** `aud` accepted when JWT_AUDIENCE is unset. Default: `'platform'`. */
  audience?: string
}

/**
 * The plugin's options from the platform's environment variables, each checked, a wrong one
 * named in the error (`EnvError`, code `MT_INVALID_ENV`):
 *
 * - `REGISTRY_URL`, `SERVICE_TOKEN` (required) → `registry`
 * - `DATABASE_URL` and `DATABASE_URL_<NAME>` → `db.clusters` (omitted when none is set)
 * - `JWT_SECRET`, `JWT_PUBLIC_KEY` or `JWKS_URL` (one of them) → `auth`, with `JWT_ISSUER`,
 *   `JWT_AUDIENCE` and the claim mapping `JWT_TENANT_CLAIM`, `JWT_ROLES_CLAIM`, `JWT_SCOPE_CLAIM`
 * - `BASE_DOMAIN` → subdomain resolution; `TENANT` → dedicated mode (`fixedTenant`)
 *
 * Add `migrations`, `rateLimit` and the rest yourself.
 */
export function multitenantOptionsFromEnv (env: NodeJS.ProcessEnv = process.env, defaults: EnvOptionsDefaults = {}): MultitenantPluginOptions {
  const registryUrl = url(env, 'REGISTRY_URL', ['http', 'https'])
  if (registryUrl === undefined) throw new EnvError('REGISTRY_URL', 'is required: the tenant registry\'s base URL, e.g. http://tenant-registry:4000')
  const token = value(env, 'SERVICE_TOKEN')
  if (token === undefined) throw new EnvError('SERVICE_TOKEN', 'is required: a registry token with the tenants:read scope (`tenant-registry token --service <name>`)')

  const clusters: Record<string, string> = {}
  for (const { variable, cluster } of clusterVariables(env)) clusters[cluster] = url(env, variable, ['postgres', 'postgresql']) as string
  if (Object.keys(clusters).length > 0 && clusters.default === undefined) throw new EnvError('DATABASE_URL', 'is required when DATABASE_URL_<NAME> clusters are set')

  const secret = value(env, 'JWT_SECRET')
  const publicKey = value(env, 'JWT_PUBLIC_KEY')
  const jwksUrl = url(env, 'JWKS_URL', ['http', 'https'])
  const keys = [secret, publicKey, jwksUrl].filter((k) => k !== undefined).length
  if (keys === 0) throw new EnvError('JWT_SECRET', 'is required (or JWT_PUBLIC_KEY, or JWKS_URL for an identity provider)')
  if (keys > 1) throw new EnvError('JWT_SECRET', 'conflicts: set one of JWT_SECRET, JWT_PUBLIC_KEY and JWKS_URL')
  if (secret !== undefined && secret.length < 32) throw new EnvError('JWT_SECRET', 'must be at least 32 characters')
  if (publicKey !== undefined && !publicKey.includes('-----BEGIN')) throw new EnvError('JWT_PUBLIC_KEY', 'must be a PEM public key')
  const claims = {
    ...(value(env, 'JWT_TENANT_CLAIM') === undefined ? {} : { tenant: value(env, 'JWT_TENANT_CLAIM') as string }),
    ...(value(env, 'JWT_ROLES_CLAIM') === undefined ? {} : { roles: value(env, 'JWT_ROLES_CLAIM') as string }),
    ...(value(env, 'JWT_SCOPE_CLAIM') === undefined ? {} : { scope: value(env, 'JWT_SCOPE_CLAIM') as string })
  }

  const baseDomain = value(env, 'BASE_DOMAIN')?.toLowerCase()
  if (baseDomain !== undefined && !/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/.test(baseDomain)) {
    throw new EnvError('BASE_DOMAIN', 'must be a domain name such as example.com')
  }
  const fixedTenant = value(env, 'TENANT')
  if (fixedTenant !== undefined && !isValidTenantId(fixedTenant)) throw new EnvError('TENANT', 'must be a tenant id (lower-case letters, digits and hyphens)')

  return {
    registry: { url: registryUrl, token },
    ...(Object.keys(clusters).length === 0 ? {} : { db: { clusters } }),
    auth: {
      ...(secret !== undefined ? { secret } : publicKey !== undefined ? { publicKey } : { jwksUrl: jwksUrl as string }),
      issuer: value(env, 'JWT_ISSUER') ?? defaults.issuer ?? 'tenant-registry',
      audience: value(env, 'JWT_AUDIENCE') ?? defaults.audience ?? 'platform',
      ...(Object.keys(claims).length === 0 ? {} : { claims })
    },
    ...(baseDomain === undefined ? {} : { baseDomain }),
    ...(fixedTenant === undefined ? {} : { fixedTenant })
  }
}
