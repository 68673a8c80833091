import { InvalidOptionError, TenantInvalidError, TenantMismatchError } from './errors.ts'
import { RESERVED_TENANT_IDS, assertTenantId, isValidTenantId } from './tenant-id.ts'

/** Where a tenant id can come from. */
export type StrategyName = 'header' | 'query' | 'path' | 'subdomain' | 'domain' | 'token' | 'fixed'

export const STRATEGY_NAMES: readonly StrategyName[] = ['header', 'query', 'path', 'subdomain', 'domain', 'token', 'fixed']

export interface ResolverOptions {
  /**
   * The sources to read, in order: the first that names a tenant wins. `token` and `fixed` are
   * authorities: whatever they name, every other source that names a tenant must agree.
   * Default: `['token', 'header', 'subdomain', 'domain']` without the ones not configured
   * (`subdomain` needs `baseDomain`); `['fixed', 'token']` when `fixedTenant` is set.
   */
  strategies?: StrategyName[]
  /** Request header for the `header` strategy. Default: `'x-tenant-id'`. */
  header?: string
  /** Query parameter for the `query` strategy. Default: `'tenant_id'`. */
  queryParam?: string
  /** Path prefix for the `path` strategy: `/tenants/:id/…`. Default: `'/tenants/'`. */
  pathPrefix?: string
  /** Base domain for the `subdomain` strategy, e.g. `'example.com'` for `acme.example.com`. */
  baseDomain?: string
  /** Claim of a verified token for the `token` strategy. Default: `'tenant'`. */
  tokenClaim?: string
  /** The one tenant of a dedicated instance (`TENANT`); enables the `fixed` strategy. */
  fixedTenant?: string
}

/** What a request offers the resolver. Every field is optional. */
export interface ResolveInput {
  /** Lower-cased header names, as Node's `IncomingMessage.headers`. */
  headers?: Readonly<Record<string, string | string[] | undefined>>
  /** The Host (or :authority), with or without a port. */
  host?: string | undefined
  /** The URL path, without the query string. */
  path?: string | undefined
  /** Parsed query: `URLSearchParams` or an object such as Fastify's `request.query`. */
  query?: URLSearchParams | Readonly<Record<string, unknown>> | undefined
  /** Claims of a token that has been verified. Never pass unverified claims. */
  claims?: Readonly<Record<string, unknown>> | null | undefined
}

export type Resolution =
  | { readonly kind: 'tenant', readonly tenantId: string, readonly source: StrategyName }
  /** The host may be a tenant's custom domain: look it up, then call `checkHostTenant`. */
  | { readonly kind: 'host', readonly host: string, readonly authority: string | null }
  | { readonly kind: 'none' }

const NONE: Resolution = Object.freeze({ kind: 'none' })
const DEFAULT_HEADER = 'x-tenant-id'
const DEFAULT_QUERY_PARAM = 'tenant_id'
const DEFAULT_PATH_PREFIX = '/tenants/'
const DEFAULT_TOKEN_CLAIM = 'tenant'
const HOSTNAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/

/**
 * Normalises a Host value: port stripped, case folded, one trailing dot removed. Returns `null`
 * for an IP literal or `localhost` (never a tenant) and throws `TENANT_INVALID` for a malformed host.
 */
export function normalizeHost (raw: string): string | null {
  if (raw.startsWith('[')) return null // IPv6 literal
  const colon = raw.indexOf(':')
  let host = (colon === -1 ? raw : raw.slice(0, colon)).toLowerCase()
  if (colon !== -1 && !/^\d{1,5}$/.test(raw.slice(colon + 1))) throw new TenantInvalidError('')
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (!HOSTNAME.test(host)) throw new TenantInvalidError('')
  if (host === 'localhost' || IPV4.test(host)) return null
  return host
}

/**
 * Works out which tenant a request names, from its ordered sources, and validates every id it
 * reads (pattern, length, reserved names) before anything is looked up.
 */
export class TenantResolver {
  readonly strategies: readonly StrategyName[]
  readonly #header: string
  readonly #queryParam: string
  readonly #pathPrefix: string
  readonly #pathPrefixLower: string
  readonly #baseSuffix: string | null
  readonly #baseDomain: string | null
  readonly #tokenClaim: string
  readonly #fixed: string | null
  readonly #sources: ReadonlyArray<(input: ResolveInput) => string | undefined>
  readonly #sourceNames: readonly StrategyName[]
  readonly #useToken: boolean
  readonly #useDomain: boolean
  /** Which parts of a request the configured strategies read, so callers can skip the rest. */
  readonly reads: Readonly<{ headers: boolean, host: boolean, path: boolean, query: boolean, claims: boolean }>

  constructor (options: ResolverOptions = {}) {
    const baseDomain = options.baseDomain?.toLowerCase().replace(/\.$/, '')
    if (baseDomain !== undefined && !HOSTNAME.test(baseDomain)) {
      throw new InvalidOptionError('baseDomain must be a host name such as "example.com"')
    }
    if (options.fixedTenant !== undefined && !isValidTenantId(options.fixedTenant)) {
      throw new InvalidOptionError('fixedTenant must be a valid tenant id')
    }
    this.#baseDomain = baseDomain ?? null
    this.#baseSuffix = baseDomain === undefined ? null : '.' + baseDomain
    this.#fixed = options.fixedTenant ?? null
    this.#header = (options.header ?? DEFAULT_HEADER).toLowerCase()
    this.#queryParam = options.queryParam ?? DEFAULT_QUERY_PARAM
    this.#pathPrefix = options.pathPrefix ?? DEFAULT_PATH_PREFIX
    this.#pathPrefixLower = this.#pathPrefix.toLowerCase()
    this.#tokenClaim = options.tokenClaim ?? DEFAULT_TOKEN_CLAIM
    if (!this.#pathPrefix.startsWith('/') || !this.#pathPrefix.endsWith('/')) {
      throw new InvalidOptionError('pathPrefix must start and end with "/"')
    }

    let strategies = options.strategies
    if (strategies === undefined) {
      strategies = this.#fixed !== null
        ? ['fixed', 'token']
        : ['token', 'header', ...(baseDomain === undefined ? [] : ['subdomain' as const]), 'domain']
    }
    if (strategies.length === 0) throw new InvalidOptionError('strategies must not be empty')
    for (const name of strategies) {
      if (!STRATEGY_NAMES.includes(name)) throw new InvalidOptionError(`unknown strategy "${String(name)}"`)
      if (strategies.indexOf(name) !== strategies.lastIndexOf(name)) {
        throw new InvalidOptionError(`strategy "${name}" is listed twice`)
      }
    }
    if (strategies.includes('subdomain') && baseDomain === undefined) {
      throw new InvalidOptionError('the subdomain strategy needs baseDomain')
    }
    if (strategies.includes('fixed') !== (this.#fixed !== null)) {
      throw new InvalidOptionError('the fixed strategy and fixedTenant go together')
    }
    this.strategies = Object.freeze([...strategies])
    this.#useToken = strategies.includes('token')
    this.#useDomain = strategies.includes('domain')
    const names: StrategyName[] = []
    const sources: Array<(input: ResolveInput) => string | undefined> = []
    for (const name of strategies) {
      const source = this.#source(name)
      if (source !== undefined) {
        names.push(name)
        sources.push(source)
      }
    }
    // In dedicated mode the request's own sources never route, but a different tenant there is
    // still refused, so they are read for the agreement check.
    if (this.#fixed !== null) {
      for (const name of ['header', 'query', 'path', 'subdomain'] as const) {
        if (!names.includes(name) && (name !== 'subdomain' || baseDomain !== undefined)) {
          names.push(name)
          sources.push(this.#source(name) as (input: ResolveInput) => string | undefined)
        }
      }
    }
    this.#sources = sources
    this.#sourceNames = names
    this.reads = Object.freeze({
      headers: names.includes('header'),
      host: names.includes('subdomain') || this.#useDomain,
      path: names.includes('path'),
      query: names.includes('query'),
      claims: this.#useToken || this.#fixed !== null
    })
  }

  #source (name: StrategyName): ((input: ResolveInput) => string | undefined) | undefined {
    switch (name) {
      case 'header': return (input) => this.#fromHeader(input)
      case 'query': return (input) => this.#fromQuery(input)
      case 'path': return (input) => this.#fromPath(input)
      case 'subdomain': return (input) => this.#fromSubdomain(input)
      case 'fixed': return () => this.#fixed as string
      default: return undefined // token and domain are handled around the ordered sources
    }
  }

  #fromHeader (input: ResolveInput): string | undefined {
    const value = input.headers?.[this.#header]
    if (value === undefined) return undefined
    return assertTenantId(value)
  }

  #fromQuery (input: ResolveInput): string | undefined {
    const query = input.query
    if (query === undefined) return undefined
    if (query instanceof URLSearchParams) {
      const all = query.getAll(this.#queryParam)
      if (all.length === 0) return undefined
      if (all.length > 1) throw new TenantInvalidError('')
      return assertTenantId(all[0])
    }
    const value = query[this.#queryParam]
    if (value === undefined) return undefined
    return assertTenantId(value)
  }

  #fromPath (input: ResolveInput): string | undefined {
    const path = input.path
    // Any case: a router set to ignore case matches /TENANTS/… too, and the agreement check must see it.
    if (path === undefined || path.slice(0, this.#pathPrefix.length).toLowerCase() !== this.#pathPrefixLower) return undefined
    const start = this.#pathPrefix.length
    let end = path.indexOf('/', start)
    if (end === -1) end = path.length
    // Not decoded: ids need no escaping, so an escaped id is not a valid one.
    return assertTenantId(path.slice(start, end))
  }

  #fromSubdomain (input: ResolveInput): string | undefined {
    if (input.host === undefined) return undefined
    const host = normalizeHost(input.host)
    if (host === null) return undefined
    const suffix = this.#baseSuffix as string
    if (!host.endsWith(suffix)) return undefined
    const label = host.slice(0, -suffix.length)
    // www.example.com and friends are the platform's own hosts, not tenants.
    if (RESERVED_TENANT_IDS.has(label)) return undefined
    if (label.includes('.')) throw new TenantInvalidError('')
    return assertTenantId(label)
  }

  #fromToken (input: ResolveInput): string | undefined {
    const claims = input.claims
    if (claims == null) return undefined
    const value = claims[this.#tokenClaim]
    if (value === undefined || value === null) return undefined
    return assertTenantId(value)
  }

  /** A candidate custom domain: a valid host outside the base domain. */
  #customHost (input: ResolveInput): string | null {
    if (input.host === undefined) return null
    const host = normalizeHost(input.host)
    if (host === null) return null
    if (this.#baseDomain !== null && (host === this.#baseDomain || host.endsWith(this.#baseSuffix as string))) return null
    return host
  }

  /**
   * Resolves a request. Throws `TENANT_INVALID` for a malformed id in any source, and
   * `TENANT_MISMATCH` when two sources name different tenants (a header never overrides a token).
   */
  resolve (input: ResolveInput): Resolution {
    let authority: string | null = null
    if (this.#useToken || this.#fixed !== null) {
      const fromToken = this.#fromToken(input) ?? null
      if (this.#fixed !== null && fromToken !== null && fromToken !== this.#fixed) throw new TenantMismatchError()
      authority = this.#fixed ?? fromToken
    }
    let found: string | undefined
    let source: StrategyName | undefined
    const sources = this.#sources
    for (let i = 0; i < sources.length; i++) {
      const id = (sources[i] as (input: ResolveInput) => string | undefined)(input)
      if (id === undefined) continue
      if (found === undefined) {
        found = id
        source = this.#sourceNames[i]
      } else if (id !== found) {
        throw new TenantMismatchError()
      }
    }
    if (authority !== null) {
      if (found !== undefined && found !== authority) throw new TenantMismatchError()
      if (this.#fixed === null && this.#useDomain && found === undefined) {
        // A token names the tenant; a custom domain, if any, must agree with it.
        const host = this.#customHost(input)
        if (host !== null) return { kind: 'host', host, authority }
      }
      return { kind: 'tenant', tenantId: authority, source: this.#fixed === null ? 'token' : 'fixed' }
    }
    if (found !== undefined) return { kind: 'tenant', tenantId: found, source: source as StrategyName }
    if (this.#useDomain) {
      const host = this.#customHost(input)
      if (host !== null) return { kind: 'host', host, authority: null }
    }
    return NONE
  }

  /**
   * After a custom-domain look-up: the tenant id the host belongs to (or `null`), checked against
   * the token's tenant. Returns the tenant id the request runs as, or `null` for none.
   */
  checkHostTenant (resolution: Resolution & { kind: 'host' }, hostTenantId: string | null): string | null {
    if (resolution.authority === null) return hostTenantId
    if (hostTenantId !== null && hostTenantId !== resolution.authority) throw new TenantMismatchError()
    return resolution.authority
  }

  /** Resolves from a URL string (host, path and query; no headers or token). */
  resolveUrl (url: string | URL): Resolution {
    let parsed: URL
    try {
      parsed = typeof url === 'string' ? new URL(url) : url
    } catch {
      throw new TenantInvalidError('')
    }
    return this.resolve({ host: parsed.host, path: parsed.pathname, query: parsed.searchParams })
  }
}

export function createResolver (options?: ResolverOptions): TenantResolver {
  return new TenantResolver(options)
}
