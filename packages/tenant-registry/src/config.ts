import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'

/**
 * How tokens are signed and checked: a key pair (Ed25519, RSA or EC; production), or a shared
 * HS256 secret (development only: whoever verifies with it can also mint tokens). `publicKey` may
 * hold several PEM public keys (a rotation: the signing key's own plus retiring or upcoming ones);
 * `keyId` is the signing key's `kid` (default: its RFC 7638 thumbprint).
 */
export type JwtKeys = { secret: string } | { publicKey: string, privateKey?: string | undefined, keyId?: string }

export interface RegistryEnvConfig {
  /** Unset → the dev stack starts an embedded PostgreSQL under `.data/`. */
  databaseUrl: string | undefined
  jwt: JwtKeys
  baseDomain: string | undefined
  port: number
  host: string
  logLevel: string
  /** REGISTRY_ALLOW_SUPERUSER=true: run even when DATABASE_URL is a superuser's login. */
  allowSuperuser?: boolean
  /** `default` and every DATABASE_URL_<NAME> (lower-cased): what a tenant's `database` may name. */
  clusters?: string[]
  /** OPS_TOKEN: `/metrics` and `/docs` need it as a bearer token. */
  opsToken?: string | undefined
  /** DOCS=off hides `/docs`. */
  docs?: boolean
}

/** A configuration error names the variable it is about. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID'
  readonly variable: string
  constructor (variable: string, message: string) {
    super(`${variable}: ${message}`)
    this.name = 'ConfigError'
    this.variable = variable
  }
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const HOST_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/

function pem (variable: string, value: string): string {
  if (value.includes('-----BEGIN')) return value.replaceAll('\\n', '\n')
  try {
    return readFileSync(value, 'utf8')
  } catch {
    throw new ConfigError(variable, 'must be a PEM key or the path of a readable PEM file')
  }
}

/** A variable's value, trimmed; unset and empty are the same. */
export function nonEmpty (env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim()
  return value === undefined || value === '' ? undefined : value
}

export function checkDatabaseUrl (value: string, variable = 'DATABASE_URL'): string {
  let url: URL | undefined
  try {
    url = new URL(value)
  } catch {}
  if (url === undefined || !['postgres:', 'postgresql:'].includes(url.protocol)) {
    throw new ConfigError(variable, 'must be a postgres:// or postgresql:// URL')
  }
  return value
}

export interface LoadConfigOptions {
  /** When no JWT variables are set, use this secret (the dev stack's persisted one). */
  fallbackSecret?: string
}

/**
 * Reads and validates the registry's environment (DESIGN.md "Environment variables"). Every
 * problem is reported with the variable's name; nothing starts on a bad configuration.
 */
export function loadConfig (env: NodeJS.ProcessEnv = process.env, options: LoadConfigOptions = {}): RegistryEnvConfig {
  const rawDatabaseUrl = nonEmpty(env, 'DATABASE_URL')
  const databaseUrl = rawDatabaseUrl === undefined ? undefined : checkDatabaseUrl(rawDatabaseUrl)

  const secret = nonEmpty(env, 'JWT_SECRET')
  const publicKey = nonEmpty(env, 'JWT_PUBLIC_KEY')
  const privateKey = nonEmpty(env, 'JWT_PRIVATE_KEY')
  const keyId = nonEmpty(env, 'JWT_KEY_ID')
  let jwt: JwtKeys
  if (secret !== undefined) {
    if (publicKey !== undefined || privateKey !== undefined) throw new ConfigError('JWT_SECRET', 'set either JWT_SECRET or JWT_PUBLIC_KEY/JWT_PRIVATE_KEY, not both')
    if (secret.length < 32) throw new ConfigError('JWT_SECRET', 'must be at least 32 characters')
    if (keyId !== undefined) throw new ConfigError('JWT_KEY_ID', 'names a key of JWT_PRIVATE_KEY, not of JWT_SECRET')
    jwt = { secret }
  } else if (publicKey !== undefined) {
    jwt = { publicKey: pem('JWT_PUBLIC_KEY', publicKey), privateKey: privateKey === undefined ? undefined : pem('JWT_PRIVATE_KEY', privateKey), ...(keyId === undefined ? {} : { keyId }) }
  } else if (privateKey !== undefined) {
    throw new ConfigError('JWT_PUBLIC_KEY', 'is required with JWT_PRIVATE_KEY')
  } else if (options.fallbackSecret !== undefined) {
    jwt = { secret: options.fallbackSecret }
  } else {
    throw new ConfigError('JWT_SECRET', 'is required (or JWT_PUBLIC_KEY, with JWT_PRIVATE_KEY to issue tokens)')
  }

  const baseDomain = nonEmpty(env, 'BASE_DOMAIN')?.toLowerCase()
  if (baseDomain !== undefined && (!HOST_NAME.test(baseDomain) || !baseDomain.includes('.'))) {
    throw new ConfigError('BASE_DOMAIN', 'must be a domain name such as example.com')
  }

  const rawPort = nonEmpty(env, 'PORT') ?? '4000'
  const port = Number(rawPort)
  if (!/^\d+$/.test(rawPort) || port > 65535) throw new ConfigError('PORT', `must be a port number from 0 to 65535, got "${rawPort}"`)

  const host = nonEmpty(env, 'HOST') ?? '127.0.0.1'
  if (isIP(host) === 0 && !HOST_NAME.test(host.toLowerCase())) throw new ConfigError('HOST', 'must be an IP address or a host name')

  const logLevel = nonEmpty(env, 'LOG_LEVEL') ?? 'info'
  if (!LEVELS.includes(logLevel)) throw new ConfigError('LOG_LEVEL', `must be one of ${LEVELS.join(', ')}`)

  const rawAllow = nonEmpty(env, 'REGISTRY_ALLOW_SUPERUSER')
  if (rawAllow !== undefined && rawAllow !== 'true' && rawAllow !== 'false') throw new ConfigError('REGISTRY_ALLOW_SUPERUSER', 'must be true or false')

  const clusters = ['default']
  for (const [name, value] of Object.entries(env)) {
    const match = /^DATABASE_URL_([A-Z0-9_]{1,63})$/.exec(name)
    if (match === null || value === undefined || value.trim() === '') continue
    checkDatabaseUrl(value.trim(), name)
    clusters.push((match[1] as string).toLowerCase())
  }

  const opsToken = nonEmpty(env, 'OPS_TOKEN')
  if (opsToken !== undefined && opsToken.length < 16) throw new ConfigError('OPS_TOKEN', 'must be at least 16 characters')
  const rawDocs = nonEmpty(env, 'DOCS') ?? 'on'
  if (rawDocs !== 'on' && rawDocs !== 'off') throw new ConfigError('DOCS', 'must be on or off')

  return { databaseUrl, jwt, baseDomain, port, host, logLevel, allowSuperuser: rawAllow === 'true', clusters, opsToken, docs: rawDocs === 'on' }
}
