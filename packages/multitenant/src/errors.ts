import createError from '@fastify/error'

// Every error carries a stable `code` (the contract in DESIGN.md) and an HTTP `statusCode`.
// Callers match on `code`. Messages name at most the caller's own, already validated tenant id:
// never raw input, SQL, stacks or another tenant's data. Stack capture is off for the errors
// that happen on the request hot path.

// Messages say what is wrong, not what an HTTP client should do: the same errors are raised in
// jobs and scripts. The Fastify plugin adds the request's side where it raises them.
export const TenantRequiredError = createError<'TENANT_REQUIRED', 400, [string?]>(
  'TENANT_REQUIRED', 'A tenant is required%s', 400, undefined, false)

/** The request-side detail of TENANT_REQUIRED. */
export const REQUEST_NAMES_NO_TENANT = ': send X-Tenant-ID or use a tenant host'
/** The code-side detail of TENANT_REQUIRED. */
export const NO_TENANT_IN_SCOPE = ': no tenant is in scope here (run the code inside runAsTenant or a tenant request)'

export const TenantInvalidError = createError<'TENANT_INVALID', 400, [string?]>(
  'TENANT_INVALID', 'The tenant id is not valid%s', 400, undefined, false)

export const TenantNotFoundError = createError<'TENANT_NOT_FOUND', 404, []>(
  'TENANT_NOT_FOUND', 'Tenant not found', 404, undefined, false)

export const TenantSuspendedError = createError<'TENANT_SUSPENDED', 403, []>(
  'TENANT_SUSPENDED', 'Tenant is suspended', 403, undefined, false)

export const TenantMismatchError = createError<'TENANT_MISMATCH', 403, []>(
  'TENANT_MISMATCH', 'The request names a different tenant than its token', 403, undefined, false)

export const TenantUnavailableError = createError<'TENANT_UNAVAILABLE', 503, []>(
  'TENANT_UNAVAILABLE', 'Tenant information is unavailable, try again later', 503, undefined, false)

export const TenantProvisioningError = createError<'TENANT_PROVISIONING', 503, []>(
  'TENANT_PROVISIONING', 'Tenant is being provisioned, try again shortly', 503, undefined, false)

export const RateLimitedError = createError<'RATE_LIMITED', 429, [number]>(
  'RATE_LIMITED', 'Rate limit exceeded, retry in %d seconds', 429, undefined, false)

/** A request body (or a value in it) that the service will not take; the message names the problem. */
export const ValidationFailedError = createError<'VALIDATION_FAILED', 400, [string]>(
  'VALIDATION_FAILED', '%s', 400, undefined, false)

export const InvalidOptionError = createError<'MT_INVALID_OPTION', 500, [string]>(
  'MT_INVALID_OPTION', 'Invalid option: %s', 500)

export const ForbiddenError = createError<'FORBIDDEN', 403, [string]>(
  'FORBIDDEN', 'Not allowed: %s', 403, undefined, false)

/** The registry could not be reached (network error, timeout, 5xx after retries). */
export const RegistryUnreachableError = createError<'MT_REGISTRY_UNREACHABLE', 503, [string, string]>(
  'MT_REGISTRY_UNREACHABLE', 'The tenant registry at %s cannot be reached: %s', 503)

/** The registry refused the service's token (401/403): configuration, not an outage. */
export const RegistryRefusedError = createError<'MT_REGISTRY_REFUSED', 500, [string]>(
  'MT_REGISTRY_REFUSED', 'The tenant registry refused the service token: %s', 500)

/** The registry answered something a registry does not answer. */
export const RegistryResponseError = createError<'MT_REGISTRY_RESPONSE', 502, [string]>(
  'MT_REGISTRY_RESPONSE', 'Unexpected answer from the tenant registry: %s', 502)

/** The error codes this library produces, with their HTTP status. */
export const ERROR_CODES = {
  TENANT_REQUIRED: 400,
  TENANT_INVALID: 400,
  TENANT_NOT_FOUND: 404,
  TENANT_SUSPENDED: 403,
  TENANT_MISMATCH: 403,
  TENANT_UNAVAILABLE: 503,
  TENANT_PROVISIONING: 503,
  VALIDATION_FAILED: 400,
  RATE_LIMITED: 429,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  SERVICE_UNAVAILABLE: 503
} as const

export type ErrorCode = keyof typeof ERROR_CODES

/**
 * The PostgreSQL error behind a failure (drizzle wraps driver errors; the PostgreSQL error is a
 * `cause`): its SQLSTATE code and message, nothing else. drizzle's own error carries the SQL text
 * and its parameters, which must reach neither answers nor logs.
 */
export function databaseError (err: unknown): { code: string, message: string } | undefined {
  for (let e = err; typeof e === 'object' && e !== null; e = (e as { cause?: unknown }).cause) {
    const { code, message } = e as { code?: unknown, message?: unknown }
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return { code, message: String(message) }
  }
  return undefined
}

const CONNECTION_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])

/**
 * A lost or unusable connection, rather than a statement that failed on a healthy one: the
 * socket's errors, postgres.js's `CONNECTION_*`/`CONNECT_TIMEOUT`, SQLSTATE classes 08 and 57P,
 * and the adapter's own `SERVICE_UNAVAILABLE`. Anywhere in the `cause` chain.
 */
export function isConnectionError (err: unknown): boolean {
  for (let e = err; typeof e === 'object' && e !== null; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && (code.startsWith('CONNECT') || code === 'SERVICE_UNAVAILABLE' || CONNECTION_CODES.has(code) ||
      code.startsWith('08') || code.startsWith('57P'))) return true
  }
  return false
}
