import { EventEmitter } from 'node:events'
import { LRUCache } from 'lru-cache'
import { interceptors, Pool, type Dispatcher } from 'undici'
import {
  InvalidOptionError, RegistryRefusedError, RegistryResponseError, RegistryUnreachableError, TenantUnavailableError
} from './errors.ts'
import { retryAfterMs } from './retry-after.ts'
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
  /** Connections to the registry (default 8). Ignored with `dispatcher`. */
  connections?: number
  /**
   * The caller's own undici dispatcher (an Agent with its TLS settings, a ProxyAgent, a
   * MockAgent in tests …). The client adds its retry interceptor on top and does not close it.
   */
  dispatcher?: Dispatcher
  /** Receives one line per change of the registry's reachability (pino's API; default: none). */
  logger?: RegistryLogger
  /**
   * How many registry look-ups of ids and hosts never seen to exist may be made: a bucket of
   * `burst` (default 100) that each answer of "unknown" empties by one and that refills by
   * `perSecond` (default 10). While it is empty, such a look-up answers TENANT_UNAVAILABLE without
   * asking the registry, so a stream of made-up `Host` values (or ids) costs at most `burst` +
   * `perSecond` calls a second. Tenants and hosts known to exist are never held back: those the
   * registry listed when the feed was first followed (and again after a feed reset), those the
   * change feed announces since, and those a look-up found. `false` turns the bound off.
   */
  unknownLookups?: { burst?: number, perSecond?: number } | false
}

/** The part of a pino logger the client uses. */
export interface RegistryLogger {
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
}

/** One entry of the registry's change feed. */
export interface TenantChange {
  seq: number
  tenantId: string
  /** `tenant.created`, `tenant.updated`, `tenant.suspended`, `tenant.active`, `tenant.archived`, `tenant.purged`, `domain.added`, `domain.removed` … */
  type: TenantChangeType
  at: string
}

export type TenantChangeType =
  | 'tenant.created' | 'tenant.updated' | 'tenant.suspended' | 'tenant.active' | 'tenant.archived'
  | 'tenant.purged' | 'domain.added' | 'domain.removed' | (string & {})

/** Whether the registry answers: reported once per change, never per failed attempt. */
export interface RegistryState {
  state: 'up' | 'down'
  /** The failure's code while down (`MT_REGISTRY_UNREACHABLE`, `MT_REGISTRY_REFUSED` …). */
  code?: string
  message?: string
  /** When the registry was last seen answering (ms since epoch), while down. */
  lastSeen?: number
}

/**
 * The client's events. `change` and each change's own type (`tenant.created` …) carry a
 * `TenantChange`; `reset` means the feed could not say what was missed (re-read everything);
 * `state` reports reachability; `error` carries each failure (with a `code`).
 */
export interface RegistryClientEvents {
  change: [TenantChange]
  reset: []
  state: [RegistryState]
  error: [Error & { code?: string }]
  [type: `tenant.${string}` | `domain.${string}`]: [TenantChange]
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
  /** Look-ups of never-seen ids or hosts refused without a registry call (see `unknownLookups`). */
  unknownRefused: number
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

const STALE_RETRY_MS = 1000
/* c8 ignore next: a failed read of an announced tenant is reported by the request itself (an `error` event); its first look-up tries again */
const ignore = (): void => {}
export const DEFAULT_UNKNOWN_LOOKUPS = Object.freeze({ burst: 100, perSecond: 10 })
/** What a failed look-up answers with, once retries are spent. */
const RETRY_STATUS = [429, 500, 502, 503, 504]
const RETRY_CODES = ['ECONNRESET', 'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETDOWN', 'ENETUNREACH', 'EHOSTDOWN', 'EHOSTUNREACH', 'EPIPE',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']
/** Longest wait a `Retry-After` may ask of a look-up, in ms. */
const MAX_RETRY_AFTER_MS = 5000

function failureReason (err: unknown): string {
  const e = err as { code?: unknown, statusCode?: unknown, message?: unknown } | null
  if (typeof e?.statusCode === 'number') return `HTTP ${e.statusCode}`
  if (typeof e?.code === 'string') return e.code
  /* c8 ignore next: undici's failures carry a code or a status */
  return String(e?.message ?? err)
}

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
export class RegistryClient extends EventEmitter<RegistryClientEvents> implements TenantProvider {
  /** Look-ups: the caller's dispatcher or our pool, with counting and retries. */
  readonly #pool: Dispatcher
  /** The dispatcher underneath (the feed's long polls go straight to it). */
  readonly #base: Dispatcher
  readonly #ownsBase: boolean
  readonly #origin: string
  readonly #prefix: string
  readonly #logger: RegistryLogger | undefined
  #state: RegistryState = { state: 'up' }
  #lastSeen = 0
  /** Backoff timers under way, cancelled by close(). */
  readonly #timers = new Set<{ timer: NodeJS.Timeout, cancel: () => void }>()
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
  /**
   * Ids and hosts (`id:…`, `host:…`) the registry or its change feed has shown to exist: their
   * look-ups are never held back by the unknown-look-up budget, even after an eviction. Seeded
   * with every tenant and custom domain the registry lists when the feed is first followed and
   * after a reset, so that made-up hosts spending the (global) budget never lock out a real
   * tenant that this client has not looked up yet. A Set, not an LRU: only registry answers add
   * to it (its size is the registry's tenants and domains), and an LRU would let a big registry
   * push real tenants back under the budget.
   */
  readonly #known = new Set<string>()
  readonly #unknown: UnknownBudget | null
  readonly #stats: RegistryClientStats = { hits: 0, misses: 0, coalesced: 0, staleServes: 0, negativeHits: 0, upstreamCalls: 0, revalidated: 0, upstreamErrors: 0, feedEvictions: 0, unknownRefused: 0, feedResets: 0 }
  readonly #abort = new AbortController()
  #seq: number | undefined
  /**
   * Resolves once the change feed is followed and the registry's tenants are known (immediately
   * when `follow` is false).
   */
  readonly following: Promise<void>

  constructor (options: RegistryClientOptions) {
    super()
    let url: URL
    try {
      url = new URL(options.url)
    } catch {
      throw new InvalidOptionError(`registry url (REGISTRY_URL) must be an absolute http(s) URL, got ${JSON.stringify(String(options.url))}`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidOptionError(`registry url (REGISTRY_URL) must be http or https, got ${url.protocol}`)
    this.#origin = url.origin
    // A registry behind a path prefix (a gateway's /registry) is reached under it.
    this.#prefix = url.pathname.replace(/\/+$/, '')
    const token = options.token
    if (typeof token !== 'function' && (typeof token !== 'string' || token === '')) throw new InvalidOptionError('registry token (SERVICE_TOKEN) must be a non-empty string or a function')
    this.#token = typeof token === 'function' ? token : () => token
    this.#logger = options.logger
    this.#ownsBase = options.dispatcher === undefined
    this.#base = options.dispatcher ?? new Pool(this.#origin, { connections: options.connections ?? 8 })
    this.#retries = options.retries ?? 2
    this.#pool = this.#base.compose(
      // Innermost: every attempt is counted.
      (dispatch) => (opts, handler) => {
        this.#stats.upstreamCalls++
        return dispatch(opts, handler)
      },
      // undici's retry handler; the wait between attempts is ours so that close() cancels it.
      interceptors.retry({
        maxRetries: this.#retries,
        methods: ['GET'],
        statusCodes: RETRY_STATUS,
        errorCodes: RETRY_CODES,
        retry: (err, { state }, callback) => this.#retry(err as Error & { statusCode?: number, code?: string, headers?: Record<string, string | string[] | undefined> }, state.counter, callback)
      })
    )
    this.#ttl = options.ttl ?? 30_000
    this.#negativeTtl = options.negativeTtl ?? 5_000
    this.#maxStale = options.maxStale ?? 300_000
    this.#timeout = options.timeout ?? 2_000
    const cacheOptions = { max: options.max ?? 10_000, ttl: this.#ttl, allowStale: false, noDeleteOnStaleGet: true }
    const unknown = options.unknownLookups ?? {}
    this.#unknown = unknown === false ? null : new UnknownBudget(unknown.burst ?? DEFAULT_UNKNOWN_LOOKUPS.burst, unknown.perSecond ?? DEFAULT_UNKNOWN_LOOKUPS.perSecond)
    this.#ids = new LRUCache<string, Entry>({
      ...cacheOptions,
      fetchMethod: async (id, stale, { signal, options: set }) => await this.#lookup(`id:${id}`, `/v1/tenants/${id}`, stale, signal, set)
    })
    this.#unknownHosts = new LRUCache<string, Entry>({ max: options.max ?? 10_000, ttl: this.#negativeTtl })
    this.#hosts = new LRUCache<string, Entry, unknown>({
      ...cacheOptions,
      fetchMethod: async (host, stale, { signal, options: set }) => {
        const entry = await this.#lookup(`host:${host}`, `/v1/resolve?host=${encodeURIComponent(host)}`, stale, signal, set)
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
    this.on('error', () => {}) // failures are also counted and logged; listeners are optional
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

  /**
   * A look-up through the unknown-look-up budget: a key not known to exist waits for a place in
   * it (or is refused with TENANT_UNAVAILABLE when it is spent); an answer of "unknown" spends one.
   */
  async #lookup (known: string, path: string, stale: Entry | undefined, signal: AbortSignal, set: { ttl?: number }): Promise<Entry> {
    const budget = this.#unknown
    if (budget === null || stale?.tenant != null || this.#known.has(known)) return this.#remember(known, await this.#load(path, stale, signal, set))
    if (!await budget.admit()) {
      this.#stats.unknownRefused++
      throw new TenantUnavailableError()
    }
    let entry: Entry | undefined
    try {
      entry = this.#remember(known, await this.#load(path, stale, signal, set))
      return entry
    } finally {
      budget.settle(entry !== undefined && entry.tenant === null)
    }
  }

  #remember (known: string, entry: Entry): Entry {
    if (entry.tenant !== null) this.#known.add(known)
    return entry
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

  /** Waits `ms`, unless close() comes first (then `false`). */
  async #sleep (ms: number): Promise<boolean> {
    const { promise, resolve } = Promise.withResolvers<boolean>()
    const entry = {
      timer: setTimeout(() => {
        this.#timers.delete(entry)
        resolve(true)
      }, ms),
      cancel: () => resolve(false)
    }
    this.#timers.add(entry)
    return await promise
  }

  /** undici's retry decision (RetryHandler's default), with a cancellable wait and our counters. */
  #retry (err: Error & { statusCode?: number, code?: string, headers?: Record<string, string | string[] | undefined> }, counter: number, callback: (err?: Error | null) => void): void {
    this.#stats.upstreamErrors++
    // undici asks only about the statuses given to it (RETRY_STATUS); errors are retried by code.
    const retryable = err.statusCode !== undefined || RETRY_CODES.includes(err.code as string)
    if (!retryable || counter > this.#retries || this.#abort.signal.aborted) {
      callback(err)
      return
    }
    // Retry-After (seconds or an HTTP date), bounded; otherwise exponential backoff with jitter.
    const ms = retryAfterMs(err.headers?.['retry-after'])
    let delay = 25 * 2 ** counter + Math.random() * 25
    if (ms !== undefined && ms > 0) delay = Math.min(ms, MAX_RETRY_AFTER_MS)
    this.#sleep(delay).then((waited) => callback(waited ? null : err), callback)
  }

  /** Records that the registry answered; reports the way back up once. */
  #up (): void {
    const now = Date.now()
    if (this.#state.state === 'down') {
      const downFor = this.#lastSeen === 0 ? undefined : now - this.#lastSeen
      this.#state = { state: 'up' }
      this.#logger?.info({ registry: this.#origin, downMs: downFor }, 'tenant registry reachable again')
      this.#emit('state', this.#state)
    }
    this.#lastSeen = now
  }

  /** Reports a failure: an `error` event each time, a log line and a `state` event once per outage. */
  #down (err: Error & { code?: string }): void {
    this.#emit('error', err)
    if (this.#state.state === 'down' && this.#state.code === err.code) return
    this.#state = { state: 'down', code: err.code, message: err.message, ...(this.#lastSeen === 0 ? {} : { lastSeen: this.#lastSeen }) }
    this.#logger?.warn({ registry: this.#origin, code: err.code, reason: err.message }, 'tenant registry unavailable: serving cached tenants')
    this.#emit('state', this.#state)
  }

  /** Whether the registry answered the last call (`up`) or not (`down`, with the failure's code). */
  get state (): RegistryState {
    return { ...this.#state }
  }

  #emit<K extends keyof RegistryClientEvents> (event: K, ...args: RegistryClientEvents[K]): void {
    try {
      (this.emit as (event: string, ...args: unknown[]) => boolean)(event as string, ...args)
    } catch (err) {
      // A throwing listener must not stop the feed; it is reported like any other failure.
      if (event !== 'error') this.#emit('error', Object.assign(err as Error, { code: (err as { code?: string }).code ?? 'MT_LISTENER_FAILED' }))
    }
  }

  /** A failure of a registry call, as the error the client reports (with a code). */
  #failure (path: string, err: unknown): Error & { code: string } {
    const statusCode = (err as { statusCode?: unknown }).statusCode
    if (statusCode === 401 || statusCode === 403) {
      const why = statusCode === 401 ? 'the token is invalid or expired' : 'a service token with the tenants:read scope is needed'
      return Object.assign(new RegistryRefusedError(`HTTP ${statusCode} for ${path.split('?')[0]} (${why}); check the registry token (SERVICE_TOKEN)`), { cause: err })
    }
    if (typeof statusCode === 'number' && statusCode < 500 && statusCode !== 429) {
      return Object.assign(new RegistryResponseError(`HTTP ${statusCode} for ${path.split('?')[0]}; is ${this.#origin}${this.#prefix} (REGISTRY_URL) a tenant registry?`), { cause: err })
    }
    return Object.assign(new RegistryUnreachableError(`${this.#origin} (REGISTRY_URL)`, failureReason(err)), { cause: err })
  }

  async #request (path: string, headers: Record<string, string>, signal: AbortSignal): Promise<{ status: number, body: unknown, etag: string | undefined }> {
    let res: Dispatcher.ResponseData
    try {
      res = await this.#pool.request({
        origin: this.#origin,
        path: this.#prefix + path,
        method: 'GET',
        headers: { ...headers, authorization: `Bearer ${this.#token()}`, accept: 'application/json' },
        headersTimeout: this.#timeout,
        bodyTimeout: this.#timeout,
        signal
      })
    } catch (err) {
      if (signal.aborted) throw err
      const failure = this.#failure(path, err)
      this.#down(failure)
      throw failure
    }
    const text = await res.body.text()
    if (res.statusCode === 200 || res.statusCode === 304 || res.statusCode === 404) {
      this.#up()
      const etag = res.headers.etag
      let body: unknown = null
      try {
        if (text !== '') body = JSON.parse(text)
      } catch (err) {
        throw this.#failure(path, Object.assign(new Error('the answer is not JSON'), { cause: err, statusCode: 502 }))
      }
      return { status: res.statusCode, body, etag: typeof etag === 'string' ? etag : undefined }
    }
    // 401/403 and other answers that no retry changes (configuration, not an outage).
    this.#stats.upstreamErrors++
    const failure = this.#failure(path, Object.assign(new Error(`HTTP ${res.statusCode}`), { statusCode: res.statusCode }))
    this.#down(failure)
    throw failure
  }

  /**
   * One authenticated call, to fail at start rather than on the first request: resolves when the
   * registry answers the change feed with this token; rejects with `MT_REGISTRY_UNREACHABLE`
   * (REGISTRY_URL), `MT_REGISTRY_REFUSED` (SERVICE_TOKEN) or `MT_REGISTRY_RESPONSE`, naming it.
   */
  async check (): Promise<void> {
    const res = await this.#request('/v1/changes?after=0&wait=0&limit=1', {}, this.#abort.signal)
    const head = (res.body as { head?: unknown } | null)?.head
    if (res.status !== 200 || typeof head !== 'number') {
      throw new RegistryResponseError(`GET /v1/changes answered ${res.status} without a feed; is ${this.#origin}${this.#prefix} (REGISTRY_URL) a tenant registry?`)
    }
  }

  /** A page of tenants, straight from the registry (not cached). */
  async listTenants (query: ListTenantsQuery = {}): Promise<TenantPage> {
    const params = new URLSearchParams()
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value))
    const res = await this.#request(`/v1/tenants?${params.toString()}`, {}, this.#abort.signal)
    return res.body as TenantPage
  }

  /** The registry's base URL (origin and any path prefix), for writes a service forwards to it. */
  get url (): string {
    return this.#origin + this.#prefix
  }

  /**
   * Remembers a tenant record the registry has just answered (say, to a PATCH a service
   * forwarded for its user), so the next look-up serves it without waiting for the change feed.
   * An older version than the one cached is ignored; hosts are looked up again.
   */
  remember (tenant: Tenant, etag?: string): void {
    const cached = this.#ids.peek(tenant.id, { allowStale: true })?.tenant
    if (cached != null && cached.version > tenant.version) return
    this.invalidate(tenant.id)
    this.#ids.set(tenant.id, { tenant, etag, confirmedAt: Date.now() })
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
    this.#known.clear()
  }

  #apply (change: TenantChange): void {
    this.invalidate(change.tenantId)
    this.#stats.feedEvictions++
    // A new tenant or domain can answer a host that was remembered as unknown.
    const hosts = change.type === 'tenant.created' || change.type.startsWith('domain.')
    if (hosts) this.#unknownHosts.clear()
    // The feed names tenants that exist: their look-ups are never held back, nor their new domains'.
    this.#known.add(`id:${change.tenantId}`)
    if (hosts && change.type !== 'domain.removed') this.#learnHosts(change.tenantId)
    this.#emit('change', change)
    this.#emit(change.type as `tenant.${string}`, change)
  }

  /**
   * Reads an announced tenant's record and marks its custom domains as known, so that a new
   * domain resolves at its first request even while made-up hosts have spent the budget.
   */
  #learnHosts (id: string): void {
    // getTenant: the id is checked before anything is asked (the feed is the registry's, still).
    Promise.resolve(this.getTenant(id)).then((tenant) => {
      // The registry stores domains normalised (lower case, no port or trailing dot).
      /* c8 ignore next: null only for a tenant gone again before its record was read */
      for (const { domain } of tenant?.domains ?? []) this.#known.add(`host:${domain}`)
    }, ignore)
  }

  /**
   * Marks every tenant the registry lists (ids and custom domains) as known, page by page. A
   * failure is reported (an `error` event) and leaves the rest to look-ups: those of real tenants
   * then draw from the budget until the next reset.
   */
  async #seed (): Promise<void> {
    const limit = 200 // the registry's largest page
    try {
      for (let offset = 0; ; offset += limit) {
        const page = await this.listTenants({ limit, offset })
        for (const tenant of page.items) {
          this.#known.add(`id:${tenant.id}`)
          for (const { domain } of tenant.domains) this.#known.add(`host:${domain}`)
        }
        if (page.items.length < limit) break
      }
    } catch (err) {
      this.#emit('error', Object.assign(new RegistryResponseError('GET /v1/tenants failed: tenants it did not list are looked up within the unknown-look-up budget until seen'), { cause: err }))
    }
  }

  /**
   * The change feed as an async iterator, from its first `next()` on (a `for await` calls it at
   * once; buffered while the loop body runs). Ends
   * when `signal` aborts or the client closes. Needs `follow` (the default).
   */
  async * changes (options: { signal?: AbortSignal } = {}): AsyncGenerator<TenantChange, void, undefined> {
    // Not events.on(): it ends the loop with an exception on any 'error' event, and the client
    // reports every failed registry call as one while it keeps working.
    const signal = options.signal === undefined ? this.#abort.signal : AbortSignal.any([options.signal, this.#abort.signal])
    const queue: TenantChange[] = []
    let wake: (() => void) | undefined
    const onChange = (change: TenantChange): void => {
      queue.push(change)
      wake?.()
    }
    const onAbort = (): void => wake?.()
    this.on('change', onChange)
    signal.addEventListener('abort', onAbort)
    try {
      for (;;) {
        while (queue.length > 0) yield queue.shift() as TenantChange
        if (signal.aborted) return
        await new Promise<void>((resolve) => { wake = resolve })
        wake = undefined
      }
    } finally {
      this.off('change', onChange)
      signal.removeEventListener('abort', onAbort)
    }
  }

  async #follow (wait: number, ready: () => void): Promise<void> {
    const signal = this.#abort.signal
    let failures = 0
    while (!signal.aborted) {
      const after = this.#seq ?? 0
      const path = `/v1/changes?after=${after}&wait=${this.#seq === undefined ? 0 : wait}&limit=500`
      try {
        let res: Dispatcher.ResponseData
        try {
          res = await this.#base.request({
            origin: this.#origin,
            path: this.#prefix + path,
            method: 'GET',
            headers: { authorization: `Bearer ${this.#token()}`, accept: 'application/json' },
            headersTimeout: (wait + 10) * 1000,
            bodyTimeout: (wait + 10) * 1000,
            signal
          })
        } catch (err) {
          throw this.#failure(path, err)
        }
        const text = await res.body.text()
        if (res.statusCode !== 200) throw this.#failure(path, Object.assign(new Error(`HTTP ${res.statusCode}`), { statusCode: res.statusCode }))
        const page = JSON.parse(text) as { items: TenantChange[], next: number, head: number }
        this.#up()
        const head = page.head
        if (this.#seq === undefined) {
          // First contact: start at the head; nothing cached predates the feed.
          this.#seq = head
          await this.#seed()
          ready()
        } else if (head < this.#seq) {
          // The log is behind us (the registry's database was restored or replaced): whatever
          // we cached may be wrong, and the feed cannot say what changed.
          this.clear()
          this.#seq = head
          await this.#seed()
          this.#stats.feedResets++
          this.#emit('reset')
        } else {
          for (const change of page.items) this.#apply(change)
          this.#seq = page.next
        }
        failures = 0
      } catch (err) {
        if (signal.aborted) return
        failures++
        this.#down(err as Error & { code?: string })
        // Resume from the last sequence once the registry answers again.
        await this.#sleep(Math.min(5000, 100 * 2 ** failures))
      }
    }
  }

  /** Stops the feed, cancels backoff waits and closes the connections (not a caller's dispatcher). */
  async close (): Promise<void> {
    if (this.#abort.signal.aborted) return
    this.#abort.abort()
    for (const entry of this.#timers) {
      clearTimeout(entry.timer)
      entry.cancel()
    }
    this.#timers.clear()
    this.clear()
    if (this.#ownsBase) await this.#base.close()
  }
}

/**
 * The budget for look-ups of keys not known to exist: a token bucket that answers of "unknown"
 * drain and time refills. A look-up in flight holds a token until it settles (an answer that
 * finds a tenant gives it back), so a burst of concurrent made-up keys cannot overdraw it; one
 * that finds no token free waits while others are in flight and is refused when none is.
 */
class UnknownBudget {
  readonly #burst: number
  readonly #perMs: number
  #tokens: number
  #at = Date.now()
  #pending = 0
  #waiting: Array<() => void> = []

  constructor (burst: number, perSecond: number) {
    if (!Number.isInteger(burst) || burst < 1) throw new InvalidOptionError('unknownLookups.burst must be a positive integer')
    if (typeof perSecond !== 'number' || !(perSecond >= 0)) throw new InvalidOptionError('unknownLookups.perSecond must be a number of at least 0')
    this.#burst = this.#tokens = burst
    this.#perMs = perSecond / 1000
  }

  /**
   * Resolves true with a token held, or false when the budget is spent. Waiters are woken by the
   * look-ups in flight, which end one way or another (close() aborts them).
   */
  async admit (): Promise<boolean> {
    for (;;) {
      const now = Date.now()
      this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.#perMs)
      this.#at = now
      if (this.#tokens - this.#pending >= 1) {
        this.#pending++
        return true
      }
      if (this.#pending === 0) return false
      await new Promise<void>((resolve) => this.#waiting.push(resolve))
    }
  }

  /** Gives the token back, or spends it when the answer was "unknown"; wakes the waiting. */
  settle (spent: boolean): void {
    this.#pending--
    if (spent) this.#tokens = Math.max(0, this.#tokens - 1)
    for (const wake of this.#waiting.splice(0)) wake()
  }
}
