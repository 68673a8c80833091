import { AsyncLocalStorage } from 'node:async_hooks'
import { NO_TENANT_IN_SCOPE, TenantRequiredError, TenantInvalidError } from './errors.ts'
import { assertTenantId } from './tenant-id.ts'
import type { Tenant } from './types.ts'

/** What the current asynchronous execution runs as. Frozen: nothing can swap the tenant mid-flight. */
export interface TenantScope {
  /** The tenant's id; `null` in a system scope. */
  readonly tenantId: string | null
  /** The tenant's registry record, when the scope was entered with one. */
  readonly tenant: Tenant | null
  /** True for explicit cross-tenant (administrative) work. */
  readonly system: boolean
}

/** A scope as plain JSON, for job payloads: `{ tenantId }` or `{ system: true }`. */
export type CapturedScope = { readonly tenantId: string } | { readonly system: true }

// One storage for the whole process (and for every copy of this module that shares it through
// the global symbol registry, so two installed versions cannot disagree on the current tenant).
const STORAGE_KEY = Symbol.for('@platform/multitenant.storage')
type GlobalWithStorage = typeof globalThis & { [STORAGE_KEY]?: AsyncLocalStorage<TenantScope> }
const g = globalThis as GlobalWithStorage
const storage: AsyncLocalStorage<TenantScope> = g[STORAGE_KEY] ??= new AsyncLocalStorage<TenantScope>()

const SYSTEM_SCOPE: TenantScope = Object.freeze({ tenantId: null, tenant: null, system: true })

const recordScopes = new WeakMap<Tenant, TenantScope>()

/**
 * The scope for a tenant id (validated) or a tenant record (trusted: it came from the registry).
 * One frozen scope per record, so the request hot path allocates none.
 */
export function tenantScope (tenant: string | Tenant): TenantScope {
  if (typeof tenant === 'string') {
    return Object.freeze({ tenantId: assertTenantId(tenant), tenant: null, system: false })
  }
  let scope = recordScopes.get(tenant)
  if (scope === undefined) {
    scope = Object.freeze({ tenantId: tenant.id, tenant, system: false })
    recordScopes.set(tenant, scope)
  }
  return scope
}

/** What running `fn` in a scope returns: a thenable is adopted as a promise settled inside the scope. */
export type InScope<R> = R extends PromiseLike<infer U> ? Promise<U> : R

/**
 * Runs `fn` in `scope`. A lazy thenable it returns (a drizzle query builder, which only runs when
 * awaited) is adopted here, inside the scope: awaited later by the caller it would run in the
 * caller's scope instead.
 */
function runIn<R> (scope: TenantScope | undefined, fn: () => R): InScope<R> {
  return storage.run(scope as TenantScope, () => {
    const result = fn()
    if (result instanceof Promise || typeof (result as { then?: unknown } | null)?.then !== 'function') return result as InScope<R>
    return new Promise((resolve, reject) => { (result as PromiseLike<unknown>).then(resolve, reject) }) as InScope<R>
  })
}

/** Runs `fn` as `tenant` (an id or a registry record). Nested scopes: the inner one wins. */
export function runAsTenant<R> (tenant: string | Tenant, fn: () => R): InScope<R> {
  return runIn(tenantScope(tenant), fn)
}

/** Runs `fn` in the explicit system scope, for cross-tenant administrative work. */
export function runAsSystem<R> (fn: () => R): InScope<R> {
  return runIn(SYSTEM_SCOPE, fn)
}

/** Runs `fn` in a prepared scope (or none). For integrations that built the scope themselves. */
export function runInScope<R> (scope: TenantScope | undefined, fn: () => R): InScope<R> {
  return runIn(scope, fn)
}

/**
 * Makes `scope` (or none) current for the rest of this synchronous execution and the asynchronous
 * work it starts. Cheaper than `runInScope` where the caller cannot wrap a function, as in a hook.
 */
export function enterScope (scope: TenantScope | undefined): void {
  storage.enterWith(scope as TenantScope)
}

export function currentScope (): TenantScope | undefined {
  return storage.getStore()
}

/** The current tenant's id, or `undefined` outside a tenant scope (and in a system scope). */
export function currentTenantId (): string | undefined {
  return storage.getStore()?.tenantId ?? undefined
}

/** The current tenant's record, or `undefined` when there is none. */
export function currentTenant (): Tenant | undefined {
  return storage.getStore()?.tenant ?? undefined
}

/** The current tenant's id; throws `TENANT_REQUIRED` outside a tenant scope. */
export function requireTenantId (): string {
  const id = storage.getStore()?.tenantId
  if (id == null) throw new TenantRequiredError(NO_TENANT_IN_SCOPE)
  return id
}

/** The current tenant's record; throws `TENANT_REQUIRED` when the scope has none. */
export function requireTenant (): Tenant {
  const tenant = storage.getStore()?.tenant
  if (tenant == null) throw new TenantRequiredError(NO_TENANT_IN_SCOPE)
  return tenant
}

export function isSystemScope (): boolean {
  return storage.getStore()?.system === true
}

/**
 * Binds `fn` to the scope current now, so it runs as this tenant wherever it is called from:
 * EventEmitter listeners and timers registered at start-up otherwise run in the scope of
 * whoever triggers them (DESIGN.md, known hazards).
 */
export function bindToScope<A extends unknown[], R> (fn: (...args: A) => R): (...args: A) => InScope<R> {
  const scope = storage.getStore()
  return function bound (this: unknown, ...args: A): InScope<R> {
    return runIn(scope, () => fn.apply(this, args))
  }
}

/** The current scope as a plain, serialisable value (for a job payload); `null` when there is none. */
export function captureScope (): CapturedScope | null {
  const scope = storage.getStore()
  if (scope === undefined) return null
  if (scope.system) return { system: true }
  return { tenantId: scope.tenantId as string }
}

/**
 * Runs `fn` in a scope captured by `captureScope`. The value may have travelled through a queue,
 * so it is validated again: anything but a valid tenant id or the system marker is `TENANT_INVALID`.
 */
export function runInCapturedScope<R> (captured: CapturedScope | null, fn: () => R): InScope<R> {
  if (captured === null) return runIn(undefined, fn)
  if (typeof captured !== 'object') throw new TenantInvalidError('')
  if ('system' in captured && captured.system === true) return runAsSystem(fn)
  return runAsTenant(assertTenantId((captured as { tenantId?: unknown }).tenantId), fn)
}

export interface ForEachTenantOptions {
  /** How many tenants run at once. Default: 4. */
  concurrency?: number
  /** Stops starting new tenants once aborted; tenants already running finish. */
  signal?: AbortSignal
  /** Called after each tenant finishes, for progress output. */
  onSettled?: (result: TenantRunResult<unknown>, done: number, total: number) => void
}

export type TenantRunResult<R> =
  | { tenantId: string, ok: true, value: R }
  | { tenantId: string, ok: false, error: unknown }

export const DEFAULT_TENANT_CONCURRENCY = 4

/**
 * Runs `fn` once per tenant, each inside that tenant's scope, at most `concurrency` at a time.
 * One tenant's failure does not stop the others: every outcome is returned, in input order.
 */
export async function forEachTenant<R> (
  tenants: Iterable<string | Tenant>,
  fn: (tenantId: string) => R | PromiseLike<R>,
  options: ForEachTenantOptions = {}
): Promise<Array<TenantRunResult<R>>> {
  const concurrency = options.concurrency ?? DEFAULT_TENANT_CONCURRENCY
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError('concurrency must be a positive integer')
  }
  const scopes = Array.from(tenants, tenantScope)
  const results = new Array<TenantRunResult<R>>(scopes.length)
  let next = 0
  let done = 0
  const worker = async (): Promise<void> => {
    while (next < scopes.length && options.signal?.aborted !== true) {
      const index = next++
      const scope = scopes[index] as TenantScope
      const tenantId = scope.tenantId as string
      let result: TenantRunResult<R>
      try {
        result = { tenantId, ok: true, value: await runIn(scope, () => fn(tenantId)) as R }
      } catch (error) {
        result = { tenantId, ok: false, error }
      }
      results[index] = result
      options.onSettled?.(result, ++done, scopes.length)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, scopes.length) }, worker))
  return options.signal?.aborted === true ? results.filter((r) => r !== undefined) : results
}
