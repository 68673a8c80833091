// Token exchange (RFC 8693's shape): a registered service's credential, a tenant and an audience
// become a short-lived token bound to that tenant, carrying at most the registered scopes.
import { hasRole, TenantNotFoundError, TenantSuspendedError, TenantUnavailableError, type PlatformClaims } from '@platform/multitenant'
import { ForbiddenError, UnauthorizedError } from './errors.ts'
import { CREDENTIAL_ROLES, type ServiceStore } from './services.ts'
import type { TenantStore } from './tenants.ts'
import type { TokenIssuer } from './tokens.ts'

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'
/** Exchanged tokens live five minutes at most (DESIGN.md "Tokens"); callers cache and refresh them. */
export const MAX_EXCHANGED_TTL = 300

export interface ExchangeRequest {
  tenant: string
  audience: string
  /** Space-separated; default: every scope the service is registered for. */
  scope?: string
  /** Only `service` may be asked for: an exchanged token never carries another role. */
  roles?: string[]
}

export interface ExchangeAnswer {
  access_token: string
  token_type: 'Bearer'
  expires_in: number
  issued_token_type: typeof ACCESS_TOKEN_TYPE
  scope: string
}

export interface ExchangeDeps {
  services: ServiceStore
  tenants: TenantStore
  issue: TokenIssuer
  /** Lifetime of an exchanged token in seconds (≤ 300). */
  ttl: number
}

/**
 * The service a credential speaks for, or FORBIDDEN when the token is not a service credential
 * at all (a user's, a platform admin's, or an exchanged token): no tenant, no actor, exactly the
 * `service` role, a `svc:<name>` subject and a token id.
 */
export function credentialSubject (claims: PlatformClaims): { name: string, id: string } {
  const match = /^svc:([a-z0-9-]{1,40})$/.exec(claims.sub)
  const credential = match !== null && claims.tenant === undefined && claims.act === undefined && typeof claims.jti === 'string' &&
    claims.roles.length === CREDENTIAL_ROLES.length && hasRole(claims, 'service')
  if (!credential) throw new ForbiddenError('only a registered service\'s credential can be exchanged')
  return { name: (match as RegExpExecArray)[1] as string, id: claims.jti as string }
}

/** Checks the credential and the request against the registration and the tenant, then signs. */
export async function exchangeToken (deps: ExchangeDeps, claims: PlatformClaims, request: ExchangeRequest): Promise<ExchangeAnswer> {
  const { name, id } = credentialSubject(claims)
  if (request.roles !== undefined && request.roles.some((role) => role !== 'service')) {
    throw new ForbiddenError('an exchanged token carries the service role only')
  }
  const service = await deps.services.live(name, id)
  if (service === null) throw new UnauthorizedError()
  if (!service.audiences.includes(request.audience)) throw new ForbiddenError(`service ${name} is not registered to call ${request.audience}`)
  const asked = request.scope === undefined ? service.scopes : [...new Set(request.scope.split(' ').filter((s) => s !== ''))]
  const beyond = asked.find((scope) => !service.scopes.includes(scope))
  if (beyond !== undefined) throw new ForbiddenError(`service ${name} is not registered for the ${beyond} scope`)

  // The same status gate as every service's (DESIGN.md "Tenant record").
  const tenant = await deps.tenants.get(request.tenant)
  switch (tenant?.status as string | undefined) {
    case 'active':
    case 'trial':
    case 'moving':
      break
    case 'suspended':
      throw new TenantSuspendedError()
    case 'provisioning':
      throw new TenantUnavailableError() // 503 with Retry-After: being created right now
    default:
      throw new TenantNotFoundError()
  }

  const scope = asked.join(' ')
  const subject = `svc:${name}`
  const token = deps.issue({ sub: subject, tenant: request.tenant, roles: ['service'], scope, act: { sub: subject } }, deps.ttl, request.audience)
  return { access_token: token, token_type: 'Bearer', expires_in: deps.ttl, issued_token_type: ACCESS_TOKEN_TYPE, scope }
}
