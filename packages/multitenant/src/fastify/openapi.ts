// OpenAPI conventions for a platform service, applied to every route as it is added, so a route
// only states what is particular to it: an operationId and a tag from its path, the platform's
// error shape as a shared component, the error answers every tenant route can give (400, 401, 403,
// 404, 503; 413 and 415 where it takes a body), and `security: []` on routes without a token.
import type { FastifyInstance, RouteOptions } from 'fastify'

/** The platform's error body (`platformErrorHandler`), as a shared schema: `{ $ref: 'PlatformError#' }`. */
export const ERROR_SCHEMA = Object.freeze({
  $id: 'PlatformError',
  type: 'object',
  description: 'Fastify\'s error shape plus a stable code (VALIDATION_FAILED, TENANT_NOT_FOUND, …). Never SQL, stack traces or another tenant\'s data.',
  required: ['statusCode', 'code', 'error', 'message'],
  properties: {
    statusCode: { type: 'integer', examples: [404] },
    code: { type: 'string', pattern: '^[A-Z][A-Z0-9_]*$', examples: ['TENANT_NOT_FOUND'] },
    error: { type: 'string', examples: ['Not Found'] },
    message: { type: 'string', examples: ['Tenant not found'] }
  }
})

const REASONS: Record<number, string> = {
  304: 'Not modified (the ETag in If-None-Match is current)',
  400: 'The request is not valid (VALIDATION_FAILED, TENANT_REQUIRED, TENANT_INVALID)',
  401: 'No valid bearer token (UNAUTHORIZED)',
  403: 'Not allowed: scope, role, another tenant, or a suspended tenant (FORBIDDEN, TENANT_MISMATCH, TENANT_SUSPENDED)',
  404: 'Not found (NOT_FOUND, TENANT_NOT_FOUND)',
  409: 'Conflicts with the current state (CONFLICT)',
  412: 'The version in If-Match is stale (PRECONDITION_FAILED)',
  413: 'The body is too large (PAYLOAD_TOO_LARGE)',
  415: 'The body is not JSON (UNSUPPORTED_MEDIA_TYPE)',
  422: 'The Idempotency-Key was used with another request (IDEMPOTENCY_KEY_REUSED)',
  429: 'Over a limit (RATE_LIMITED), with Retry-After',
  503: 'A dependency is unavailable (SERVICE_UNAVAILABLE, TENANT_UNAVAILABLE), with Retry-After'
}

/** `@fastify/swagger`'s `refResolver`: shared schemas keep their `$id` as their component name (`PlatformError`). */
export const openApiRefResolver = Object.freeze({ buildLocalReference: (json: { $id?: unknown }): string => String(json.$id) })

/** An error answer for `status` in a route's `response`, with the shared error schema. */
export function errorResponse (status: number, description = REASONS[status] ?? 'Error'): Record<string, unknown> {
  return { description, $ref: 'PlatformError#' }
}

/** `GET /v1/tenants/:id/domains` → `getTenantsByIdDomains` (the version segment left out). */
export function operationIdOf (method: string, url: string): string {
  const words = url.split('/').filter((part) => part !== '' && !/^v\d+$/.test(part)).map((part) => {
    const name = part.startsWith(':') ? `by-${part.slice(1)}` : part
    return name.split(/[^A-Za-z0-9]+/).filter(Boolean).map((w) => w[0]?.toUpperCase() + w.slice(1)).join('')
  })
  return method.toLowerCase() + words.join('')
}

const tagOf = (url: string): string => url.split('/').filter((part) => part !== '' && !/^v\d+$/.test(part))[0] ?? 'operations'

/**
 * Adds the shared error schema and an `onRoute` hook that fills in each route's operationId, tag,
 * summary (a fallback), `security: []` when `config.auth` is false, and the common error answers.
 * Call it before the routes are added. `operations` names paths that are neither tenant nor token
 * routes (health, readiness, metrics): they get only their own answers.
 */
export function openApiConventions (app: FastifyInstance, options: { operations?: string[] } = {}): void {
  app.addSchema(ERROR_SCHEMA)
  const operations = new Set(options.operations ?? ['/health', '/ready', '/metrics'])
  app.addHook('onRoute', (route: RouteOptions) => {
    const schema = (route.schema ??= {}) as Record<string, unknown>
    if (schema.hide === true) return
    const method = [route.method].flat()[0] as string
    schema.operationId ??= operationIdOf(method, route.url)
    schema.tags ??= [operations.has(route.url) ? 'operations' : tagOf(route.url)]
    schema.summary ??= `${method} ${route.url}`
    const auth = (route.config as { auth?: unknown } | undefined)?.auth
    if (auth === false || operations.has(route.url)) schema.security ??= []
    const response = (schema.response ??= {}) as Record<string, unknown>
    // A route that states no success answer sends a JSON object.
    if (!Object.keys(response).some((status) => /^[23]/.test(status))) response[200] = { description: 'OK', type: 'object', additionalProperties: true }
    if (operations.has(route.url)) return
    const statuses = [400, ...(auth === false ? [] : [401, 403]), 404, 503]
    if (schema.body !== undefined || ['POST', 'PUT', 'PATCH'].includes(method)) statuses.push(413, 415)
    for (const status of statuses) response[status] ??= errorResponse(status)
  })
}
