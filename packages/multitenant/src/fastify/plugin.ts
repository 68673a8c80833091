import type {
  FastifyBaseLogger, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest,
  HookHandlerDoneFunction, onRequestHookHandler, RouteGenericInterface, RouteOptions
} from 'fastify'
import { setTimeout as delay } from 'node:timers/promises'
import fp from 'fastify-plugin'
import { runInScope, tenantScope, type TenantScope } from '../context.ts'
import { actorOf, UnauthorizedError } from '../claims.ts'
import {
  ForbiddenError, InvalidOptionError, RateLimitedError, REQUEST_NAMES_NO_TENANT, TenantNotFoundError, TenantProvisioningError,
  TenantMismatchError, TenantRequiredError, TenantSuspendedError, TenantUnavailableError
} from '../errors.ts'
import type { MigrateAllSummary, TenantMigrator } from '../migrations.ts'
import type { TenantDb, TenantDbOptions } from '../pg/tenant-db.ts'
import type { RegistryClient, RegistryClientOptions } from '../registry-client.ts'
import { TenantResolver, type ResolveInput, type Resolution, type ResolverOptions } from '../resolver.ts'
import type { Tenant, TenantProvider, TenantTier } from '../types.ts'
import { authPlugin, excluded, type AuthOptions } from './auth.ts'
import { optionalPeer } from './peers.ts'
import createError from '@fastify/error'

/** Per route, in `config.tenant`: must the request name a tenant? `false` skips resolution. */
export type TenantRouteMode = 'required' | 'optional' | false

export interface TenantRateLimitOptions {
  /** Window of the limit. Default: `'1 minute'`. */
  timeWindow?: string | number
  /** Requests per window by tier, when the tenant's `limits.requestsPerMinute` is absent. Default: `DEFAULT_TIER_LIMITS`. */
  tiers?: Partial<Record<TenantTier, number>>
  /** Requests per window when neither the tenant nor its tier names one. Default: 1000. */
  max?: number
}

export interface MigrationsOptions {
  /** Folder of `*.sql` files, applied in name order to every tenant schema (see `tenant-migrate`). */
  dir: string
  /** Tenants migrated at once at start (default 8). */
  concurrency?: number
  /** After a tenant's migration failed, ms before a request tries it again (default 5 s; until then 503). */
  retryFailedAfter?: number
  /**
   * How long start-up waits for the registry's change feed before listing tenants, in ms (default
   * 10 s). Past it the listing goes ahead: a tenant created meanwhile is migrated on first use.
   */
  feedTimeout?: number
  /**
   * Wait for every tenant at start before `ready()` resolves (default true). With false the
   * start-up run goes on in the background; a request for a tenant not yet done waits for its
   * tenant alone.
   */
  wait?: boolean
}

export interface MultitenantPluginOptions extends ResolverOptions {
  /**
   * The tenant registry: options to create the cached client (closed with the app), or a client
   * you created (yours to close). `ready()` fails when its URL or token do not work.
   */
  registry?: RegistryClientOptions | RegistryClient
  /**
   * Looks tenants up by id and (for custom domains) by host, instead of `registry` (an in-memory
   * provider in tests, or your own).
   */
  provider?: TenantProvider
  /**
   * The tenant database: `TenantDb` options (`url` or `clusters`; closed with the app) or a
   * `TenantDb` you created. Needs the optional peers `postgres` and `drizzle-orm`.
   */
  db?: TenantDbOptions<Record<string, unknown>> | TenantDb<Record<string, unknown>>
  /** Keep every tenant's schema migrated (needs `db`): at start, on `tenant.created`, on first use. */
  migrations?: MigrationsOptions
  /** Verify bearer tokens before resolution (needs the optional peer `@fastify/jwt`). */
  auth?: AuthOptions
  /** Default mode of routes that do not set `config.tenant`. Default: `'required'`. */
  tenant?: 'required' | 'optional'
  /**
   * Route URLs that are never resolved: exact paths, or prefixes ending in `*`.
   * Default: `['/health', '/docs*']`.
   */
  exclude?: string[]
  /**
   * Reads the claims of the request's *verified* token. Default: `request.claims` (set by `auth`),
   * else `request.user` when it is an object (set by `@fastify/jwt`'s `request.jwtVerify()` in an
   * earlier `onRequest` hook).
   */
  claims?: (request: FastifyRequest) => Readonly<Record<string, unknown>> | null | undefined
  /** Seconds in the `Retry-After` header while a tenant is provisioning. Default: 5. */
  retryAfterSeconds?: number
  /** Per-tenant rate limiting with `@fastify/rate-limit`, keyed by tenant. Default: off. */
  rateLimit?: TenantRateLimitOptions | boolean
}

export const DEFAULT_EXCLUDE: readonly string[] = Object.freeze(['/health', '/docs*'])
export const DEFAULT_TIER_LIMITS: Readonly<Record<TenantTier, number>> = Object.freeze({
  free: 300, standard: 3000, premium: 30000
})
export const DEFAULT_RETRY_AFTER_SECONDS = 5

/** Answered while a tenant's tables cannot be brought up to date (a migration failed). */
export const TenantNotReadyError = createError<'SERVICE_UNAVAILABLE', 503, []>(
  'SERVICE_UNAVAILABLE', 'The tenant\'s tables are being prepared, try again later', 503, undefined, false)

declare module 'fastify' {
  interface FastifyInstance {
    /** The registry client the plugin created or was given (throws when there is none). */
    readonly tenantRegistry: RegistryClient
    /** The tenant database the plugin created or was given (throws without `db`). */
    readonly tenantDb: TenantDb<Record<string, unknown>>
    /** Keeps tenant schemas migrated (throws without `migrations`). */
    readonly tenantMigrator: TenantMigrator
  }
  interface FastifyRequest {
    /** The request's tenant, or `null` on routes where it is optional or not resolved. */
    tenant: Tenant | null
    /** The request's tenant scope, re-entered after body parsing. */
    tenantScope: TenantScope | undefined
  }
  interface FastifyContextConfig {
    /** Must a request to this route name a tenant? Default: the plugin's `tenant` option. */
    tenant?: TenantRouteMode
  }
}

function isPromise<T> (value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function'
}

function defaultClaims (request: FastifyRequest): Readonly<Record<string, unknown>> | null {
  const claims = (request as { claims?: unknown }).claims
  if (typeof claims === 'object' && claims !== null) return claims as Record<string, unknown>
  const user = (request as { user?: unknown }).user
  return typeof user === 'object' && user !== null ? user as Record<string, unknown> : null
}

function isInstance<T> (value: unknown, method: string): value is T {
  return typeof value === 'object' && value !== null && typeof (value as Record<string, unknown>)[method] === 'function'
}

/** Registry, database and migrations: created from options (and closed with the app) or given. */
async function ownParts (fastify: FastifyInstance, options: MultitenantPluginOptions): Promise<{ provider: TenantProvider, migrator: TenantMigrator | undefined }> {
  const closers: Array<() => Promise<void>> = []
  // Last opened, first closed: migrations under way finish before the pools close.
  const closeAll = async (): Promise<void> => {
    for (const close of closers.splice(0).reverse()) await close()
  }
  fastify.addHook('onClose', closeAll)
  try {
    return await createParts(fastify, options, closers)
  } catch (err) {
    // ready() fails: nothing the plugin opened (a feed long poll, pools) may keep the process alive.
    await Promise.allSettled([closeAll()])
    throw err
  }
}

async function createParts (fastify: FastifyInstance, options: MultitenantPluginOptions, closers: Array<() => Promise<void>>): Promise<{ provider: TenantProvider, migrator: TenantMigrator | undefined }> {
  let registry: RegistryClient | undefined
  if (options.registry !== undefined) {
    if (isInstance<RegistryClient>(options.registry, 'getTenant')) {
      registry = options.registry
    } else {
      const { RegistryClient } = await optionalPeer('registry', 'undici', async () => await import('../registry-client.ts'))
      const owned = registry = new RegistryClient({ logger: fastify.log.child({ component: 'tenant-registry-client' }), ...options.registry })
      closers.push(async () => await owned.close())
      // One authenticated call: a wrong URL or token fails ready(), naming the setting.
      await owned.check()
    }
  }
  const provider = options.provider ?? registry
  if (provider === undefined) throw new InvalidOptionError('registry (REGISTRY_URL and SERVICE_TOKEN) or provider is required')
  if (typeof provider !== 'object' || provider === null || typeof provider.getTenant !== 'function') {
    throw new InvalidOptionError('provider must have a getTenant(id) method')
  }

  let db: TenantDb<Record<string, unknown>> | undefined
  if (options.db !== undefined) {
    if (isInstance<TenantDb<Record<string, unknown>>>(options.db, 'transaction')) {
      db = options.db
    } else {
      const { TenantDb } = await optionalPeer('db', ['postgres', 'drizzle-orm'], async () => await import('../pg/tenant-db.ts'))
      const owned = db = new TenantDb(options.db)
      closers.push(async () => await owned.close())
      try {
        // On the raw pool: a unit whose connection cannot open fails as SERVICE_UNAVAILABLE, and
        // the operator needs the server's own reason (28P01, ECONNREFUSED…).
        await owned.pool().unsafe('select 1')
      } catch (err) {
        const e = err as { code?: unknown, message?: unknown }
        const reason = `${String(e.code)} ${String(e.message)}`
        throw new InvalidOptionError(`db (DATABASE_URL) cannot be used: ${reason}`)
      }
    }
  }

  let migrator: TenantMigrator | undefined
  if (options.migrations !== undefined) {
    const settings = options.migrations
    if (db === undefined) throw new InvalidOptionError('migrations needs db')
    if (typeof settings.dir !== 'string' || settings.dir === '') throw new InvalidOptionError('migrations.dir must name a folder of .sql files')
    const { loadMigrations, TenantMigrator } = await import('../migrations.ts')
    let migrations
    try {
      migrations = await loadMigrations(settings.dir)
    } catch (err) {
      throw new InvalidOptionError(`migrations.dir ${settings.dir} cannot be read: ${String((err as NodeJS.ErrnoException).code)}`)
    }
    const tenantDb = db
    const owned = migrator = new TenantMigrator({ migrations, pool: (cluster) => tenantDb.pool(cluster), concurrency: settings.concurrency, retryFailedAfter: settings.retryFailedAfter, logger: fastify.log.child({ component: 'tenant-migrations' }) })
    closers.push(async () => await owned.close())
    if (registry !== undefined) {
      const source = registry
      // Feed first, then the list: a tenant created in between is announced, not missed.
      owned.follow(source)
      const followed = await Promise.race([source.following.then(() => true), delay(settings.feedTimeout ?? 10_000, false, { ref: false })])
      if (!followed) fastify.log.warn('the registry\'s change feed is not followed yet: tenants created meanwhile are migrated on first use')
      const atStart: Promise<MigrateAllSummary> = owned.migrateAll(source)
      if (settings.wait ?? true) await atStart
      else atStart.catch((err: unknown) => fastify.log.error({ err }, 'tenant migrations at start failed'))
    }
  }

  const absent = (what: string, option: string) => () => { throw new InvalidOptionError(`fastify.${what} needs the multitenant plugin's ${option} option`) }
  fastify.decorate('tenantRegistry', { getter: registry === undefined ? absent('tenantRegistry', 'registry') : () => registry })
  fastify.decorate('tenantDb', { getter: db === undefined ? absent('tenantDb', 'db') : () => db })
  fastify.decorate('tenantMigrator', { getter: migrator === undefined ? absent('tenantMigrator', 'migrations') : () => migrator })
  return { provider, migrator }
}

async function multitenant (fastify: FastifyInstance, options: MultitenantPluginOptions): Promise<void> {
  if (options.auth !== undefined) await fastify.register(authPlugin, options.auth)
  const { provider, migrator } = await ownParts(fastify, options)
  const getTenant = provider.getTenant.bind(provider)
  const getTenantByHost = provider.getTenantByHost?.bind(provider)
  const resolverOptions: ResolverOptions = { ...options }
  if (resolverOptions.strategies === undefined && getTenantByHost === undefined && options.fixedTenant === undefined) {
    resolverOptions.strategies = ['token', 'header', ...(options.baseDomain === undefined ? [] : ['subdomain' as const])]
  }
  const resolver = new TenantResolver(resolverOptions)
  if (resolver.strategies.includes('domain') && getTenantByHost === undefined) {
    throw new InvalidOptionError('the domain strategy needs provider.getTenantByHost(host)')
  }
  const defaultMode = options.tenant ?? 'required'
  if (defaultMode !== 'required' && defaultMode !== 'optional') {
    throw new InvalidOptionError('tenant must be "required" or "optional"')
  }
  const exclude = Object.freeze([...(options.exclude ?? DEFAULT_EXCLUDE)])
  const claimsOf = options.claims ?? defaultClaims
  const retryAfter = String(options.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS)
  const tokenClaim = options.tokenClaim ?? 'tenant'
  const reads = resolver.reads
  // The router's own reading of duplicate slashes (Fastify's `ignoreDuplicateSlashes`).
  const router = fastify.initialConfig as { ignoreDuplicateSlashes?: boolean, routerOptions?: { ignoreDuplicateSlashes?: boolean } }
  const foldSlashes = router.routerOptions?.ignoreDuplicateSlashes === true || router.ignoreDuplicateSlashes === true
  const rateLimited = options.rateLimit !== undefined && options.rateLimit !== false

  fastify.decorateRequest('tenant', null)
  fastify.decorateRequest('tenantScope', undefined)

  function inputOf (request: FastifyRequest): ResolveInput {
    return {
      headers: reads.headers ? request.headers : undefined,
      host: reads.host ? request.host : undefined,
      path: reads.path ? routedPath(request.url, foldSlashes) : undefined,
      query: reads.query ? request.query as Record<string, unknown> : undefined,
      claims: reads.claims ? claimsOf(request) : undefined
    }
  }

  /** The status gate (DESIGN.md): only active and trial tenants are served. */
  function admit (request: FastifyRequest, reply: FastifyReply, tenant: Tenant | null, done: HookHandlerDoneFunction): void {
    if (tenant === null) {
      done(new TenantNotFoundError())
      return
    }
    switch (tenant.status) {
      case 'active':
      case 'trial':
        break
      case 'suspended':
        done(new TenantSuspendedError())
        return
      case 'provisioning':
        reply.header('retry-after', retryAfter)
        done(new TenantProvisioningError())
        return
      default:
        done(new TenantNotFoundError())
        return
    }
    const scope = tenantScope(tenant)
    request.tenant = tenant
    request.tenantScope = scope
    // Fastify's own lines ("request completed", errors) are written through reply.log.
    const claims = claimsOf(request)
    const actor = claims == null ? undefined : actorOf(claims)
    reply.log = request.log = request.log.child(actor === undefined ? { tenant: tenant.id } : { tenant: tenant.id, actor }) as FastifyBaseLogger
    // A tenant whose tables are not known to be current waits for its own migration (the
    // start-up run or the feed may not have reached it yet); everyone else goes straight on.
    const pending = migrator?.ensure(tenant)
    if (pending === undefined) {
      // `run`, not `enterWith`: the rest of the request continues inside, and nothing stays behind
      // in the connection's context for the next pipelined request's hooks.
      runInScope(scope, done)
    } else {
      pending.then(() => runInScope(scope, done), () => {
        reply.header('retry-after', retryAfter)
        done(new TenantNotReadyError())
      })
    }
  }

  /**
   * Whether the request's verified token may act on `tenantId` (DESIGN, Tokens): a tenant token on
   * its own tenant only; a token without a tenant only as a platform admin on a route that admits
   * platform admins (`config.auth.admin`). A service's own token plus X-Tenant-ID is not a tenant's.
   */
  function refusal (request: FastifyRequest, tenantId: string): Error | undefined {
    const claims = claimsOf(request)
    if (claims == null) return undefined
    const claimed = claims[tokenClaim]
    // (A token naming another tenant is usually refused earlier, when the tenant is resolved.)
    /* c8 ignore next */
    if (claimed != null) return claimed === tenantId ? undefined : new TenantMismatchError()
    const rule = request.routeOptions.config.auth
    const roles = claims.roles
    if (typeof rule === 'object' && rule.admin === true && Array.isArray(roles) && roles.includes('platform-admin')) return undefined
    return new ForbiddenError('a token without a tenant acts on a tenant only as a platform admin, on a route for platform admins')
  }

  function lookupFailed (request: FastifyRequest, err: unknown, done: HookHandlerDoneFunction): void {
    if ((err as { code?: unknown } | null)?.code === 'TENANT_UNAVAILABLE') {
      done(err as Error)
      return
    }
    request.log.error({ err }, 'tenant look-up failed')
    done(new TenantUnavailableError())
  }

  function lookupHost (request: FastifyRequest, reply: FastifyReply, resolution: Resolution & { kind: 'host' },
    optional: boolean, done: HookHandlerDoneFunction): void {
    const settle = (tenant: Tenant | null): void => {
      let id: string | null
      try {
        id = resolver.checkHostTenant(resolution, tenant?.id ?? null)
      } catch (err) {
        done(err as Error)
        return
      }
      const refused = id === null ? undefined : refusal(request, id)
      if (refused !== undefined) {
        done(refused)
      } else if (id === null) {
        if (optional) done()
        else done(new TenantRequiredError(REQUEST_NAMES_NO_TENANT))
      } else if (tenant !== null && tenant.id === id) {
        admit(request, reply, tenant, done)
      } else {
        lookupId(request, reply, id, done)
      }
    }
    let answer: Tenant | null | Promise<Tenant | null>
    try {
      answer = (getTenantByHost as NonNullable<typeof getTenantByHost>)(resolution.host)
    } catch (err) {
      lookupFailed(request, err, done)
      return
    }
    if (isPromise(answer)) answer.then(settle, (err: unknown) => lookupFailed(request, err, done))
    else settle(answer)
  }

  function lookupId (request: FastifyRequest, reply: FastifyReply, id: string, done: HookHandlerDoneFunction): void {
    let answer: Tenant | null | Promise<Tenant | null>
    try {
      answer = getTenant(id)
    } catch (err) {
      lookupFailed(request, err, done)
      return
    }
    if (isPromise(answer)) {
      answer.then((tenant) => admit(request, reply, tenant, done), (err: unknown) => lookupFailed(request, err, done))
    } else {
      admit(request, reply, answer, done)
    }
  }

  function resolveTenant (request: FastifyRequest, reply: FastifyReply, optional: boolean, done: HookHandlerDoneFunction): void {
    let resolution: Resolution
    try {
      const input = inputOf(request)
      // A token that no hook has verified yet (authentication registered on the route, after
      // this plugin) must not let the request fall back to another source: fail closed.
      if (reads.claims && input.claims == null && request.headers.authorization !== undefined) throw new UnauthorizedError(': the token was not verified before the tenant was resolved')
      resolution = resolver.resolve(input)
    } catch (err) {
      done(err as Error)
      return
    }
    if (resolution.kind === 'tenant') {
      const refused = refusal(request, resolution.tenantId)
      if (refused === undefined) lookupId(request, reply, resolution.tenantId, done)
      else done(refused)
    } else if (resolution.kind === 'host') lookupHost(request, reply, resolution, optional, done)
    else if (optional) done()
    else done(new TenantRequiredError(REQUEST_NAMES_NO_TENANT))
  }

  const onRequestRequired: onRequestHookHandler = function (request, reply, done) {
    resolveTenant(request, reply, false, done)
  }
  const onRequestOptional: onRequestHookHandler = function (request, reply, done) {
    resolveTenant(request, reply, true, done)
  }
  const onRequestNone: onRequestHookHandler = function (request, reply, done) {
    runInScope(undefined, done)
  }
  // Body parsing resumes in the socket's context, not the request's: re-enter before validation
  // (as @fastify/request-context does). Instance-level, so that every preValidation hook
  // registered after this plugin sees the tenant too.
  fastify.addHook('preValidation', function reenter (request, reply, done) {
    runInScope(request.tenantScope, done)
  })
  // onResponse runs on the response's 'finish', which Node emits in the context of whatever
  // flushed it: for pipelined requests on one keep-alive connection, the previous response's
  // (issue 17). A request aborted by its client is reported from the socket's 'close'. Both
  // re-enter, so the hooks registered after this plugin see their own request's tenant.
  fastify.addHook('onResponse', function reenterOnResponse (request, reply, done) {
    runInScope(request.tenantScope, done)
  })
  fastify.addHook('onRequestAbort', function reenterOnAbort (request, done) {
    runInScope(request.tenantScope, done)
  })

  // Resolution is a route-level hook: it runs after the instance's onRequest hooks (such as the
  // one verifying the token whose tenant claim it reads), and each route's mode is fixed once here.
  fastify.addHook('onRoute', (route: RouteOptions) => {
    const configured = (route.config as { tenant?: unknown } | undefined)?.tenant
    let mode: TenantRouteMode
    if (configured === undefined) mode = excluded(exclude, route.url) ? false : defaultMode
    else if (configured === 'required' || configured === 'optional' || configured === false) mode = configured
    else throw new InvalidOptionError(`config.tenant of ${route.url} must be "required", "optional" or false`)
    const hook = mode === false ? onRequestNone : mode === 'required' ? onRequestRequired : onRequestOptional
    route.onRequest = route.onRequest === undefined ? [hook] : [hook, ...[route.onRequest].flat()]
    // Routes that never have a tenant are not rate limited per tenant (and pay nothing for it).
    if (mode === false && rateLimited && route.config?.rateLimit === undefined) {
      route.config = { ...route.config, rateLimit: false }
    }
  })

  if (rateLimited) {
    await registerRateLimit(fastify, options.rateLimit === true ? {} : options.rateLimit as TenantRateLimitOptions)
  }
}

/**
 * The path as the router reads it, so the path strategy sees what the route matched: the origin
 * of an absolute-form target (`GET http://host/tenants/b/x`) dropped, duplicate slashes folded
 * when the router folds them (`ignoreDuplicateSlashes`). Case is left alone: the resolver matches its prefix in any case
 * and an upper-case id is not a valid one.
 */
export function routedPath (url: string, foldSlashes = false): string {
  const q = url.indexOf('?')
  let path = q === -1 ? url : url.slice(0, q)
  if (!path.startsWith('/')) {
    const scheme = path.indexOf('://')
    const slash = scheme === -1 ? -1 : path.indexOf('/', scheme + 3)
    path = slash === -1 ? '/' : path.slice(slash)
  }
  return foldSlashes ? path.replace(/\/{2,}/g, '/') : path
}

async function registerRateLimit (fastify: FastifyInstance, options: TenantRateLimitOptions): Promise<void> {
  const tiers = { ...DEFAULT_TIER_LIMITS, ...options.tiers }
  const fallback = options.max ?? 1000
  const { default: rateLimit } = await import('@fastify/rate-limit')
  await fastify.register(rateLimit, {
    global: true,
    timeWindow: options.timeWindow ?? '1 minute',
    // Requests without a tenant (excluded routes, optional ones) are not limited here.
    allowList: (request) => request.tenant === null,
    keyGenerator: (request) => request.tenant === null ? '' : `tenant:${request.tenant.id}`,
    max: (request) => {
      const tenant = request.tenant as Tenant
      return tenant.limits?.requestsPerMinute ?? tiers[tenant.tier] ?? fallback
    },
    errorResponseBuilder: (_request, context) => new RateLimitedError(Math.ceil(context.ttl / 1000))
  })
}

/** A request on a route where the tenant is required: `request.tenant` is never null. */
export type TenantRequest<RouteGeneric extends RouteGenericInterface = RouteGenericInterface> =
  FastifyRequest<RouteGeneric> & { tenant: Tenant, tenantScope: TenantScope }

/**
 * Wraps a handler of a tenant-required route so that it gets `request.tenant` typed as `Tenant`:
 * `app.get('/notes', withTenant(async (request) => request.tenant.id))`. A request without a
 * tenant (a route configured `optional` by mistake) gets TENANT_REQUIRED, never a null.
 */
export function withTenant<RouteGeneric extends RouteGenericInterface = RouteGenericInterface, R = unknown> (
  handler: (this: FastifyInstance, request: TenantRequest<RouteGeneric>, reply: FastifyReply<RouteGeneric>) => R
): (this: FastifyInstance, request: FastifyRequest<RouteGeneric>, reply: FastifyReply<RouteGeneric>) => R {
  return function tenantHandler (request, reply) {
    if (request.tenant === null) throw new TenantRequiredError(REQUEST_NAMES_NO_TENANT)
    return handler.call(this, request as TenantRequest<RouteGeneric>, reply)
  }
}

/**
 * Resolves each request's tenant, looks it up, applies the status gate and runs the rest of the
 * request (hooks, body parsing, handler, error handler, `onSend`, `onResponse`, and async work
 * the handler starts) in that tenant's scope.
 */
export const multitenantPlugin: FastifyPluginAsync<MultitenantPluginOptions> = fp(multitenant, {
  fastify: '5.x',
  name: '@platform/multitenant'
})

export { platformErrorHandler, type ErrorHandlerOptions, type ErrorBody } from './error-handler.ts'
export { multitenantOptionsFromEnv, EnvError, type EnvOptionsDefaults } from './env.ts'
export { listenService } from './serve.ts'
export { openApiConventions, openApiRefResolver, errorResponse, operationIdOf, ERROR_SCHEMA } from './openapi.ts'
export { checkBody, checkBodyHook, opsGuard, MAX_BODY_DEPTH } from './guards.ts'
export { authPlugin, mapClaims, DEFAULT_AUTH_EXCLUDE, type AuthOptions, type ClaimMapping, type ClaimSource, type RouteAuth } from './auth.ts'

export default multitenantPlugin
