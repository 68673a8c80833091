// A real platform for the service's tests: a fresh database with the role model, the tenant
// registry listening on loopback (as its own login), and a service login for the notes service.
import { randomBytes } from 'node:crypto'
import { createTestDatabase } from '@platform/testkit'
import { loginUrl, setupDatabase } from '@platform/multitenant/pg'
import { loadConfig } from '@platform/tenant-registry/config'
import { startRegistryServer } from '@platform/tenant-registry/server'
import { setupQueueSchema } from '@platform/comm-service/setup'
import { createSigner } from 'fast-jwt'
import { pino } from 'pino'
import postgres from 'postgres'
import type { Test } from 'tap'
import { request } from 'undici'

/** Roles are cluster-wide and test files share one server: tenant ids get a per-file suffix. */
export const suffix = randomBytes(3).toString('hex')
export const tid = (name: string): string => `notes-${name}-${suffix}`

export const SECRET = 'notes-test-secret-0123456789abcdef0123'

export interface Platform {
  registryUrl: string
  /** The notes service's database login. */
  serviceDatabaseUrl: string
  /** The registry's login (to look at catalogs in tests). */
  registryDatabaseUrl: string
  /** The comm-service's login (owner of the queue schema). */
  commDatabaseUrl: string
  serviceToken: string
  sign: (claims: Record<string, unknown>) => string
  /** Calls the registry as a platform admin. */
  admin: (method: string, path: string, body?: unknown) => Promise<{ status: number, body: any }>
  /** Stops the registry (the database stays). */
  stopRegistry: () => Promise<void>
  /** A tenant through the registry's API (201 or it throws). */
  createTenant: (id: string, extra?: Record<string, unknown>) => Promise<void>
}

export interface PlatformOptions {
  /** Lifetime of the tokens the registry exchanges, in seconds (default 300). */
  exchangeTtl?: number
}

export async function startPlatform (t: Test, options: PlatformOptions = {}): Promise<Platform> {
  const db = await createTestDatabase(t)
  const tag = randomBytes(4).toString('hex')
  const registry = { user: `reg_${tag}`, password: randomBytes(12).toString('hex') }
  const service = { user: `notes_${tag}`, password: randomBytes(12).toString('hex') }
  const comm = { user: `comm_${tag}`, password: randomBytes(12).toString('hex') }
  const setup = postgres(db.url, { max: 1, onnotice: () => {} })
  try {
    await setupDatabase(setup, { registry, services: [service, comm] })
    await setupQueueSchema(setup, comm.user)
  } finally {
    await setup.end()
  }
  const registryDatabaseUrl = loginUrl(db.url, registry)
  const running = await startRegistryServer({
    config: { ...loadConfig({ DATABASE_URL: registryDatabaseUrl, JWT_SECRET: SECRET, PORT: '0', LOG_LEVEL: 'silent' }), databaseUrl: registryDatabaseUrl },
    logger: pino({ level: 'silent' }),
    ...(options.exchangeTtl === undefined ? {} : { exchangeTtl: options.exchangeTtl })
  })
  t.teardown(() => running.close())
  const sign = createSigner({ key: SECRET, iss: 'tenant-registry', aud: 'platform', expiresIn: 3_600_000 })
  const adminToken = sign({ sub: 'test-admin', roles: ['platform-admin'], scope: 'tenants:read tenants:write' })
  const admin = async (method: string, path: string, body?: unknown): Promise<{ status: number, body: any }> => {
    const res = await request(running.url + path, {
      method: method as 'GET',
      headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await res.body.text()
    return { status: res.statusCode, body: text === '' ? null : JSON.parse(text) }
  }
  return {
    registryUrl: running.url,
    serviceDatabaseUrl: loginUrl(db.url, service),
    registryDatabaseUrl,
    commDatabaseUrl: loginUrl(db.url, comm),
    serviceToken: sign({ sub: 'notes-service', scope: 'tenants:read' }),
    sign,
    admin,
    stopRegistry: async () => await running.close(),
    async createTenant (id, extra = {}) {
      const res = await admin('POST', '/v1/tenants', { id, name: id, ...extra })
      if (res.status !== 201) throw new Error(`create ${id}: ${res.status} ${JSON.stringify(res.body)}`)
    }
  }
}

/** The environment the notes service reads, for this platform. */
export function notesEnv (p: Platform, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { REGISTRY_URL: p.registryUrl, SERVICE_TOKEN: p.serviceToken, DATABASE_URL: p.serviceDatabaseUrl, JWT_SECRET: SECRET, PORT: '0', LOG_LEVEL: 'silent', ...extra }
}
