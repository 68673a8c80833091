// A platform for the communication service's benchmarks: a database with the role model and the
// queue schema, the registry in this process, `tenants` tenants, and a token signer.
import { randomBytes } from 'node:crypto'
import postgres from 'postgres'
import { createSigner } from 'fast-jwt'
import { pino } from 'pino'
import { request } from 'undici'
import { setupQueueSchema } from '../../packages/comm-service/src/queue/setup.ts'
import { loadConfig } from '../../packages/tenant-registry/src/config.ts'
import { startRegistryServer } from '../../packages/tenant-registry/src/server.ts'
import type { TestDatabase } from '@platform/testkit'
import { platformDatabase } from './platform.ts'

export const SECRET = randomBytes(24).toString('hex')

export interface CommPlatform {
  db: TestDatabase
  registryUrl: string
  serviceUrl: string
  serviceToken: string
  tenants: string[]
  sign: (claims: Record<string, unknown>) => string
  /** The comm-service's environment for this platform. */
  env: Record<string, string>
  close: () => Promise<void>
}

export async function commPlatform (count: number): Promise<CommPlatform> {
  const { db, registryUrl: registryDb, serviceUrl, serviceUser } = await platformDatabase()
  const tag = randomBytes(3).toString('hex')
  const admin = postgres(db.url, { max: 1, onnotice: () => {} })
  try {
    await setupQueueSchema(admin, serviceUser)
  } finally {
    await admin.end()
  }
  const running = await startRegistryServer({
    config: { ...loadConfig({ DATABASE_URL: registryDb, JWT_SECRET: SECRET, PORT: '0', LOG_LEVEL: 'silent' }), databaseUrl: registryDb },
    logger: pino({ level: 'silent' })
  })
  const sign = createSigner({ key: SECRET, iss: 'tenant-registry', aud: 'platform', expiresIn: 6 * 3_600_000 })
  const adminToken = sign({ sub: 'bench', roles: ['platform-admin'], scope: 'tenants:read tenants:write' })
  const tenants: string[] = []
  for (let i = 0; i < count; i++) {
    const id = `bench-${tag}-${i}`
    const res = await request(`${running.url}/v1/tenants`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ id, name: id }) })
    await res.body.dump()
    if (res.statusCode !== 201) throw new Error(`create ${id}: ${res.statusCode}`)
    tenants.push(id)
  }
  const serviceToken = sign({ sub: 'comm-service', scope: 'tenants:read' })
  return {
    db,
    registryUrl: running.url,
    serviceUrl,
    serviceToken,
    tenants,
    sign,
    env: { REGISTRY_URL: running.url, SERVICE_TOKEN: serviceToken, DATABASE_URL: serviceUrl, JWT_SECRET: SECRET, LOG_LEVEL: 'silent' },
    async close () {
      await running.close()
      // Tenant roles are cluster-wide: drop them with the database.
      const sql = postgres(db.url, { max: 1, onnotice: () => {} })
      try {
        for (const id of tenants) {
          const schema = `tenant_${id.replaceAll('-', '_')}`
          await sql.unsafe(`drop schema if exists "${schema}" cascade`)
          await sql.unsafe(`drop owned by "${schema}"`).catch(() => {})
          await sql.unsafe(`drop role if exists "${schema}"`)
        }
      } finally {
        await sql.end()
      }
      await db.drop()
    }
  }
}
