// The role matrix on every route (each role × each route → the expected status), run the same in
// pooled mode (tenant from X-Tenant-ID) and in dedicated mode (TENANT pins the instance), plus
// what only dedicated mode does: other tenants refused, and its worker never sends another
// tenant's queued message.
import t, { type Test } from 'tap'
import { request } from 'undici'
import type { CommConfig } from '../src/app.ts'
import { KeyRing } from '../src/secrets.ts'
import { SECRET, startPlatform, tid, type Platform } from './fixtures.ts'
import { settled, startComm, until, type Running } from './helpers.ts'

const FULL = 'messages:send messages:read templates:write config:write'
const ROLES = ['owner', 'admin', 'manager', 'member', 'none', 'platform-admin', 'service'] as const
type Role = typeof ROLES[number]
const ALL_TENANT: Role[] = ['owner', 'admin', 'manager', 'member']
/** Tenant users, and a service with a tenant-bound token (what the registry's token exchange issues). */
const SENDERS: Role[] = [...ALL_TENANT, 'service']

interface RouteCase {
  name: string
  /** Roles let through; the others get 403. */
  allowed: Role[]
  /** The status an allowed role gets (the request is made valid for it). */
  ok: number
  call: (role: Role, as: Caller) => Promise<number>
}
type Caller = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number, body: any }>

const template = (name: string): Record<string, unknown> => ({ name, channel: 'sms', defaultLocale: 'en', variants: { en: { body: 'Hi {{ who }}' } }, defaults: { who: 'you' } })

function routeCases (tenant: string, state: { message: string }): RouteCase[] {
  const sms = { channel: 'sms', to: '+15550100', body: 'hi' }
  const later = { ...sms, scheduledAt: new Date(Date.now() + 3_600_000).toISOString() }
  return [
    { name: 'POST /v1/messages', allowed: SENDERS, ok: 202, call: async (_r, as) => (await as('POST', '/v1/messages', sms)).status },
    { name: 'GET /v1/messages/:id', allowed: SENDERS, ok: 200, call: async (_r, as) => (await as('GET', `/v1/messages/${state.message}`)).status },
    { name: 'GET /v1/messages', allowed: SENDERS, ok: 200, call: async (_r, as) => (await as('GET', '/v1/messages?limit=5')).status },
    {
      name: 'POST /v1/messages/:id/cancel',
      allowed: SENDERS,
      ok: 200,
      call: async (role, as) => {
        // Each caller cancels a message of its own (made by an owner), so every answer is 200 or 403.
        const made = await owner(tenant)('POST', '/v1/messages', later)
        return (await as('POST', `/v1/messages/${made.body.id as string}/cancel`)).status
      }
    },
    // A message that is not dead-lettered: allowed roles get 409, the others 403.
    { name: 'POST /v1/messages/:id/retry', allowed: ['owner', 'admin'], ok: 409, call: async (_r, as) => (await as('POST', `/v1/messages/${state.message}/retry`)).status },
    { name: 'POST /v1/templates', allowed: ['owner', 'admin', 'manager'], ok: 201, call: async (role, as) => (await as('POST', '/v1/templates', template(`made-by-${role}`))).status },
    { name: 'PUT /v1/templates/:name', allowed: ['owner', 'admin', 'manager'], ok: 200, call: async (_r, as) => (await as('PUT', '/v1/templates/shared', { defaultLocale: 'en', variants: { en: { body: 'Hello {{ who }}' } } })).status },
    { name: 'GET /v1/templates', allowed: ALL_TENANT, ok: 200, call: async (_r, as) => (await as('GET', '/v1/templates')).status },
    { name: 'GET /v1/templates/:name', allowed: ALL_TENANT, ok: 200, call: async (_r, as) => (await as('GET', '/v1/templates/shared')).status },
    { name: 'POST /v1/templates/:name/preview', allowed: ALL_TENANT, ok: 200, call: async (_r, as) => (await as('POST', '/v1/templates/shared/preview', { data: { who: 'x' } })).status },
    {
      name: 'DELETE /v1/templates/:name',
      allowed: ['owner', 'admin', 'manager'],
      ok: 204,
      call: async (role, as) => {
        await owner(tenant)('POST', '/v1/templates', template(`doomed-${role}`))
        return (await as('DELETE', `/v1/templates/doomed-${role}`)).status
      }
    },
    { name: 'GET /v1/config', allowed: ALL_TENANT, ok: 200, call: async (_r, as) => (await as('GET', '/v1/config')).status },
    { name: 'PATCH /v1/config', allowed: ['owner', 'admin'], ok: 200, call: async (role, as) => (await as('PATCH', '/v1/config', { emailFromName: `Set by ${role}` })).status },
    { name: 'GET /v1/admin/stats', allowed: ['platform-admin'], ok: 200, call: async (_r, as) => (await as('GET', '/v1/admin/stats')).status },
    { name: 'GET /v1/admin/tenants/:id/messages', allowed: ['platform-admin'], ok: 200, call: async (_r, as) => (await as('GET', `/v1/admin/tenants/${tenant}/messages`)).status }
  ]
}

let owner: (tenant: string) => Caller

function callerFor (url: string, p: Platform, tenant: string, role: Role): Caller {
  const claims = role === 'platform-admin'
    ? { sub: 'ops', roles: ['platform-admin'], scope: 'tenants:read' }
    : role === 'service'
      ? { sub: 'svc:orders', tenant, roles: ['service'], scope: FULL, act: { sub: 'svc:orders' } }
      : { sub: `u-${role}`, tenant, roles: role === 'none' ? [] : [role], scope: FULL }
  const token = p.sign(claims)
  return async (method, path, body, headers = {}) => {
    const res = await request(url + path, {
      method: method as 'GET',
      headers: { authorization: `Bearer ${token}`, 'x-tenant-id': tenant, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await res.body.text()
    return { status: res.statusCode, body: text === '' ? null : JSON.parse(text) }
  }
}

/** The comm-service's plugin options with the instance pinned to `tenant` (TENANT). */
function pinned (p: Platform, tenant: string): Partial<CommConfig> {
  return { multitenant: { registry: { url: p.registryUrl, token: p.serviceToken, ttl: 200 }, db: { url: p.serviceDatabaseUrl, max: 4 }, auth: { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' }, fixedTenant: tenant } }
}

async function suite (t: Test, mode: 'pooled' | 'dedicated'): Promise<void> {
  const p = await startPlatform(t)
  const a = tid(`rm-${mode}`)
  await p.createTenant(a)
  const overrides = mode === 'dedicated' ? pinned(p, a) : {}
  const comm = await startComm(t, p, { keys: KeyRing.parse(KeyRing.generate()), ...overrides })
  owner = (tenant) => callerFor(comm.url, p, tenant, 'owner')
  const first = await owner(a)('POST', '/v1/messages', { channel: 'sms', to: '+15550100', body: 'first' })
  t.equal(first.status, 202)
  const state = { message: first.body.id as string }
  t.equal((await owner(a)('POST', '/v1/templates', template('shared'))).status, 201)
  const rows: string[] = []
  for (const route of routeCases(a, state)) {
    for (const role of ROLES) {
      const expected = route.allowed.includes(role) ? route.ok : 403
      const status = await route.call(role, callerFor(comm.url, p, a, role))
      rows.push(`${route.name} ${role} ${status}`)
      t.equal(status, expected, `${mode}: ${route.name} as ${role} → ${expected}`)
    }
  }
  t.equal(rows.length, routeCases(a, state).length * ROLES.length)
}

t.test('the role matrix, pooled mode', async (t) => { await suite(t, 'pooled') })
t.test('the role matrix, dedicated mode (TENANT)', async (t) => { await suite(t, 'dedicated') })

t.test('dedicated mode: other tenants refused; its worker sends only its own queue', async (t) => {
  const p = await startPlatform(t)
  const a = tid('ded-a')
  const b = tid('ded-b')
  await p.createTenant(a)
  await p.createTenant(b)
  // A pooled API without workers queues for both tenants; nothing delivers the shared queue.
  const pooled = await startComm(t, p, { role: 'api' })
  const queuedB = await pooled.call('POST', '/v1/messages', b, { channel: 'sms', to: '+15550100', body: 'for b' })
  t.equal(queuedB.status, 202)
  const dedicated: Running = await startComm(t, p, pinned(p, a))
  t.match(await dedicated.call('POST', '/v1/messages', b, { channel: 'sms', to: '+15550100', body: 'x' }), { status: 403, body: { code: 'TENANT_MISMATCH' } }, 'B\'s token and header')
  t.match(await dedicated.call('GET', '/v1/messages', a, undefined, { headers: { 'x-tenant-id': b } }), { status: 403, body: { code: 'TENANT_MISMATCH' } }, 'A\'s token naming B')
  const noHeader = await request(`${dedicated.url}/v1/messages`, { headers: { authorization: `Bearer ${p.sign({ sub: 'u', tenant: a, roles: ['member'], scope: 'messages:read' })}` } })
  t.equal(noHeader.statusCode, 200, 'the pinned tenant needs no header')
  await noHeader.body.dump()
  const admin = p.sign({ sub: 'ops', roles: ['platform-admin'], scope: 'tenants:read' })
  const adminB = await request(`${dedicated.url}/v1/admin/tenants/${b}/messages`, { headers: { authorization: `Bearer ${admin}` } })
  t.equal(adminB.statusCode, 403, 'the admin view of a dedicated instance shows its tenant only')
  await adminB.body.dump()

  // A signed callback for another tenant is refused by a dedicated instance.
  const { Webhook } = await import('standardwebhooks')
  const secret = `whsec_${Buffer.alloc(32, 3).toString('base64')}`
  const withSecret = await startComm(t, p, { ...pinned(p, a), callbackSecrets: { 'sms-http': secret } })
  const payload = JSON.stringify({ type: 'delivered', tenant: b, messageId: queuedB.body.id })
  const at = new Date()
  const callback = await request(`${withSecret.url}/v1/webhooks/sms-http`, { method: 'POST', headers: { 'content-type': 'application/json', 'webhook-id': 'evt-1', 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(secret).sign('evt-1', at, payload) }, body: payload })
  t.equal(callback.statusCode, 403, 'a callback for B at A\'s dedicated instance')
  t.equal((await callback.body.json() as { code: string }).code, 'TENANT_MISMATCH')

  const mine = await dedicated.call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'for a' })
  t.equal((await settled(dedicated.call, a, mine.body.id)).status, 'sent', 'its own message is sent by its worker')
  await until(async () => (await dedicated.app.commQueue.depth()).depth === 0, 5000, 'the dedicated queue to drain')
  t.equal((await pooled.call('GET', `/v1/messages/${queuedB.body.id as string}`, b)).body.status, 'queued', 'B\'s queued message was never taken by A\'s instance')
  t.equal(dedicated.app.commQueue.name, `comm-deliver.${a}`)
})
