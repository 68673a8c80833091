import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { PlatformClaims } from '@platform/multitenant'
import { UnauthorizedError } from '../errors.ts'
import type { ServiceStore } from '../services.ts'

export interface CredentialCheckOptions {
  services: ServiceStore
}

/**
 * A service credential (`svc:<name>`, no tenant) is a bearer token that lives a year: on every
 * route, not just the token exchange, it must still be registered and not revoked, so a
 * revocation takes effect on the next request (one primary-key look-up; services cache what
 * they read from the registry, so these requests are few).
 */
async function credentialCheck (app: FastifyInstance, options: CredentialCheckOptions): Promise<void> {
  app.addHook('onRequest', async (request: FastifyRequest) => {
    // Undefined, not null, on routes of contexts made before the auth plugin (swagger-ui's).
    const claims = request.claims as PlatformClaims | null | undefined
    if (claims == null || claims.tenant !== undefined || !claims.sub.startsWith('svc:')) return
    const id = typeof claims.jti === 'string' ? claims.jti : ''
    if (await options.services.live(claims.sub.slice(4), id) === null) throw new UnauthorizedError()
  })
}

export const serviceCredentialCheck = fp(credentialCheck, { fastify: '5.x', name: 'registry-credential-check', dependencies: ['@platform/multitenant/auth'] })
