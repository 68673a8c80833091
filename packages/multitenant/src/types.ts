export type TenantStatus = 'provisioning' | 'active' | 'trial' | 'suspended' | 'archived'
export type TenantTier = 'free' | 'standard' | 'premium'

export interface TenantDomain {
  domain: string
  primary: boolean
}

export interface TenantLimits {
  messagesPerMinute?: number
  messagesPerDay?: number
  /** Requests per minute for the HTTP rate limit; the tier's default when absent. */
  requestsPerMinute?: number
  [name: string]: number | undefined
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }

/** A tenant as the registry publishes it (DESIGN.md "Tenant record"). */
export interface Tenant {
  id: string
  name: string
  status: TenantStatus
  tier: TenantTier
  schema: string
  database: string
  domains: TenantDomain[]
  config: Record<string, Record<string, JsonValue> | undefined>
  limits: TenantLimits
  metadata: Record<string, JsonValue>
  contactEmail?: string | null
  createdAt: string
  updatedAt: string
  version: number
}

/**
 * Where the Fastify plugin looks tenants up. The registry client implements it; tests and
 * single-process setups can use an in-memory one. Either method may answer synchronously.
 * Resolve `null` for an unknown tenant; throw (`TENANT_UNAVAILABLE`) when the answer cannot be had.
 */
export interface TenantProvider {
  getTenant (id: string): Tenant | null | Promise<Tenant | null>
  getTenantByHost? (host: string): Tenant | null | Promise<Tenant | null>
}
