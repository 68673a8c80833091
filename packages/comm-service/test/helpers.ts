// The service under test, on loopback against the real platform, and a small client for it.
import type { Test } from 'tap'
import { request } from 'undici'
import { buildApp, type CommConfig, type CommDeps } from '../src/app.ts'
import { SECRET, type Platform } from './fixtures.ts'

export interface Answer { status: number, body: any, headers: Record<string, unknown> }

export interface CallOptions { headers?: Record<string, string>, scope?: string, roles?: string[] }

export interface Running {
  url: string
  app: Awaited<ReturnType<typeof buildApp>>
  call: (method: string, path: string, tenant: string, body?: unknown, options?: CallOptions) => Promise<Answer>
}

/** The comm-service with `overrides`, closed at the end of the test. */
export async function startComm (t: Test, p: Platform, overrides: Partial<CommConfig> = {}, deps: CommDeps = {}): Promise<Running> {
  const app = await buildApp({
    multitenant: { registry: { url: p.registryUrl, token: p.serviceToken, ttl: 200 }, db: { url: p.serviceDatabaseUrl, max: 8 }, auth: { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' } },
    queueUrl: p.serviceDatabaseUrl,
    concurrency: { local: 8, perTenant: 4 },
    processMetrics: false,
    ...overrides
  }, { ...deps, ...(process.env.COMM_DEBUG === undefined ? {} : { logger: (await import('pino')).pino({ level: process.env.COMM_DEBUG }) }) })
  t.teardown(() => app.close())
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  return { url, app, call: client(url, p) }
}

/** Calls as a member of `tenant` (token and header) unless told otherwise. */
export function client (url: string, p: Platform): Running['call'] {
  return async (method, path, tenant, body, options = {}) => {
    const token = p.sign({ sub: 'u', tenant, roles: options.roles ?? ['member'], scope: options.scope ?? 'messages:send messages:read' })
    const res = await request(url + path, {
      method: method as 'GET',
      headers: { 'x-tenant-id': tenant, authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...options.headers },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) })
    })
    const text = await res.body.text()
    let parsed: unknown = text
    try { parsed = text === '' ? null : JSON.parse(text) } catch {}
    return { status: res.statusCode, body: parsed, headers: res.headers }
  }
}

export async function until (check: () => Promise<boolean> | boolean, ms = 10_000, what = 'the condition'): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Waits until the message reaches one of `statuses`; returns it. */
export async function settled (call: Running['call'], tenant: string, id: string, statuses: string[] = ['sent', 'failed', 'canceled'], ms = 15_000): Promise<any> {
  let last: Answer | undefined
  await until(async () => {
    last = await call('GET', `/v1/messages/${id}`, tenant)
    return statuses.includes(last.body?.status)
  }, ms, `message ${id} to reach ${statuses.join(' or ')} (last: ${JSON.stringify(last?.body?.status)})`)
  return (last as Answer).body
}

export const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
