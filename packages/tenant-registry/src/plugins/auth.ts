import type { FastifyInstance, FastifyRequest } from 'fastify'
import type {} from '@fastify/jwt' // app.jwt (registered by the library's auth) in this package's types
import fp from 'fastify-plugin'
import { TenantMismatchError } from '@platform/multitenant'
import { authPlugin } from '@platform/multitenant/fastify'
import type { KeyRing } from '../keys.ts'

/** Claims of this platform's tokens (DESIGN.md "Tokens"), as the registry issues them. */
export interface Claims {
  sub: string
  tenant?: string
  roles?: string[]
  scope?: string
}

export interface AuthOptions {
  keys: KeyRing
  issuer: string
  audience: string
}

/** A tenant token may act on its own tenant only. */
export function assertOwnTenant (request: FastifyRequest, tenantId: string): void {
  const tenant = request.claims?.tenant
  if (tenant !== undefined && tenant !== tenantId) throw new TenantMismatchError()
}

/**
 * The library's token verification (the same every service uses): every API route states its
 * scope in `config.auth` (`admin` also requires a platform token with the platform-admin role);
 * the operational routes have their own guard.
 */
async function auth (fastify: FastifyInstance, options: AuthOptions): Promise<void> {
  await fastify.register(authPlugin, {
    // Every published key verifies (a retiring one too), picked by the token's kid; the
    // development-only secret is the other way.
    ...(options.keys.secret !== undefined ? { secret: options.keys.secret } : { jwks: options.keys.jwks }),
    issuer: options.issuer,
    audience: options.audience,
    exclude: ['/health', '/ready', '/metrics', '/docs*', '/.well-known/jwks.json']
  })
}

export const registryAuth = fp(auth, { fastify: '5.x', name: 'registry-auth' })
