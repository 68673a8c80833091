import type { Dispatcher } from 'undici'
import { currentTenantId } from './context.ts'
import { InvalidOptionError, TenantMismatchError } from './errors.ts'

export interface TenantPropagationOptions {
  /** Origins of internal services (`http://registry:3000`) that receive the header. Required. */
  origins: Array<string | URL>
  /** Header name. Default: `'x-tenant-id'`. */
  header?: string
}

type Headers = Dispatcher.DispatchOptions['headers']

function originOf (value: string | URL): string {
  try {
    return new URL(value).origin
  } catch {
    throw new InvalidOptionError(`origin "${String(value)}" is not a URL`)
  }
}

/** Returns the header's value in any of undici's header shapes, and a copy with `value` added. */
function withHeader (headers: Headers, name: string, value: string): { existing: string | undefined, headers: Headers } {
  if (headers == null) return { existing: undefined, headers: { [name]: value } }
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() === name) return { existing: String(headers[i + 1]), headers }
    }
    return { existing: undefined, headers: [...headers, name, value] }
  }
  const entries: Array<[string, unknown]> = Symbol.iterator in headers
    ? Array.from(headers as Iterable<[string, unknown]>)
    : Object.entries(headers)
  const copy: Record<string, string | string[] | undefined> = {}
  let existing: string | undefined
  for (const [key, v] of entries) {
    if (key.toLowerCase() === name) existing = String(v)
    copy[key] = v as string | string[] | undefined
  }
  if (existing === undefined) copy[name] = value
  return { existing, headers: copy }
}

/**
 * An undici interceptor that adds the current tenant's `X-Tenant-ID` to requests for the
 * configured internal origins, and to no other origin. Outside a tenant scope (and in a system
 * scope) it adds nothing. A request that already names a *different* tenant fails with
 * `TENANT_MISMATCH` rather than leave the scope.
 *
 * ```ts
 * const client = new Agent().compose(tenantPropagation({ origins: [registryUrl] }))
 * ```
 */
export function tenantPropagation (options: TenantPropagationOptions): Dispatcher.DispatcherComposeInterceptor {
  if (!Array.isArray(options?.origins)) throw new InvalidOptionError('origins must be an array of URLs')
  const origins = new Set(options.origins.map(originOf))
  const name = (options.header ?? 'x-tenant-id').toLowerCase()
  return (dispatch) => function tenantPropagationDispatch (opts, handler) {
    const tenantId = currentTenantId()
    if (tenantId === undefined || opts.origin === undefined || !origins.has(originOf(opts.origin))) {
      return dispatch(opts, handler)
    }
    const { existing, headers } = withHeader(opts.headers, name, tenantId)
    if (existing !== undefined && existing !== tenantId) throw new TenantMismatchError()
    return dispatch({ ...opts, headers }, handler)
  }
}
