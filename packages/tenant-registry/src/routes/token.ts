import type { FastifyInstance } from 'fastify'
import { errorResponse } from '@platform/multitenant/fastify'
import type { PlatformClaims } from '@platform/multitenant'
import { ForbiddenError, ValidationError } from '../errors.ts'
import { ACCESS_TOKEN_TYPE, exchangeToken, TOKEN_EXCHANGE_GRANT, type ExchangeRequest } from '../exchange.ts'
import { AUDIENCE } from '../services.ts'
import { TENANT_ID } from './schemas.ts'

export interface TokenRouteOptions {
  /** Lifetime of exchanged tokens in seconds (≤ 300). */
  ttl: number
}

const exchangeBody = {
  type: 'object',
  additionalProperties: false,
  required: ['tenant', 'audience'],
  description: 'The credential is the bearer token (or subject_token, the same token). RFC 8693 fields are accepted with their only meaning here.',
  examples: [{ tenant: 'acme', audience: 'comm', scope: 'messages:send' }],
  properties: {
    tenant: TENANT_ID,
    audience: { type: 'string', pattern: AUDIENCE.source, maxLength: 128, description: 'The service the token is for (its aud)' },
    scope: { type: 'string', maxLength: 2000, pattern: '^[a-z0-9:_ -]*$', description: 'Space-separated; default: every scope the service is registered for' },
    roles: { type: 'array', maxItems: 10, items: { type: 'string', maxLength: 64 }, description: 'Only ["service"]: an exchanged token never carries another role' },
    grant_type: { type: 'string', const: TOKEN_EXCHANGE_GRANT },
    subject_token: { type: 'string', maxLength: 8192 },
    subject_token_type: { type: 'string', enum: [ACCESS_TOKEN_TYPE, 'urn:ietf:params:oauth:token-type:jwt'] },
    requested_token_type: { type: 'string', const: ACCESS_TOKEN_TYPE }
  }
} as const

const answer = {
  type: 'object',
  description: 'A tenant-bound token: { sub: "svc:<name>", tenant, roles: ["service"], scope, aud, act: { sub } }',
  properties: {
    access_token: { type: 'string' },
    token_type: { type: 'string', enum: ['Bearer'] },
    expires_in: { type: 'integer' },
    issued_token_type: { type: 'string' },
    scope: { type: 'string' }
  }
} as const

const keySet = {
  type: 'object',
  description: 'The public keys tokens are signed with (RFC 7517), picked by kid',
  properties: { keys: { type: 'array', items: { type: 'object', additionalProperties: true, properties: { kid: { type: 'string' }, kty: { type: 'string' }, alg: { type: 'string' }, use: { type: 'string' } } } } }
} as const

/** `POST /v1/token`: a service credential + tenant + audience → a short-lived tenant-bound token. */
export async function tokenRoutes (app: FastifyInstance, options: TokenRouteOptions): Promise<void> {
  app.post('/token', {
    config: { auth: { scope: 'tokens:exchange' } },
    schema: {
      tags: ['tokens'],
      security: [{ bearer: [] }],
      summary: 'Token exchange: a service credential, a tenant and an audience → a short-lived tenant-bound token',
      body: exchangeBody,
      response: { 200: answer, ...Object.fromEntries([400, 401, 403, 404, 503].map((s) => [s, errorResponse(s)])) }
    }
  }, async (request, reply) => {
    const body = request.body as ExchangeRequest & { subject_token?: string }
    if (body.subject_token !== undefined && `Bearer ${body.subject_token}` !== request.headers.authorization) {
      throw new ValidationError('subject_token must be the bearer token (the service credential)')
    }
    if (app.issuer === null) throw new ForbiddenError('this registry holds no signing key (JWT_PRIVATE_KEY): it verifies tokens only')
    const token = await exchangeToken({ services: app.services, tenants: app.tenants, issue: app.issuer, ttl: options.ttl }, request.claims as PlatformClaims, body)
    request.log.info({ service: request.claims?.sub, tenant: body.tenant, audience: body.audience, scope: token.scope }, 'token exchanged')
    // RFC 6749 §5.1: token answers are not stored by caches.
    return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send(token)
  })
}

/** `GET /.well-known/jwks.json`: the registry's public signing keys, for every verifier. */
export async function jwksRoute (app: FastifyInstance, options: { jwks: { keys: unknown[] }, maxAge: number }): Promise<void> {
  app.get('/.well-known/jwks.json', {
    config: { auth: false },
    schema: { tags: ['tokens'], operationId: 'getJwks', summary: 'The registry\'s public signing keys (JWKS)', response: { 200: keySet } }
  }, async (_request, reply) => {
    return reply.header('cache-control', `public, max-age=${options.maxAge}`).send(options.jwks)
  })
}
