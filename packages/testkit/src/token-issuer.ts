// A stand-in for the registry's token exchange (`POST /v1/token`), on loopback, for tests of the
// code that calls it (the library's outgoing calls, service clients). Same request, answer, claims
// and error shapes as the registry's endpoint, so a test can swap it for the real registry.
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import { createSigner } from 'fast-jwt'

export type IssuerTenantStatus = 'active' | 'trial' | 'suspended' | 'archived' | 'purging' | 'provisioning'

export interface RegisteredService {
  /** `svc:<name>` in the issued tokens. */
  name: string
  /** Scopes it may use on a tenant's behalf. */
  scopes: string[]
  /** Audiences it may call. */
  audiences: string[]
}

export interface TokenIssuerOptions {
  /** HS256 secret the issued tokens are signed with (the services under test verify with it). */
  secret: string
  /** `iss` of issued tokens. Default: `'tenant-registry'`. */
  issuer?: string
  /** Credential (the service's bearer token) → its registration. */
  services: Record<string, RegisteredService>
  /** A tenant's status, or `null` for an unknown one. Default: every tenant is active. */
  tenant?: (id: string) => IssuerTenantStatus | null | Promise<IssuerTenantStatus | null>
  /** Lifetime of issued tokens in seconds (default 300). Mutable through `issuer.lifetime`. */
  lifetime?: number
}

export interface Exchange { service: string, tenant: string, audience: string, scope: string, token: string }

export interface TokenIssuer {
  url: string
  /** Every exchange answered with a token, in order. */
  readonly issued: Exchange[]
  /** Every request received, answered or refused. */
  requests: number
  lifetime: number
  close: () => Promise<void>
}

const ID = /^[a-z0-9](?:[a-z0-9-]{0,54}[a-z0-9])?$/

function refusal (statusCode: number, code: string, message: string): { statusCode: number, code: string, error: string, message: string } {
  const error = statusCode === 401 ? 'Unauthorized' : statusCode === 403 ? 'Forbidden' : statusCode === 404 ? 'Not Found' : 'Bad Request'
  return { statusCode, code, error, message }
}

/** Starts the exchange on 127.0.0.1 (a free port). Close it with `close()`. */
export async function startTokenIssuer (options: TokenIssuerOptions): Promise<TokenIssuer> {
  const app: FastifyInstance = Fastify()
  const sign = createSigner({ key: options.secret, algorithm: 'HS256', iss: options.issuer ?? 'tenant-registry' })
  const tenantStatus = options.tenant ?? (() => 'active')
  const state = { issued: [] as Exchange[], requests: 0, lifetime: options.lifetime ?? 300 }

  app.post('/v1/token', async (request, reply) => {
    state.requests++
    const auth = request.headers.authorization
    const service = auth?.startsWith('Bearer ') === true ? options.services[auth.slice(7)] : undefined
    if (service === undefined) return await reply.code(401).send(refusal(401, 'UNAUTHORIZED', 'Authentication required: a registered service\'s credential'))
    const body = request.body as { tenant?: unknown, audience?: unknown, scope?: unknown } | null
    if (typeof body?.tenant !== 'string' || !ID.test(body.tenant) || typeof body.audience !== 'string' || (body.scope !== undefined && typeof body.scope !== 'string')) {
      return await reply.code(400).send(refusal(400, 'VALIDATION_FAILED', 'tenant and audience are required'))
    }
    if (!service.audiences.includes(body.audience)) return await reply.code(403).send(refusal(403, 'FORBIDDEN', `the service may not call ${body.audience}`))
    const scopes = body.scope === undefined ? service.scopes : body.scope.split(' ').filter((s) => s !== '')
    const beyond = scopes.find((s) => !service.scopes.includes(s))
    if (beyond !== undefined) return await reply.code(403).send(refusal(403, 'FORBIDDEN', `the service may not use the ${beyond} scope`))
    const status = await tenantStatus(body.tenant)
    if (status === 'suspended') return await reply.code(403).send(refusal(403, 'TENANT_SUSPENDED', 'Tenant is suspended'))
    if (status !== 'active' && status !== 'trial') return await reply.code(404).send(refusal(404, 'TENANT_NOT_FOUND', 'Tenant not found'))
    const scope = scopes.join(' ')
    const sub = `svc:${service.name}`
    const token = sign({ sub, tenant: body.tenant, roles: ['service'], scope, aud: body.audience, act: { sub }, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + state.lifetime })
    state.issued.push({ service: service.name, tenant: body.tenant, audience: body.audience, scope, token })
    return { access_token: token, token_type: 'Bearer', expires_in: state.lifetime, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', scope }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return {
    url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`,
    get issued () { return state.issued },
    get requests () { return state.requests },
    set requests (n) { state.requests = n },
    get lifetime () { return state.lifetime },
    set lifetime (n) { state.lifetime = n },
    close: async () => { await app.close() }
  }
}
