import { EventEmitter } from 'node:events'
import { LRUCache } from 'lru-cache'
import { Pool, type Dispatcher } from 'undici'
import { TenantUnavailableError } from './errors.ts'
import { normalizeHost } from './resolver.ts'
import { isValidTenantId } from './tenant-id.ts'
import type { Tenant, TenantProvider, TenantStatus, TenantTier } from './types.ts'

export interface RegistryClientOptions {
  /** The registry's base URL, e.g. `http://tenant-registry:4000` (REGISTRY_URL). */
  url: string
  /** Bearer token with `tenants:read` (SERVICE_TOKEN), or a function returning the current one. */
  token: string | (() => string)
  /** How long a look-up is fresh, in ms (default 30 s). Changes arrive sooner through the feed. */
  ttl?: number
  /** How long "no such tenant" is remembered, in ms (default 5 s). */
  negativeTtl?: number
  /**
   * How long a tenant may still be served from cache while the registry cannot be reached, in
   * ms since it was last confirmed (default 5 min). Past it, look-ups fail with TENANT_UNAVAILABLE.
   */
  maxStale?: number
  /** Entries per cache (ids, hosts), default 10,000. */
  max?: number
  /** Per-request timeout in ms (default 2 s). */
  timeout?: number
  /** Retries of a failed look-up (network error, timeout, 5xx, 429), default 2. */
  retries?: number
  /** Follow the registry's change feed and evict changed tenants at once (default true). */
  follow?: boolean
  /** Seconds a feed long poll waits (default 25). */
  followWait?: number
  /** Connections to the registry (default 8). */
  connections?: number
}

export interface RegistryClientStats {
  /** Look-ups answered from cache. */
  hits: number
  /** Look-ups that had to ask the registry. */
  misses: number
  /** Look-ups that joined a registry call already under way for the same key. */
  coalesced: number
  /** Cached tenants served because the registry could not be reached. */
  staleServes: number
  /** Answers of "unknown" from the negative cache. */
  negativeHits: number
  /** Requests sent to the registry (look-ups, revalidations, retries; not the feed). */
  upstreamCalls: number
  /** Revalidations the registry answered with 304. */
  revalidated: number
  /** Failed registry requests (each retry counts). */
  upstreamErrors: number
  /** Entries evicted because the change feed reported a change. */
  feedEvictions: number
  /** Times the whole cache was dropped because the feed could not say what was missed. */
  feedResets: number
}

export interface TenantPage {
  items: Tenant[]
  total: number
  limit: number
  offset: number
}

export interface ListTenantsQuery {
  limit?: number
  offset?: number
  status?: TenantStatus
  tier?: TenantTier
  q?: string
}

interface Entry {
  tenant: Tenant | null
  etag: string | undefined
  /** When the registry last confirmed this answer. */
  confirmedAt: number
}

interface Change { seq: number, tenantId: string, type: string }

class UpstreamError extends Error {
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
  }
}

const STALE_RETRY_MS = 1000

/**
 * A cached client for the tenant registry, and the Fastify plugin's tenant provider.
 *
 * lru-cache's `fetch()` gives the bounded cache, the TTL and one registry call for any number of
 * concurrent misses on a key; on top of it: negative caching, revalidation with `If-None-Match`,
 * timeouts and retries, serving a cached tenant while the registry is down (but never past
 * `maxStale`), and a change-feed follower that evicts changed tenants at once.
 *
 * Emits `error` (feed and registry failures, informational: the client keeps working) — attach
 * a listener, e.g. `client.on('error', (err) => log.warn({ err }))`.
 */
export class RegistryClient extends EventEmitter implements TenantProvider {
  readonly #pool: Dispatcher
  readonly #origin: string
  readonly #token: () => string
  readonly #ttl: number
  readonly #negativeTtl: number
  readonly #maxStale: number
  readonly #timeout: number
  readonly #retries: number
  readonly #ids: LRUCache<string, Entry>
  readonly #hosts: LRUCache<string, Entry>
  /**
   * Hosts the registry did not know, apart from the known ones: a flood of made-up Host values
   * cannot evict a real tenant's host, and a repeated one costs no registry call.
   */
  readonly #unknownHosts: LRUCache<string, Entry>
  /** host keys resolved to each tenant, to evict them with the tenant. */
  readonly #hostsOf = new Map<string, Set<string>>()
  readonly #stats: RegistryClientStats = { hits: 0, misses: 0, coalesced: 0, staleServes: 0, negativeHits: 0, upstreamCalls: 0, revalidated: 0, upstreamErrors: 0, feedEvictions: 0, feedResets: 0 }
  readonly #abort = new AbortController()
  #seq: number | undefined
  /** Resolves once the change feed is followed (immediately when `follow` is false). */
  readonly following: Promise<void>

  constructor (options: RegistryClientOptions) {
    super()
    const url = new URL(options.url)
    this.#origin = url.origin
    this.#pool = new Pool(this.#origin, { connections: options.connections ?? 8 })
    const token = options.token
    this.#token = typeof token === 'function' ? token : () => token
    this.#ttl = options.ttl ?? 30_000
    this.#negativeTtl = options.negativeTtl ?? 5_000
    this.#maxStale = options.maxStale ?? 300_000
    this.#timeout = options.timeout ?? 2_000
    this.#retries = options.retries ?? 2
    const cacheOptions = { max: options.max ?? 10_000, ttl: this.#ttl, allowStale: false, noDeleteOnStaleGet: true }
    this.#ids = new LRUCache<string, Entry>({
      ...cacheOptions,
      fetchMethod: async (id, stale, { signal, options: set }) => await this.#load(`/v1/tenants/${id}`, stale, signal, set)
    })
    this.#unknownHosts = new LRUCache<string, Entry>({ max: options.max ?? 10_000, ttl: this.#negativeTtl })
    this.#hosts = new LRUCache<string, Entry, unknown>({
      ...cacheOptions,
      fetchMethod: async (host, stale, { signal, options: set }) => {
        const entry = await this.#load(`/v1/resolve?host=${encodeURIComponent(host)}`, stale, signal, set)
        if (entry.tenant === null) {
          // Remembered apart, and not stored among the known hosts (lru-cache stores nothing for
          // an undefined answer).
          this.#unknownHosts.set(host, entry)
          return undefined
        } else {
          let hosts = this.#hostsOf.get(entry.tenant.id)
          if (hosts === undefined) this.#hostsOf.set(entry.tenant.id, hosts = new Set())
          hosts.add(host)
        }
        return entry
      }
    })
    this.on('error', () => {}) // failures are also counted; listeners are optional
    if (options.follow ?? true) {
      const { promise, resolve } = Promise.withResolvers<void>()
      this.following = promise
      this.#follow(options.followWait ?? 25, resolve) // never rejects: it reports and retries
    } else {
      this.following = Promise.resolve()
    }
  }

  /** Counters since the client was created. */
  stats (): RegistryClientStats {
    return { ...this.#stats }
  }

  /** A cached answer that may still be served (counted), or undefined. */
  #cached (entry: Entry | undefined): Entry | undefined {
    if (entry === undefined || Date.now() - entry.confirmedAt > this.#maxStale) return undefined
    if (entry.tenant === null) this.#stats.negativeHits++
    else this.#stats.hits++
    return entry
  }

  getTenant (id: string): Tenant | null | Promise<Tenant | null> {
    // The hot path answers synchronously.
    const hit = this.#cached(this.#ids.get(id))
    if (hit !== undefined) return hit.tenant
    if (!isValidTenantId(id)) return null
    return this.#fetch(this.#ids, id)
  }

  getTenantByHost (host: string): Tenant | null | Promise<Tenant | null> {
    let key: string | null
    try {
      key = normalizeHost(host)
    } catch {
      key = null // not a host name: no tenant, and nothing to ask the registry
    }
    if (key === null) return null
    const hit = this.#cached(this.#hosts.get(key) ?? this.#unknownHosts.get(key))
    if (hit !== undefined) return hit.tenant
    return this.#fetch(this.#hosts, key)
  }

  async #fetch (cache: LRUCache<string, Entry>, key: string, attempt = 0): Promise<Tenant | null> {
    const status: LRUCache.Status<string, Entry> = {}
    try {
      const entry = await cache.fetch(key, { status })
      if (status.fetch === 'inflight') this.#stats.coalesced++
      else this.#stats.misses++
      // An unknown host answers undefined (it is kept in the negative cache instead).
      return entry === undefined ? null : entry.tenant
    } catch (err) {
      // The feed evicted this key while its look-up was under way: look again, fresh.
      if (attempt < 2 && err instanceof Error && (err.message === 'deleted' || err.message === 'evicted')) return await this.#fetch(cache, key, attempt + 1)
      throw err
    }
  }

  /** One registry look-up with revalidation, retries and the stale-if-error bound. */
  async #load (path: string, stale: Entry | undefined, signal: AbortSignal, set: { ttl?: number }): Promise<Entry> {
    try {
      const headers: Record<string, string> = {}
      if (stale?.etag !== undefined && stale.tenant !== null) headers['if-none-match'] = stale.etag
      const res = await this.#request(path, headers, signal)
      if (res.status === 304 && stale !== undefined) {
        this.#stats.revalidated++
        return { ...stale, confirmedAt: Date.now() }
      }
      if (res.status === 404) {
        set.ttl = this.#negativeTtl
        return { tenant: null, etag: undefined, confirmedAt: Date.now() }
      }
      return { tenant: res.body as Tenant, etag: res.etag, confirmedAt: Date.now() }
    } catch (err) {
      if (signal.aborted) throw err
      this.emit('error', err)
      if (stale !== undefined && stale.tenant !== null && Date.now() - stale.confirmedAt <= this.#maxStale) {
        // The registry is unreachable: serve what we had, and try it again soon.
        this.#stats.staleServes++
        set.ttl = STALE_RETRY_MS
        return stale
      }
      const unavailable = new TenantUnavailableError()
      unavailable.cause = err
      throw unavailable
    }
  }

  async #request (path: string, headers: Record<string, string>, signal: AbortSignal): Promise<{ status: number, body: unknown, etag: string | undefined }> {
    let lastError: unknown
    for (let attempt = 0; attempt <= this.#retries; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 25 * 2 ** attempt + Math.random() * 25))
      this.#stats.upstreamCalls++
      try {
        const res = await this.#pool.request({
          path,
          method: 'GET',
          headers: { ...headers, authorization: `Bearer ${this.#token()}`, accept: 'application/json' },
          headersTimeout: this.#timeout,
          bodyTimeout: this.#timeout,
          signal: AbortSignal.any([signal, AbortSignal.timeout(this.#timeout)])
        })
        const text = await res.body.text()
        if (res.statusCode === 200 || res.statusCode === 304 || res.statusCode === 404) {
          const etag = res.headers.etag
          return { status: res.statusCode, body: text === '' ? null : JSON.parse(text), etag: typeof etag === 'string' ? etag : undefined }
        }
        lastError = new UpstreamError(res.statusCode, `registry answered ${res.statusCode} for ${path}`)
        this.#stats.upstreamErrors++
        // Only overload and server errors are worth another try; 401/403 are configuration.
        if (res.statusCode < 500 && res.statusCode !== 429) break
      } catch (err) {
        if (signal.aborted) throw err
        lastError = err
        this.#stats.upstreamErrors++
      }
    }
    throw lastError
  }

  /** A page of tenants, straight from the registry (not cached). */
  async listTenants (query: ListTenantsQuery = {}): Promise<TenantPage> {
    const params = new URLSearchParams()
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value))
    const res = await this.#request(`/v1/tenants?${params.toString()}`, {}, this.#abort.signal)
    return res.body as TenantPage
  }

  /** Forgets a tenant (by id and by every host it was resolved from). */
  invalidate (id: string): void {
    this.#ids.delete(id)
    const hosts = this.#hostsOf.get(id)
    if (hosts !== undefined) {
      for (const host of hosts) this.#hosts.delete(host)
      this.#hostsOf.delete(id)
    }
  }

  /** Forgets everything. */
  clear (): void {
    this.#ids.clear()
    this.#hosts.clear()
    this.#unknownHosts.clear()
    this.#hostsOf.clear()
  }

  #apply (change: Change): void {
    this.invalidate(change.tenantId)
    this.#stats.feedEvictions++
    // A new tenant or domain can answer a host that was remembered as unknown.
    if (change.type === 'tenant.created' || change.type.startsWith('domain.')) {
      this.#unknownHosts.clear()
    }
  }

  async #follow (wait: number, ready: () => void): Promise<void> {
    const signal = this.#abort.signal
    let failures = 0
    while (!signal.aborted) {
      try {
        const after = this.#seq ?? 0
        const res = await this.#pool.request({
          path: `/v1/changes?after=${after}&wait=${this.#seq === undefined ? 0 : wait}&limit=500`,
          method: 'GET',
          headers: { authorization: `Bearer ${this.#token()}`, accept: 'application/json' },
          headersTimeout: (wait + 10) * 1000,
          bodyTimeout: (wait + 10) * 1000,
          signal
        })
        const text = await res.body.text()
        if (res.statusCode !== 200) throw new UpstreamError(res.statusCode, `change feed answered ${res.statusCode}`)
        const page = JSON.parse(text) as { items: Change[], next: number, head: number }
        const head = page.head
        if (this.#seq === undefined) {
          // First contact: start at the head; nothing cached predates the feed.
          this.#seq = head
          ready()
        } else if (head < this.#seq) {
          // The log is behind us (the registry's database was restored or replaced): whatever
          // we cached may be wrong, and the feed cannot say what changed.
          this.clear()
          this.#stats.feedResets++
          this.#seq = head
        } else {
          for (const change of page.items) this.#apply(change)
          this.#seq = page.next
        }
        failures = 0
      } catch (err) {
        if (signal.aborted) return
        failures++
        this.emit('error', err)
        // Resume from the last sequence once the registry answers again.
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 100 * 2 ** failures)))
      }
    }
  }

  async close (): Promise<void> {
    this.#abort.abort()
    this.clear()
    await this.#pool.close()
  }
}
