import createError from '@fastify/error'
import { isValidTenantId } from './tenant-id.ts'

/** The claims of a platform token (DESIGN: "Tokens"), once checked by `assertClaims`. */
export interface PlatformClaims {
  sub: string
  iss: string
  aud: string | string[]
  exp: number
  /** Absent on platform tokens. */
  tenant?: string
  roles: string[]
  /** Space-separated scopes. */
  scope: string
  [claim: string]: unknown
}

export const UnauthorizedError = createError<'UNAUTHORIZED', 401, [string?]>(
  'UNAUTHORIZED', 'Authentication required%s', 401, undefined, false)

const fail = (why: string): never => { throw new UnauthorizedError(`: ${why}`) }

/**
 * Checks the shape of a verified token's claims and fails closed (`UNAUTHORIZED`): `sub`, `iss`,
 * `aud` and `exp` present; `roles` an array of strings (a string such as "not-platform-admin"
 * must not pass a role check as a substring); `scope` a string; `tenant` a valid tenant id.
 * The signature, issuer, audience and expiry are the verifier's job; this is about shape.
 */
export function assertClaims (claims: unknown): PlatformClaims {
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) return fail('the token has no claims')
  const c = claims as Record<string, unknown>
  if (typeof c.sub !== 'string' || c.sub === '') fail('the token has no subject (sub)')
  if (typeof c.iss !== 'string' || c.iss === '') fail('the token has no issuer (iss)')
  if (!(typeof c.aud === 'string' && c.aud !== '') && !(Array.isArray(c.aud) && c.aud.length > 0 && c.aud.every((a) => typeof a === 'string'))) fail('the token has no audience (aud)')
  if (typeof c.exp !== 'number' || !Number.isFinite(c.exp)) fail('the token has no expiry (exp)')
  if (c.roles !== undefined && !(Array.isArray(c.roles) && c.roles.every((r) => typeof r === 'string'))) fail('roles must be an array of strings')
  if (c.scope !== undefined && typeof c.scope !== 'string') fail('scope must be a string')
  if (c.tenant !== undefined && !isValidTenantId(c.tenant)) fail('tenant must be a valid tenant id')
  return { ...c, roles: (c.roles as string[] | undefined) ?? [], scope: (c.scope as string | undefined) ?? '' } as PlatformClaims
}

/** True when the claims grant `scope` (a whole word of the space-separated list). */
export function hasScope (claims: Pick<PlatformClaims, 'scope'>, scope: string): boolean {
  return claims.scope.split(' ').includes(scope)
}

/** True when the claims carry `role` (an exact element of `roles`). */
export function hasRole (claims: Pick<PlatformClaims, 'roles'>, role: string): boolean {
  return claims.roles.includes(role)
}

/**
 * Who acts with these claims, for records and logs: the actor of a token a service obtained for
 * a tenant (`act.sub`, `svc:<name>`), else the token's subject. `undefined` when there is neither.
 */
export function actorOf (claims: Readonly<Record<string, unknown>>): string | undefined {
  const act = claims.act
  if (typeof act === 'object' && act !== null && typeof (act as { sub?: unknown }).sub === 'string' && (act as { sub: string }).sub !== '') return (act as { sub: string }).sub
  return typeof claims.sub === 'string' && claims.sub !== '' ? claims.sub : undefined
}
