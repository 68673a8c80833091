import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { UnauthorizedError } from '../errors.ts'
import type { ServiceStore } from '../services.ts'

export interface CredentialCheckOptions {
  services: ServiceStore
  /** How long a live credential's check is remembered, in ms (default 5 s; revocation takes effect within it). */
  ttl?: number
  /** Credentials remembered at most (default 1,000). */
  max?: number
}

/**
 * A service credential (`svc:<name>`, no tenant) is a bearer token that lives a year: on every
 * route, not just the token exchange, it must still be registered and not revoked. Live answers
 * are remembered briefly; the exchange itself always asks the database.
 */
async function credentialCheck (app: FastifyInstance, options: CredentialCheckOptions): Promise<void> {
  const ttl = options.ttl ?? 5000
  const max = options.max ?? 1000
  const live = new Map<string, number>()
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const claims = request.claims
    if (claims === null || claims.tenant !== undefined || !claims.sub.startsWith('svc:')) return
    const id = typeof claims.jti === 'string' ? claims.jti : ''
    const key = `${claims.sub} ${id}`
    if ((live.get(key) ?? 0) > Date.now()) return
    if (await options.services.live(claims.sub.slice(4), id) === null) throw new UnauthorizedError()
    if (live.size >= max) live.clear()
    live.set(key, Date.now() + ttl)
  })
}

export const serviceCredentialCheck = fp(credentialCheck, { fastify: '5.x', name: 'registry-credential-check', dependencies: ['@platform/multitenant/auth'] })
