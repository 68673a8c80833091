import { createPublicKey, type JsonWebKey } from 'node:crypto'
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { assertClaims, hasRole, hasScope, UnauthorizedError, type PlatformClaims } from '../claims.ts'
import { ForbiddenError, InvalidOptionError } from '../errors.ts'
import { optionalPeer } from './peers.ts'

/** Where a token carries one of the platform's claims: a dotted path, or a function of the payload. */
export type ClaimSource = string | ((payload: Readonly<Record<string, unknown>>) => unknown)

/**
 * Which claims of the issuer's tokens carry the tenant, roles and scopes. Defaults: DESIGN's
 * platform tokens (`tenant`, `roles`, `scope`). E.g. Keycloak: `{ tenant: 'tenant_id',
 * roles: 'realm_access.roles' }`; Auth0: `{ tenant: 'https://example.com/tenant', roles:
 * 'https://example.com/roles' }`; Cognito: `{ tenant: 'custom:tenant', roles: 'cognito:groups' }`.
 * A mapped scope claim that is an array (`scp`) is joined with spaces.
 */
export interface ClaimMapping {
  tenant?: ClaimSource
  roles?: ClaimSource
  scope?: ClaimSource
}

export interface AuthOptions {
  /** Shared HMAC secret (JWT_SECRET). */
  secret?: string
  /** PEM public key (JWT_PUBLIC_KEY), for RS*, PS*, ES* or EdDSA tokens. */
  publicKey?: string
  /**
   * PEM private key (JWT_PRIVATE_KEY), with `publicKey`, for a service that also issues tokens
   * (`fastify.jwt.sign`: the first issuer and audience, one hour unless told otherwise).
   */
  privateKey?: string
  /**
   * An identity provider's JWKS URL (Keycloak's `…/protocol/openid-connect/certs`, Auth0's and
   * Cognito's `…/.well-known/jwks.json`). The whole set is kept, keys picked by `kid`; a `kid` not
   * in it refetches the set (key rotation), at most once per `jwksCooldown`.
   */
  jwksUrl?: string
  /**
   * A key set held in memory (`{ keys: [JWK…] }`, each with a `kid`): an issuer verifying its own
   * tokens against the set it publishes (the registry), so a retiring key still verifies.
   */
  jwks?: { keys: readonly JsonWebKey[] }
  /** After how long the fetched set is refreshed, in ms (default 10 min; its keys serve meanwhile). */
  jwksTtl?: number
  /** Least time between two fetches of the set, in ms (default 5 s). */
  jwksCooldown?: number
  /** Accepted `iss` (one or several). */
  issuer: string | string[]
  /** Accepted `aud` (one or several). */
  audience: string | string[]
  /** Where the tenant, roles and scopes are in the issuer's tokens. */
  claims?: ClaimMapping
  /**
   * Routes that do not set `config.auth`: `'required'` (a valid token, default) or `'optional'`
   * (verified when sent). `config.auth: false` opens a route; excluded paths are never checked.
   */
  routes?: 'required' | 'optional'
  /** Paths never checked: exact, or prefixes ending in `*`. Default: `['/health', '/ready', '/docs*']`. */
  exclude?: string[]
  /** Tokens whose verification is remembered, keyed by the token (default 10,000; 0 for none). */
  cache?: number
}

/** What a route asks of its token, in `config.auth`. */
export interface RouteAuth {
  /** Scope(s) the token must carry, every one. */
  scope?: string | string[]
  /** The token must carry at least one of these roles. */
  roles?: string[]
  /** Platform tokens only: no tenant claim and the `platform-admin` role. */
  admin?: boolean
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified token's claims, mapped to the platform's names; `null` when none was sent. */
    claims: PlatformClaims | null
  }
  interface FastifyContextConfig {
    /** What this route needs of the token; `false` opens it. Default: the plugin's `routes`. */
    auth?: RouteAuth | false
  }
}

export const DEFAULT_AUTH_EXCLUDE: readonly string[] = Object.freeze(['/health', '/ready', '/docs*'])

function pick (payload: Readonly<Record<string, unknown>>, source: ClaimSource): unknown {
  if (typeof source === 'function') return source(payload)
  if (Object.hasOwn(payload, source)) return payload[source] // names with dots (Auth0's URLs)
  let value: unknown = payload
  for (const part of source.split('.')) {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, part)) return undefined
    value = (value as Record<string, unknown>)[part]
  }
  return value
}

/** The payload in the platform's claim names (then checked by `assertClaims`). */
export function mapClaims (payload: Readonly<Record<string, unknown>>, mapping: ClaimMapping = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { ...payload }
  delete out.tenant
  delete out.roles
  delete out.scope
  const tenant = pick(payload, mapping.tenant ?? 'tenant')
  const roles = pick(payload, mapping.roles ?? 'roles')
  const scope = pick(payload, mapping.scope ?? 'scope')
  if (tenant !== undefined) out.tenant = tenant
  if (roles !== undefined) out.roles = roles
  // A mapped scope claim may be an array (`scp`); the platform's own `scope` is a string and an
  // array there is an odd shape that assertClaims refuses.
  const join = mapping.scope !== undefined && Array.isArray(scope) && scope.every((s) => typeof s === 'string')
  if (scope !== undefined) out.scope = join ? scope.join(' ') : scope
  return out
}

/** Whether a route URL is in a list of exact paths and prefixes ending in `*`. */
export function excluded (patterns: readonly string[], url: string): boolean {
  for (const pattern of patterns) {
    if (pattern.endsWith('*') ? url.startsWith(pattern.slice(0, -1)) : url === pattern) return true
  }
  return false
}

type KeyGetter = (request: FastifyRequest, token: unknown) => Promise<string>

function keyIdOf (token: unknown): { kid: string, alg: string } {
  const { kid, alg } = (token as { header: { kid?: unknown, alg?: unknown } }).header
  if (typeof kid !== 'string' || kid === '' || typeof alg !== 'string') throw new UnauthorizedError(': the token has no key id (kid)')
  return { kid, alg }
}

// Node's own JWK import reads RSA, EC and Ed25519 (OKP) keys.
const pems = new WeakMap<object, string>()
function pemOf (jwk: JsonWebKey): string {
  let pem = pems.get(jwk)
  if (pem === undefined) {
    pem = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string
    pems.set(jwk, pem)
  }
  return pem
}

function localKeys (set: { keys: readonly JsonWebKey[] }): KeyGetter {
  const byKid = new Map<string, { alg: unknown, pem: string }>()
  for (const jwk of Array.isArray(set.keys) ? set.keys : []) {
    if (typeof jwk.kid !== 'string' || jwk.kid === '') throw new InvalidOptionError('auth.jwks: every key needs a kid')
    try {
      byKid.set(jwk.kid, { alg: jwk.alg, pem: pemOf(jwk) })
    } catch {
      throw new InvalidOptionError(`auth.jwks: key ${jwk.kid} is not a public JWK`)
    }
  }
  if (byKid.size === 0) throw new InvalidOptionError('auth.jwks must hold at least one key ({ keys: [JWK…] })')
  return async (_request, token) => {
    const { kid, alg } = keyIdOf(token)
    const key = byKid.get(kid)
    if (key === undefined || (key.alg !== undefined && key.alg !== alg)) throw new UnauthorizedError(': unknown signing key')
    return key.pem
  }
}

interface PublishedKey { alg: unknown, kty: unknown, pem: string }

/** The JWK key type an algorithm signs with (a key without `alg` is picked by its type). */
const KEY_TYPES: ReadonlyArray<readonly [RegExp, string]> = [[/^(RS|PS)\d+$/, 'RSA'], [/^ES\d+K?$/, 'EC'], [/^EdDSA$/, 'OKP']]
const ktyOf = (alg: string): string | undefined => KEY_TYPES.find(([pattern]) => pattern.test(alg))?.[1]

/** The usable signing keys of a fetched set, by kid (keys without kid, for encryption or unreadable are left out). */
function keysOf (body: unknown): Map<string, PublishedKey[]> {
  const keys = (body as { keys?: unknown } | null)?.keys
  if (!Array.isArray(keys)) throw new Error('the JWKS response has no keys array')
  const byKid = new Map<string, PublishedKey[]>()
  for (const jwk of keys as JsonWebKey[]) {
    if (typeof jwk !== 'object' || jwk === null || typeof jwk.kid !== 'string' || jwk.kid === '' || jwk.use === 'enc') continue
    let pem: string
    try {
      pem = pemOf(jwk)
    } catch {
      continue // a key Node cannot read as a public key (e.g. a symmetric one)
    }
    byKid.set(jwk.kid, [...(byKid.get(jwk.kid) ?? []), { alg: jwk.alg, kty: jwk.kty, pem }])
  }
  return byKid
}

/**
 * Keys fetched from `jwksUrl`, the whole set kept by kid (jose's `createRemoteJWKSet` model). A kid
 * in the last fetched set is always served, even past `jwksTtl` (a refresh then runs in the
 * background). A kid not in it refetches the set, and any fetch starts at most once per
 * `jwksCooldown`: made-up kids cannot make every request fetch, cannot refuse known keys, and
 * cannot extend the window (only a fetch starts one), so a newly published key is picked up by the
 * first fetch after it, whoever causes it.
 */
function jwksKeys (options: AuthOptions): KeyGetter {
  let url: URL
  try {
    url = new URL(options.jwksUrl as string)
  } catch {
    throw new InvalidOptionError(`auth.jwksUrl must be an absolute URL, got ${JSON.stringify(options.jwksUrl)}`)
  }
  const ttl = options.jwksTtl ?? 600_000
  const cooldown = options.jwksCooldown ?? 5000
  let keys = new Map<string, PublishedKey[]>()
  let fetchedAt = -Infinity // the last successful fetch
  let startedAt = -Infinity // the last fetch started, successful or not
  let pending: Promise<void> | undefined

  // One fetch at a time (callers join `pending`); it never rejects.
  const refresh = (request: FastifyRequest): void => {
    startedAt = Date.now()
    pending = (async () => {
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(5000), headers: { accept: 'application/json' } })
        if (!response.ok) throw new Error(`the JWKS URL answered ${response.status}`)
        keys = keysOf(await response.json())
        fetchedAt = Date.now()
      } catch (err) {
        // The last set stays in use; the next fetch waits for the cooldown.
        request.log.warn({ err }, 'auth: fetching the JWKS failed')
      }
    })().finally(() => { pending = undefined }) // always a later tick, after `pending` is set
  }
  const mayFetch = (): boolean => Date.now() - startedAt >= cooldown

  const find = (kid: string, alg: string): string | undefined => {
    const published = keys.get(kid) ?? []
    return (published.find((key) => key.alg === alg) ?? published.find((key) => key.alg === undefined && key.kty === ktyOf(alg)))?.pem
  }

  return async (request, token) => {
    const { kid, alg } = keyIdOf(token)
    let pem = find(kid, alg)
    if (pem !== undefined) {
      if (Date.now() - fetchedAt >= ttl && pending === undefined && mayFetch()) refresh(request) // in the background
      return pem
    }
    if (pending === undefined && mayFetch()) refresh(request)
    if (pending !== undefined) await pending // this fetch, or one under way: its set answers
    pem = find(kid, alg)
    if (pem === undefined) throw new UnauthorizedError(': unknown signing key')
    return pem
  }
}

async function platformAuth (fastify: FastifyInstance, options: AuthOptions): Promise<void> {
  const sources = [options.secret, options.publicKey, options.jwksUrl, options.jwks].filter((v) => v !== undefined)
  if (sources.length !== 1) throw new InvalidOptionError('auth needs exactly one of secret (JWT_SECRET), publicKey (JWT_PUBLIC_KEY), jwks or jwksUrl')
  if (options.secret !== undefined && (typeof options.secret !== 'string' || options.secret.length < 16)) {
    throw new InvalidOptionError('auth.secret (JWT_SECRET) must be a string of at least 16 characters')
  }
  if (options.publicKey !== undefined && (typeof options.publicKey !== 'string' || !options.publicKey.includes('-----BEGIN'))) {
    throw new InvalidOptionError('auth.publicKey (JWT_PUBLIC_KEY) must be a PEM public key')
  }
  const issuers = [options.issuer].flat()
  const audiences = [options.audience].flat()
  if (issuers.length === 0 || issuers.some((i) => typeof i !== 'string' || i === '')) throw new InvalidOptionError('auth.issuer must name the accepted issuer(s)')
  if (audiences.length === 0 || audiences.some((a) => typeof a !== 'string' || a === '')) throw new InvalidOptionError('auth.audience must name the accepted audience(s)')
  const routes = options.routes ?? 'required'
  if (routes !== 'required' && routes !== 'optional') throw new InvalidOptionError('auth.routes must be "required" or "optional"')
  const exclude = Object.freeze([...(options.exclude ?? DEFAULT_AUTH_EXCLUDE)])
  const mapping = options.claims ?? {}

  const { default: fastifyJwt } = await optionalPeer('auth', '@fastify/jwt', async () => await import('@fastify/jwt'))
  const cache = options.cache ?? 10_000
  const secret = options.jwksUrl !== undefined
    ? jwksKeys(options)
    : options.jwks !== undefined
      ? localKeys(options.jwks)
      : options.publicKey !== undefined ? { public: options.publicKey, ...(options.privateKey === undefined ? {} : { private: options.privateKey }) } : options.secret as string
  const signs = options.secret !== undefined || options.privateKey !== undefined
  await fastify.register(fastifyJwt, {
    secret,
    ...(signs ? { sign: { iss: issuers[0], aud: audiences[0], expiresIn: '1h' } } : {}),
    decode: { complete: true },
    verify: {
      allowedIss: issuers,
      allowedAud: audiences,
      requiredClaims: ['iss', 'aud', 'exp', 'sub'],
      // Services send the same token on every call; a signature costs more than the look-up it
      // guards. Bounded, and never past each token's own expiry.
      ...(cache > 0 ? { cache, cacheTTL: 60_000 } : {})
    }
  })
  fastify.decorateRequest('claims', null)

  fastify.addHook('onRequest', async (request) => {
    const route = request.routeOptions.url
    if (route === undefined) return // no route: the 404 says so, with or without a token
    const rule = request.routeOptions.config.auth
    if (rule === false || (rule === undefined && excluded(exclude, route))) return
    if (request.headers.authorization === undefined) {
      if (rule === undefined && routes === 'optional') return
      throw new UnauthorizedError(': send Authorization: Bearer <token>')
    }
    let claims: PlatformClaims
    try {
      const payload = await request.jwtVerify<Record<string, unknown>>()
      // Shape, not just signature: roles an array of strings, scope a string, tenant a valid id.
      claims = assertClaims(mapClaims(payload, mapping))
    } catch {
      throw new UnauthorizedError(': the token is not valid here')
    }
    request.claims = claims
    if (rule === undefined) return
    for (const scope of [rule.scope ?? []].flat()) {
      if (!hasScope(claims, scope)) throw new ForbiddenError(`the token lacks the ${scope} scope`)
    }
    if (rule.roles !== undefined && !rule.roles.some((role) => hasRole(claims, role))) {
      throw new ForbiddenError(`one of these roles is needed: ${rule.roles.join(', ')}`)
    }
    if (rule.admin === true && (claims.tenant !== undefined || !hasRole(claims, 'platform-admin'))) {
      throw new ForbiddenError('platform-admin only')
    }
  })
}

/**
 * Verifies bearer tokens (shared secret, public key or an identity provider's JWKS), maps the
 * issuer's claims to the platform's (`tenant`, `roles`, `scope`), checks their shape, and each
 * route's `config.auth` (scopes, roles, platform admin). The verified claims are `request.claims`;
 * the multitenant plugin reads the tenant claim from there and answers TENANT_MISMATCH when the
 * request names another tenant.
 */
export const authPlugin: FastifyPluginAsync<AuthOptions> = fp(platformAuth, { fastify: '5.x', name: '@platform/multitenant/auth' })
