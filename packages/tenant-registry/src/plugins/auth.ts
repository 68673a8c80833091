import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { assertClaims, hasRole, hasScope, TenantMismatchError } from '@platform/multitenant'
import type { JwtKeys } from '../config.ts'
import { ForbiddenError, UnauthorizedError } from '../errors.ts'

/** Claims of this platform's tokens (DESIGN.md "Tokens"). */
export interface Claims {
  sub: string
  tenant?: string
  roles?: string[]
  scope?: string
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: Claims
    user: Claims
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Scope the token must carry; `admin` also requires the platform-admin role. */
    auth?: { scope: string, admin?: boolean }
  }
}

export interface AuthOptions {
  keys: JwtKeys
  issuer: string
  audience: string
}

/** A tenant token may act on its own tenant only. */
export function assertOwnTenant (request: FastifyRequest, tenantId: string): void {
  const tenant = request.user.tenant
  if (tenant !== undefined && tenant !== tenantId) throw new TenantMismatchError()
}

async function auth (fastify: FastifyInstance, options: AuthOptions): Promise<void> {
  await fastify.register(fastifyJwt, {
    secret: 'secret' in options.keys ? options.keys.secret : { public: options.keys.publicKey, private: options.keys.privateKey ?? '' },
    sign: { iss: options.issuer, aud: options.audience, expiresIn: '1h' },
    // Verified tokens are cached (LRU, bounded by each token's own expiry): services send the
    // same token on every call, and checking a signature costs more than the look-up it guards.
    verify: { allowedIss: options.issuer, allowedAud: options.audience, requiredClaims: ['iss', 'aud', 'exp', 'sub'], cache: 10_000, cacheTTL: 60_000 }
  })
  fastify.addHook('onRequest', async (request) => {
    const rule = request.routeOptions.config.auth
    if (rule === undefined) return
    try {
      await request.jwtVerify()
    } catch {
      throw new UnauthorizedError()
    }
    // Shape, not just signature: roles an array of strings, scope a string, tenant a valid id.
    let claims
    try {
      claims = assertClaims(request.user)
    } catch {
      throw new UnauthorizedError()
    }
    if (!hasScope(claims, rule.scope)) throw new ForbiddenError(`the token lacks the ${rule.scope} scope`)
    if (rule.admin === true && (claims.tenant !== undefined || !hasRole(claims, 'platform-admin'))) {
      throw new ForbiddenError('platform-admin only')
    }
  })
}

export const authPlugin = fp(auth, { fastify: '5.x', name: 'registry-auth' })
