import { LRUCache } from 'lru-cache'
import type { Dispatcher } from 'undici'
import { currentTenantId, runInScope } from './context.ts'
import {
  InvalidOptionError, RegistryRefusedError, RegistryResponseError, RegistryUnreachableError, TenantMismatchError,
  TenantNotFoundError, TenantRequiredError, TenantSuspendedError
} from './errors.ts'

/** An internal service whose calls carry a token exchanged for the current tenant. */
export interface InternalOrigin {
  /** The service's origin, e.g. `'http://comm:4200'` (a path is ignored). */
  origin: string | URL
  /** The audience its tokens are for, e.g. `'comm'`. */
  audience: string
  /** Scopes to ask for, space-separated. Default: every scope the service is registered for. */
  scope?: string
}

/** Where and how tenant-bound tokens are obtained (`POST <registry>/v1/token`). */
export interface TokenExchangeOptions {
  /** The registry (REGISTRY_URL); a path prefix is kept (`http://gateway/registry`). */
  registry: string | URL
  /** The service's own credential (SERVICE_TOKEN), or a function returning the current one. */
  credential: string | (() => string)
  /** Tokens kept, one per tenant, audience and scope (default 10,000). */
  max?: number
  /** Timeout of one exchange, in ms (default 5 s). */
  timeout?: number
  /** The dispatcher for calls to the registry. Default: `fetch`'s global one. */
  dispatcher?: Dispatcher
  /** Clock for token freshness, in ms (default `performance.now`); for tests. */
  now?: () => number
}

export interface TenantPropagationOptions {
  /**
   * Internal services. A URL (`http://registry:3000`) gets `X-Tenant-ID` only; `{ origin,
   * audience }` gets `X-Tenant-ID` and a token for the current tenant and that audience, and is
   * never called outside a tenant scope (needs `exchange`). Required.
   */
  origins: Array<string | URL | InternalOrigin>
  /** Header name. Default: `'x-tenant-id'`. */
  header?: string
  /** Token exchange for the origins that name an audience. */
  exchange?: TokenExchangeOptions
}

type Headers = Dispatcher.DispatchOptions['headers']

/** Before a token's end, the time at which a fresh one is fetched: 30 s, or a fifth of a short lifetime. */
const REFRESH_MARGIN_MS = 30_000
const DEFAULT_MAX = 10_000
const DEFAULT_TIMEOUT = 5000
const MAX_LIFETIME_S = 86_400

function originOf (value: string | URL): string {
  try {
    return new URL(value).origin
  } catch {
    throw new InvalidOptionError(`origin "${String(value)}" is not a URL`)
  }
}

interface WithTenant {
  /** The request's own value of the tenant header, if it had one. */
  existing: string | undefined
  /** Whether the request carries its own `Authorization`. */
  authorized: boolean
  /** A copy of the headers (in the same shape) with the tenant header added when absent. */
  headers: string[] | Record<string, string | string[] | undefined>
}

/** Reads undici's header shapes (object, flat array, iterable) once: see `WithTenant`. */
function withHeader (headers: Headers, name: string, value: string): WithTenant {
  if (headers == null) return { existing: undefined, authorized: false, headers: { [name]: value } }
  let existing: string | undefined
  let authorized = false
  if (Array.isArray(headers)) {
    const copy = headers.map(String)
    for (let i = 0; i < copy.length; i += 2) {
      const key = (copy[i] as string).toLowerCase()
      if (key === name) existing = copy[i + 1]
      else if (key === 'authorization') authorized = true
    }
    if (existing === undefined) copy.push(name, value)
    return { existing, authorized, headers: copy }
  }
  const entries: Array<[string, unknown]> = Symbol.iterator in headers
    ? Array.from(headers as Iterable<[string, unknown]>)
    : Object.entries(headers)
  const copy: Record<string, string | string[] | undefined> = {}
  for (const [key, v] of entries) {
    const lower = key.toLowerCase()
    if (lower === name) existing = String(v)
    else if (lower === 'authorization') authorized = true
    copy[key] = v as string | string[] | undefined
  }
  if (existing === undefined) copy[name] = value
  return { existing, authorized, headers: copy }
}

/** Adds `Authorization` to a copy `withHeader` made. */
function withToken (headers: WithTenant['headers'], token: string): WithTenant['headers'] {
  const value = `Bearer ${token}`
  return Array.isArray(headers) ? [...headers, 'authorization', value] : { ...headers, authorization: value }
}

interface Audience { audience: string, scope: string | undefined, origin: string, /** Cache key prefix. */ key: string }
interface Issued { token: string }
interface Want { tenant: string, target: Audience }

/** Tenant-bound tokens from the registry's exchange, cached per tenant, audience and scope. */
class TokenExchange {
  readonly #url: string
  readonly #credential: () => string
  readonly #timeout: number
  readonly #dispatcher: Dispatcher | undefined
  readonly #cache: LRUCache<string, Issued, Want>

  constructor (options: TokenExchangeOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('exchange must be an object with registry and credential')
    let base: URL
    try {
      base = new URL(options.registry)
    } catch {
      throw new InvalidOptionError(`exchange.registry (REGISTRY_URL) must be a URL, got ${JSON.stringify(String(options.registry))}`)
    }
    this.#url = base.origin + base.pathname.replace(/\/+$/, '') + '/v1/token'
    const credential = options.credential
    if (typeof credential !== 'function' && (typeof credential !== 'string' || credential === '')) {
      throw new InvalidOptionError('exchange.credential (SERVICE_TOKEN) must be a non-empty string or a function')
    }
    this.#credential = typeof credential === 'function' ? credential : () => credential
    this.#timeout = options.timeout ?? DEFAULT_TIMEOUT
    this.#dispatcher = options.dispatcher
    const now = options.now
    this.#cache = new LRUCache<string, Issued, Want>({
      max: options.max ?? DEFAULT_MAX,
      // An injected clock jumps: read it on every look-up (lru-cache otherwise reuses a reading for 1 ms).
      ...(now === undefined ? {} : { perf: { now }, ttlResolution: 0 }),
      // lru-cache coalesces concurrent misses of one key into one exchange.
      fetchMethod: async (_key, _stale, { options: set, context }) => {
        const { token, lifetimeMs } = await this.#exchange(context)
        set.ttl = lifetimeMs - Math.min(REFRESH_MARGIN_MS, lifetimeMs / 5)
        return { token }
      }
    })
  }

  /** A fresh cached token, or undefined. */
  cached (tenant: string, target: Audience): string | undefined {
    return this.#cache.get(target.key + tenant)?.token
  }

  /** A token for the tenant and audience: cached, or one exchange shared by concurrent callers. */
  async token (tenant: string, target: Audience): Promise<string> {
    const issued = await this.#cache.fetch(target.key + tenant, { context: { tenant, target } })
    return (issued as Issued).token
  }

  /** Forgets `token` (the target refused it); a token fetched since then is kept. */
  invalidate (tenant: string, target: Audience, token: string): void {
    const key = target.key + tenant
    if (this.#cache.peek(key)?.token === token) this.#cache.delete(key)
  }

  async #exchange ({ tenant, target }: Want): Promise<{ token: string, lifetimeMs: number }> {
    // No tenant scope around the registry call: it is the service's own, whatever dispatcher it uses.
    return await runInScope(undefined, async () => {
      let res: Response
      let text: string
      try {
        res = await fetch(this.#url, {
          method: 'POST',
          headers: { authorization: `Bearer ${this.#credential()}`, 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify({ tenant, audience: target.audience, ...(target.scope === undefined ? {} : { scope: target.scope }) }),
          signal: AbortSignal.timeout(this.#timeout),
          ...(this.#dispatcher === undefined ? {} : { dispatcher: this.#dispatcher })
        } as RequestInit)
        text = await res.text()
      } catch (err) {
        const e = err as { name?: unknown, cause?: { code?: unknown } }
        // fetch's network errors carry the socket's code in `cause`.
        /* c8 ignore next */
        const why = e.name === 'TimeoutError' ? `no answer within ${this.#timeout} ms` : String(e.cause?.code ?? e.name)
        throw Object.assign(new RegistryUnreachableError(this.#url, why), { cause: err })
      }
      let body: Record<string, unknown> | null = null
      try {
        const parsed: unknown = JSON.parse(text)
        if (typeof parsed === 'object' && parsed !== null) body = parsed as Record<string, unknown>
      } catch {}
      if (res.status === 200) {
        const token = body?.access_token
        const lifetime = body?.expires_in
        if (typeof token !== 'string' || token === '' || typeof body?.token_type !== 'string' || body.token_type.toLowerCase() !== 'bearer' ||
          typeof lifetime !== 'number' || !(lifetime > 0) || lifetime > MAX_LIFETIME_S) {
          throw new RegistryResponseError(`POST /v1/token answered 200 without a bearer access_token and expires_in (1 to ${MAX_LIFETIME_S} s)`)
        }
        return { token, lifetimeMs: lifetime * 1000 }
      }
      const code = typeof body?.code === 'string' ? body.code : undefined
      // The tenant's own state is the caller's answer (a suspended tenant's call fails as such);
      // anything else about the credential is this service's configuration, not the caller's.
      if (code === 'TENANT_SUSPENDED') throw new TenantSuspendedError()
      if (code === 'TENANT_NOT_FOUND') throw new TenantNotFoundError()
      if (res.status >= 500 || res.status === 429) throw new RegistryUnreachableError(this.#url, `HTTP ${res.status}`)
      if (res.status === 401 || res.status === 403) {
        const detail = typeof body?.message === 'string' ? `: ${body.message.slice(0, 200)}` : ''
        throw new RegistryRefusedError(`HTTP ${res.status} ${code ?? ''} for POST /v1/token (tenant ${tenant}, audience ${target.audience})${detail}; check the service's credential (SERVICE_TOKEN) and its registration`)
      }
      throw new RegistryResponseError(`POST /v1/token answered HTTP ${res.status} ${code ?? ''}`)
    })
  }
}

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type ResponseHeaders = Parameters<NonNullable<Handler['onResponseStart']>>[2]

/** Hands the caller one controller across the first attempt and the retry (as undici's RetryHandler does). */
class ControllerProxy implements Controller {
  #target: Controller | null = null
  #paused = false
  pause (): void { this.#paused = true; this.#target?.pause() }
  resume (): void { this.#paused = false; this.#target?.resume() }
  abort (reason: Error): void { this.#target?.abort(reason) }
  get paused (): boolean { return this.#paused }
  get aborted (): boolean { return this.#target?.aborted ?? false }
  get reason (): Error | null { return this.#target?.reason ?? null }
  attach (controller: Controller): void {
    this.#target = controller
    // A caller that paused while the refused answer was dropped stays paused on the retry (as in
    // undici's RetryHandler); no test can pause it in that window without racing the socket.
    /* c8 ignore next */
    if (this.#paused) controller.pause()
  }
}

/**
 * Passes a call's events on to the caller's handler, except a first 401 from the target (it
 * refused the token: revoked, or its keys rotated): that answer is read and dropped, the token
 * forgotten, and the call sent once more with a fresh one. A body that cannot be sent twice (a
 * stream) is not retried: the caller gets the 401.
 */
class TokenRetryHandler implements Handler {
  readonly #handler: Handler
  readonly #proxy = new ControllerProxy()
  readonly #refused: () => void
  readonly #retry: (() => void) | null
  #started = false
  #retried = false
  #dropping = false

  constructor (handler: Handler, refused: () => void, retry: (() => void) | null) {
    this.#handler = handler
    this.#refused = refused
    this.#retry = retry
  }

  onRequestStart (controller: Controller, context: unknown): void {
    this.#proxy.attach(controller)
    if (this.#started) return
    this.#started = true
    this.#handler.onRequestStart?.(this.#proxy, context)
  }

  onRequestUpgrade (_controller: Controller, statusCode: number, headers: ResponseHeaders, socket: Parameters<NonNullable<Handler['onRequestUpgrade']>>[3]): void {
    this.#handler.onRequestUpgrade?.(this.#proxy, statusCode, headers, socket)
  }

  onResponseStart (_controller: Controller, statusCode: number, headers: ResponseHeaders, statusMessage?: string): void {
    if (statusCode === 401 && !this.#retried) {
      this.#retried = true
      this.#refused()
      if (this.#retry !== null) {
        this.#dropping = true
        return
      }
    }
    this.#handler.onResponseStart?.(this.#proxy, statusCode, headers, statusMessage)
  }

  onResponseData (_controller: Controller, chunk: Buffer): void {
    if (!this.#dropping) this.#handler.onResponseData?.(this.#proxy, chunk)
  }

  onResponseEnd (_controller: Controller, trailers: ResponseHeaders): void {
    if (this.#dropping) {
      this.#dropping = false
      ;(this.#retry as () => void)()
      return
    }
    this.#handler.onResponseEnd?.(this.#proxy, trailers)
  }

  onResponseError (_controller: Controller | null, err: Error): void {
    this.#dropping = false
    this.#handler.onResponseError?.(this.#proxy, err)
  }
}

function replayable (body: Dispatcher.DispatchOptions['body']): boolean {
  return body == null || typeof body === 'string' || body instanceof Uint8Array
}

/**
 * An undici interceptor for calls to the platform's internal services. Inside a tenant scope it
 * adds the tenant's `X-Tenant-ID` to requests for the configured origins, and to no other origin;
 * for origins that name an `audience` it also adds `Authorization: Bearer <token>`, a token the
 * registry issued this service for the current tenant and that audience (token exchange, cached,
 * refreshed before it expires, fetched again after a 401 and the call retried once). A request
 * that already names a *different* tenant fails with `TENANT_MISMATCH` rather than leave the
 * scope. Outside a tenant scope (and in a system scope) header-only origins get nothing, and
 * token origins are refused (`TENANT_REQUIRED`): nothing is sent.
 *
 * ```ts
 * const calls = new Agent().compose(tenantPropagation({
 *   origins: [{ origin: 'http://comm:4200', audience: 'comm' }],
 *   exchange: { registry: process.env.REGISTRY_URL!, credential: process.env.SERVICE_TOKEN! }
 * }))
 * ```
 */
export function tenantPropagation (options: TenantPropagationOptions): Dispatcher.DispatcherComposeInterceptor {
  if (!Array.isArray(options?.origins)) throw new InvalidOptionError('origins must be an array of URLs or { origin, audience }')
  const targets = new Map<string, Audience | null>()
  for (const entry of options.origins) {
    if (typeof entry === 'string' || entry instanceof URL) {
      targets.set(originOf(entry), null)
      continue
    }
    if (typeof entry?.audience !== 'string' || entry.audience === '') throw new InvalidOptionError('an origin given as an object needs { origin, audience }')
    if (entry.scope !== undefined && typeof entry.scope !== 'string') throw new InvalidOptionError(`the scope for ${entry.audience} must be a space-separated string`)
    const origin = originOf(entry.origin)
    targets.set(origin, { audience: entry.audience, scope: entry.scope, origin, key: `${entry.audience} ${entry.scope ?? '*'} ` })
  }
  const needsTokens = [...targets.values()].some((target) => target !== null)
  if (needsTokens && options.exchange === undefined) throw new InvalidOptionError('origins with an audience need exchange: { registry, credential }')
  const exchange = needsTokens ? new TokenExchange(options.exchange as TokenExchangeOptions) : null
  const name = (options.header ?? 'x-tenant-id').toLowerCase()

  return (dispatch) => function tenantPropagationDispatch (opts, handler) {
    // undici passes the origin it parsed (`http://host:port`): a direct hit needs no URL parsing.
    const origin = opts.origin
    const target = origin === undefined ? undefined : targets.has(origin as string) ? targets.get(origin as string) : targets.get(originOf(origin))
    if (target === undefined) return dispatch(opts, handler)
    const tenantId = currentTenantId()
    if (tenantId === undefined) {
      if (target === null) return dispatch(opts, handler)
      throw new TenantRequiredError(`: calls to ${target.origin} (${target.audience}) carry a token for a tenant, and no tenant is in scope here (make them inside runAsTenant or a tenant request)`)
    }
    const { existing, authorized, headers } = withHeader(opts.headers, name, tenantId)
    if (existing !== undefined && existing !== tenantId) throw new TenantMismatchError()
    // A caller that set its own Authorization (forwarding a user's token) keeps it.
    if (target === null || authorized) return dispatch({ ...opts, headers }, handler)
    const tokens = exchange as TokenExchange

    let sent = ''
    const sendWith = (token: string): boolean => {
      sent = token
      return dispatch({ ...opts, headers: withToken(headers, token) }, retrying)
    }
    const send = (): void => {
      tokens.token(tenantId, target).then(sendWith).catch((err: Error) => { retrying.onResponseError(null, err) })
    }
    const retrying = new TokenRetryHandler(handler, () => { tokens.invalidate(tenantId, target, sent) }, replayable(opts.body) ? send : null)
    // A cached token goes out at once; a miss (or a token due for refresh) waits for the exchange.
    const cached = tokens.cached(tenantId, target)
    if (cached !== undefined) return sendWith(cached)
    send()
    return true
  }
}
