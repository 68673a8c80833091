import { requireTenant } from './context.ts'
import { InvalidOptionError } from './errors.ts'
import type { Tenant } from './types.ts'

type Plain = Record<string, unknown>

/** Deep partial: what a tenant's record may override. */
export type ConfigOverrides<T> = { [K in keyof T]?: T[K] extends Plain ? ConfigOverrides<T[K]> : T[K] }

export interface TenantConfigOptions<T extends Plain> {
  /** The key under the tenant record's `config`, e.g. `'comm'` for `config.comm`. */
  service: string
  /** The values a tenant gets for every setting its record leaves out. */
  defaults: T
  /**
   * Checks (and may normalise) the merged settings; throw to refuse them. The result is cached
   * per tenant record version. Default: the merged value as is.
   */
  validate?: (merged: T, tenant: Tenant) => T
}

export interface TenantConfig<T extends Plain> {
  readonly service: string
  readonly defaults: Readonly<T>
  /** The current tenant's settings (throws `TENANT_REQUIRED` outside a tenant scope). */
  get (): Readonly<T>
  /** A given tenant's settings. */
  for (tenant: Tenant): Readonly<T>
}

function isPlain (value: unknown): value is Plain {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

/** Defaults overlaid with overrides: objects merge key by key, anything else (arrays too) replaces. */
export function mergeConfig<T extends Plain> (defaults: T, overrides: unknown): T {
  if (!isPlain(overrides)) return structuredClone(defaults)
  const out: Plain = structuredClone(defaults)
  for (const [key, value] of Object.entries(overrides)) {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype' || value === undefined) continue
    const base = out[key]
    out[key] = isPlain(base) && isPlain(value) ? mergeConfig(base, value) : structuredClone(value)
  }
  return out as T
}

/**
 * A typed, per-service view of tenant configuration: the service's defaults merged with the
 * tenant record's `config.<service>`, computed once per record and frozen.
 */
export function defineTenantConfig<T extends Plain> (options: TenantConfigOptions<T>): TenantConfig<T> {
  const { service, validate } = options
  if (typeof service !== 'string' || service === '') throw new InvalidOptionError('service must be a non-empty string')
  if (!isPlain(options.defaults)) throw new InvalidOptionError('defaults must be an object')
  const defaults = deepFreeze(structuredClone(options.defaults))
  const cache = new WeakMap<Tenant, Readonly<T>>()
  const forTenant = (tenant: Tenant): Readonly<T> => {
    let merged = cache.get(tenant)
    if (merged === undefined) {
      const raw = mergeConfig(defaults, tenant.config?.[service])
      merged = deepFreeze(validate === undefined ? raw : validate(raw, tenant))
      cache.set(tenant, merged)
    }
    return merged
  }
  return {
    service,
    defaults,
    get: () => forTenant(requireTenant()),
    for: forTenant
  }
}
