import { randomBytes } from 'node:crypto'
import { loginUrl, setupDatabase } from '@platform/multitenant/pg'
import { createTestDatabase } from '@platform/testkit'
import { setupQueueSchema } from '@platform/comm-service/setup'
import postgres from 'postgres'
import type { Test } from 'tap'

/** A fresh database after the one-time setup: the registry's login, a service login and the comm-service's (with its queue schema). */
export async function createStackDatabase (t: Test): Promise<{ url: string, serviceUrl: string, commUrl: string }> {
  const db = await createTestDatabase(t)
  const tag = randomBytes(4).toString('hex')
  const registry = { user: `reg_${tag}`, password: `pw-${randomBytes(12).toString('hex')}` }
  const service = { user: `svc_${tag}`, password: `pw-${randomBytes(12).toString('hex')}` }
  const comm = { user: `comm_${tag}`, password: `pw-${randomBytes(12).toString('hex')}` }
  const admin = postgres(db.url, { max: 1, onnotice: () => {} })
  try {
    await setupDatabase(admin, { registry, services: [service, comm] })
    await setupQueueSchema(admin, comm.user)
  } finally {
    await admin.end()
  }
  return { url: loginUrl(db.url, registry), serviceUrl: loginUrl(db.url, service), commUrl: loginUrl(db.url, comm) }
}

/**
 * Drops the demo tenants a stack made (schemas and roles): roles are cluster-wide, so a later test
 * file's stack on another database of this server can make them again.
 */
export async function purgeDemoTenants (info: { registryUrl: string, tokens: { platformAdmin: string } }): Promise<void> {
  const { request } = await import('undici')
  for (const id of ['acme', 'globex', 'initech']) {
    const res = await request(`${info.registryUrl}/v1/tenants/${id}?purge=true&confirm=${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${info.tokens.platformAdmin}` } })
    await res.body.dump()
  }
}
