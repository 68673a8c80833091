// A real platform for the service's tests: a fresh database with the role model and a queue
// schema owned by the service login (what the one-time setup does), the registry on loopback.
import { randomBytes } from 'node:crypto'
import { createTestDatabase } from '@platform/testkit'
import { loginUrl, setupDatabase } from '@platform/multitenant/pg'
import { loadConfig } from '@platform/tenant-registry/config'
import { startRegistryServer } from '@platform/tenant-registry/server'
import { createSigner } from 'fast-jwt'
import { pino } from 'pino'
import postgres from 'postgres'
import type { Test } from 'tap'
import { request } from 'undici'
import { setupQueueSchema } from '../src/queue/setup.ts'

export const suffix = randomBytes(3).toString('hex')
export const tid = (name: string): string => `comm-${name}-${suffix}`
export const SECRET = 'comm-test-secret-0123456789abcdef0123'

export interface Platform {
  registryUrl: string
  superUrl: string
  serviceDatabaseUrl: string
  serviceToken: string
  sign: (claims: Record<string, unknown>) => string
  /** The logins the one-time setup made (to repeat it on another database). */
  logins: { registry: { user: string, password: string }, service: { user: string, password: string } }
  createTenant: (id: string, extra?: Record<string, unknown>) => Promise<void>
  /** A platform admin's token for the registry. */
  adminToken: string
}

/**
 * `server`: a superuser URL of another PostgreSQL server to use (its `postgres` database).
 * `clusters`: further cluster names the registry accepts as a tenant's `database`.
 * `baseDomain`: the registry's BASE_DOMAIN (tenants' `<id>.<BASE_DOMAIN>`).
 */
export async function startPlatform (t: Test, options: { server?: string, clusters?: string[], baseDomain?: string } = {}): Promise<Platform> {
  const db = options.server === undefined ? await createTestDatabase(t) : { url: options.server }
  const tag = randomBytes(4).toString('hex')
  const registry = { user: `reg_${tag}`, password: randomBytes(12).toString('hex') }
  const service = { user: `comm_${tag}`, password: randomBytes(12).toString('hex') }
  const setup = postgres(db.url, { max: 1, onnotice: () => {} })
  try {
    await setupDatabase(setup, { registry, services: [service] })
    await setupQueueSchema(setup, service.user)
  } finally {
    await setup.end()
  }
  const registryDatabaseUrl = loginUrl(db.url, registry)
  const running = await startRegistryServer({
    config: { ...loadConfig({ DATABASE_URL: registryDatabaseUrl, JWT_SECRET: SECRET, PORT: '0', LOG_LEVEL: 'silent', BASE_DOMAIN: options.baseDomain ?? '', ...Object.fromEntries((options.clusters ?? []).map((c) => [`DATABASE_URL_${c.toUpperCase()}`, registryDatabaseUrl])) }), databaseUrl: registryDatabaseUrl },
    logger: pino({ level: 'silent' })
  })
  t.teardown(() => running.close())
  const sign = createSigner({ key: SECRET, iss: 'tenant-registry', aud: 'platform', expiresIn: 3_600_000 })
  const adminToken = sign({ sub: 'admin', roles: ['platform-admin'], scope: 'tenants:read tenants:write' })
  return {
    registryUrl: running.url,
    superUrl: db.url,
    serviceDatabaseUrl: loginUrl(db.url, service),
    serviceToken: sign({ sub: 'comm-service', scope: 'tenants:read' }),
    sign,
    logins: { registry, service },
    adminToken,
    async createTenant (id, extra = {}) {
      const res = await request(`${running.url}/v1/tenants`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ id, name: id, ...extra }) })
      if (res.statusCode !== 201) throw new Error(`create ${id}: ${res.statusCode} ${await res.body.text()}`)
      await res.body.dump()
    }
  }
}
