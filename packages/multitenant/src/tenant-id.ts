import { TenantInvalidError } from './errors.ts'

/** DESIGN.md: 1–56 chars, lower-case letters, digits and inner hyphens (a DNS label). */
export const TENANT_ID_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,54}[a-z0-9])?$/

/** Ids that would collide with infrastructure host names or schemas. */
export const RESERVED_TENANT_IDS: ReadonlySet<string> = new Set([
  'www', 'api', 'admin', 'app', 'public', 'system', 'root', 'default', 'internal', 'static',
  'assets', 'docs', 'health', 'metrics'
])

export const SCHEMA_PREFIX = 'tenant_'

/** True when `value` is a well-formed, non-reserved tenant id. */
export function isValidTenantId (value: unknown): value is string {
  return typeof value === 'string' && value.length <= 56 && TENANT_ID_PATTERN.test(value) &&
    !RESERVED_TENANT_IDS.has(value)
}

/** Returns `value` when it is a valid tenant id, otherwise throws `TENANT_INVALID`. */
export function assertTenantId (value: unknown): string {
  if (isValidTenantId(value)) return value
  throw new TenantInvalidError(typeof value === 'string' && RESERVED_TENANT_IDS.has(value) ? ': the id is reserved' : '')
}

/**
 * The schema that holds a tenant's tables: `tenant_` + id with `-` replaced by `_`. Injective
 * (ids contain no `_`) and at most 63 bytes (PostgreSQL's identifier limit).
 */
export function schemaName (tenantId: string): string {
  return SCHEMA_PREFIX + assertTenantId(tenantId).replaceAll('-', '_')
}

/** Quotes a validated tenant schema name as a SQL identifier. */
export function quotedSchema (tenantId: string): string {
  return `"${schemaName(tenantId)}"`
}
