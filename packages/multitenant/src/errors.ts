import createError from '@fastify/error'

// Every error carries a stable `code` (the contract in DESIGN.md) and an HTTP `statusCode`.
// Callers match on `code`. Messages name at most the caller's own, already validated tenant id:
// never raw input, SQL, stacks or another tenant's data. Stack capture is off for the errors
// that happen on the request hot path.

export const TenantRequiredError = createError<'TENANT_REQUIRED', 400, []>(
  'TENANT_REQUIRED', 'A tenant is required: send X-Tenant-ID or use a tenant host', 400, undefined, false)

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

export const InvalidOptionError = createError<'MT_INVALID_OPTION', 500, [string]>(
  'MT_INVALID_OPTION', 'Invalid option: %s', 500)

/** The error codes this library produces, with their HTTP status. */
export const ERROR_CODES = {
  TENANT_REQUIRED: 400,
  TENANT_INVALID: 400,
  TENANT_NOT_FOUND: 404,
  TENANT_SUSPENDED: 403,
  TENANT_MISMATCH: 403,
  TENANT_UNAVAILABLE: 503,
  TENANT_PROVISIONING: 503,
  RATE_LIMITED: 429,
  UNAUTHORIZED: 401,
  SERVICE_UNAVAILABLE: 503
} as const

export type ErrorCode = keyof typeof ERROR_CODES
