import createError from '@fastify/error'
import { requireTenant } from './context.ts'
import { InvalidOptionError } from './errors.ts'
import type { Tenant } from './types.ts'

type Plain = Record<string, unknown>

/** Deep partial: what a tenant's record may override. */
export type ConfigOverrides<T> = { [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object ? ConfigOverrides<T[K]> : T[K] }

/** A tenant's stored section that failed validation (computed once per record version). */
export const TenantConfigInvalidError = createError<'TENANT_CONFIG_INVALID', 500, [string, string, string]>(
  'TENANT_CONFIG_INVALID', 'The %s settings of tenant %s are not valid: %s', 500, undefined, false)

/** The answer of `check`: the settings a section gives, or every problem found in it. */
export type ConfigCheck<T> = { ok: true, value: Readonly<T> } | { ok: false, problems: string[] }

export interface TenantConfigOptions<T extends object> {
  /** The key under the tenant record's `config`, e.g. `'comm'` for `config.comm`. */
  service: string
  /** The values a tenant gets for every setting its record leaves out. Interfaces are fine. */
  defaults: T
  /**
   * Checks (and may normalise) the merged settings. Return the settings, or throw to refuse them
   * (the message is the problem), or return `{ problems: [...] }` to list several. The tenant is
   * absent when `check` runs before a write.
   */
  validate?: (merged: T, tenant: Tenant | undefined) => T | { problems: string[] }
  /**
   * Refuse keys that the defaults do not have (typos such as `emailFrm`). Default: true. Keys
   * under an object default that is empty (a map such as `providers`) are always allowed.
   */
  strict?: boolean
  /**
   * What a tenant whose stored section is not valid gets: `'throw'` (default) —
   * `TENANT_CONFIG_INVALID` from `get()`/`for()`, naming the problems — or `'defaults'`.
   * Either way `onInvalid` hears of it once per record version, never once per request.
   */
  invalid?: 'throw' | 'defaults'
  /** Told once per record version whose section is not valid (log it, count it). */
  onInvalid?: (tenant: Tenant, problems: string[]) => void
}

export interface TenantConfig<T extends object> {
  readonly service: string
  readonly defaults: Readonly<T>
  /** The current tenant's settings (throws `TENANT_REQUIRED` outside a tenant scope). */
  get (): Readonly<T>
  /** A given tenant's settings. */
  for (tenant: Tenant): Readonly<T>
  /**
   * Validates a section before it is written (the registry stores whatever it is sent and calls
   * no service back): the settings it would give, or every problem, each naming its key.
   */
  check (section: unknown): ConfigCheck<T>
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
export function mergeConfig<T extends object> (defaults: T, overrides: unknown): T {
  if (!isPlain(overrides)) return structuredClone(defaults)
  const out = structuredClone(defaults) as Plain
  for (const [key, value] of Object.entries(overrides)) {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype' || value === undefined) continue
    const base = out[key]
    out[key] = isPlain(base) && isPlain(value) ? mergeConfig(base, value) : structuredClone(value)
  }
  return out as T
}

/** Keys of `section` that `defaults` does not have, as dotted paths. */
function unknownKeys (defaults: Plain, section: Plain, path: string): string[] {
  const out: string[] = []
  // An empty object default is a map (names chosen by the tenant): anything goes beneath it.
  if (Object.keys(defaults).length === 0) return out
  for (const [key, value] of Object.entries(section)) {
    const at = path === '' ? key : `${path}.${key}`
    if (!Object.hasOwn(defaults, key)) out.push(`${at} is not a setting`)
    else if (isPlain(defaults[key]) && isPlain(value)) out.push(...unknownKeys(defaults[key], value, at))
  }
  return out
}

/**
 * A typed, per-service view of tenant configuration: the service's defaults merged with the
 * tenant record's `config.<service>`, validated and frozen once per record version.
 */
export function defineTenantConfig<T extends object> (options: TenantConfigOptions<T>): TenantConfig<T> {
  const { service, validate, onInvalid } = options
  if (typeof service !== 'string' || service === '') throw new InvalidOptionError('service must be a non-empty string')
  if (!isPlain(options.defaults)) throw new InvalidOptionError('defaults must be an object')
  const strict = options.strict ?? true
  const invalid = options.invalid ?? 'throw'
  if (invalid !== 'throw' && invalid !== 'defaults') throw new InvalidOptionError('invalid must be "throw" or "defaults"')
  const defaults = deepFreeze(structuredClone(options.defaults)) as T & Plain

  const evaluate = (section: unknown, tenant: Tenant | undefined): ConfigCheck<T> => {
    if (section !== undefined && section !== null && !isPlain(section)) return { ok: false, problems: [`config.${service} must be an object`] }
    const problems = strict && isPlain(section) ? unknownKeys(defaults, section, '') : []
    const raw = mergeConfig(defaults, section)
    let value: T = raw
    if (validate !== undefined) {
      try {
        const result = validate(raw, tenant)
        const listed = (result as { problems?: unknown }).problems
        if (Array.isArray(listed)) problems.push(...listed.map(String))
        else value = result as T
      } catch (err) {
        problems.push((err as Error).message)
      }
    }
    return problems.length > 0 ? { ok: false, problems } : { ok: true, value: deepFreeze(value) }
  }

  const cache = new WeakMap<Tenant, Readonly<T> | Error>()
  const forTenant = (tenant: Tenant): Readonly<T> => {
    let merged = cache.get(tenant)
    if (merged === undefined) {
      const checked = evaluate(tenant.config?.[service], tenant)
      if (checked.ok) {
        merged = checked.value
      } else {
        onInvalid?.(tenant, checked.problems)
        merged = invalid === 'defaults' ? defaults : new TenantConfigInvalidError(service, tenant.id, checked.problems.join('; '))
      }
      cache.set(tenant, merged)
    }
    if (merged instanceof Error) throw merged
    return merged
  }
  return {
    service,
    defaults,
    get: () => forTenant(requireTenant()),
    for: forTenant,
    check: (section) => evaluate(section, undefined)
  }
}
