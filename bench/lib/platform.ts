// A database with the platform's role model for benchmarks: the one-time superuser setup, then
// the registry's and a service's logins (what the services run as).
import { randomBytes } from 'node:crypto'
import { createTestDatabase, type TestDatabase } from '@platform/testkit'
import postgres from 'postgres'
import { loginUrl, setupDatabase } from '../../packages/multitenant/src/pg/roles.ts'

export interface PlatformDatabase {
  db: TestDatabase
  registryUrl: string
  serviceUrl: string
  /** The service login's name (to give it more, e.g. a queue schema). */
  serviceUser: string
}

export async function platformDatabase (): Promise<PlatformDatabase> {
  const db = await createTestDatabase()
  const tag = randomBytes(3).toString('hex')
  const registry = { user: `bench_reg_${tag}`, password: randomBytes(16).toString('hex') }
  const service = { user: `bench_svc_${tag}`, password: randomBytes(16).toString('hex') }
  const admin = postgres(db.url, { max: 1, onnotice: () => {} })
  try {
    await setupDatabase(admin, { registry, services: [service] })
  } finally {
    await admin.end()
  }
  return { db, registryUrl: loginUrl(db.url, registry), serviceUrl: loginUrl(db.url, service), serviceUser: service.user }
}
