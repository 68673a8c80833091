// The notes service calls the comm-service for a tenant: a note created with `notify` emails its
// author through a real comm-service, with a token a real registry exchanged for the tenant and
// the `comm` audience (the library's outgoing-call support, the comm-service's typed client).
import t from 'tap'
import { request } from 'undici'
import { freePort } from '@platform/testkit'
import { loadConfig as commConfig } from '@platform/comm-service/config'
import { startCommServer } from '@platform/comm-service/server'
import { loadConfig } from '../src/config.ts'
import { startNotesServer, type RunningNotes } from '../src/server.ts'
import { notesEnv, SECRET, startPlatform, tid, type Platform } from './fixtures.ts'

interface Answer { status: number, body: any }

async function call (url: string, method: string, path: string, token: string, tenant: string, body?: unknown): Promise<Answer> {
  const res = await request(url + path, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${token}`, 'x-tenant-id': tenant, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.body.text()
  return { status: res.statusCode, body: text === '' ? null : JSON.parse(text) }
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** The registry's count of token exchanges it answered with a token (its own /metrics). */
async function exchanges (p: Platform): Promise<number> {
  const text = await (await request(`${p.registryUrl}/metrics`)).body.text()
  const line = text.split('\n').find((l) => l.startsWith('registry_http_request_duration_seconds_count{') && l.includes('route="/v1/token"') && l.includes('status="200"'))
  return line === undefined ? 0 : Number(line.split(' ').at(-1))
}

t.test('notify: an email to the author through the comm-service, sent by svc:notes', async (t) => {
  // Exchanged tokens live 3 s here, so a later notify needs a fresh one.
  const p = await startPlatform(t, { exchangeTtl: 3 })
  const acme = tid('n-acme')
  const held = tid('n-held')
  await p.createTenant(acme)
  await p.createTenant(held)
  // The notes service is registered: it may send and read messages, for the comm audience only.
  const registered = await p.admin('POST', '/v1/services', { name: 'notes', scopes: ['messages:send', 'messages:read'], audiences: ['comm'] })
  t.equal(registered.status, 201)
  const credential = registered.body.credential.token as string
  const comm = await startCommServer(commConfig({ REGISTRY_URL: p.registryUrl, SERVICE_TOKEN: p.serviceToken, DATABASE_URL: p.commDatabaseUrl, JWT_SECRET: SECRET, PORT: '0', LOG_LEVEL: 'silent' }))
  t.teardown(() => comm.close())
  const env = notesEnv(p, { SERVICE_TOKEN: credential, COMM_URL: comm.url })
  const notes = await startNotesServer(loadConfig(env))
  t.teardown(() => notes.close())
  const user = (tenant: string, claims: Record<string, unknown> = {}): string => p.sign({ sub: `ann@${tenant}.test`, tenant, roles: ['member'], scope: 'notes:read notes:write messages:read', ...claims })
  const messages = async (tenant: string): Promise<any[]> => {
    let page = await call(comm.url, 'GET', '/v1/messages?limit=100', user(tenant), tenant)
    // Just reactivated: the comm-service's feed may take a moment to hear of it.
    for (let i = 0; i < 50 && page.status !== 200; i++) {
      await sleep(100)
      page = await call(comm.url, 'GET', '/v1/messages?limit=100', user(tenant), tenant)
    }
    return page.body.items
  }

  const before = await exchanges(p)
  const first = await call(notes.url, 'POST', '/v1/notes', user(acme, { email: 'ann@example.com' }), acme, { title: 'Quarterly plan', notify: true })
  t.equal(first.status, 201, JSON.stringify(first.body))
  t.match(first.body, { title: 'Quarterly plan', author: `ann@${acme}.test`, notification: { status: 'queued', messageId: /^[0-9a-f-]{36}$/ } })
  // Without an email claim the token's sub is used when it is an address.
  const bySub = await call(notes.url, 'POST', '/v1/notes', user(acme), acme, { title: 'By sub', notify: true })
  t.match(bySub.body, { notification: { status: 'queued' } })
  t.equal(await exchanges(p) - before, 1, 'one exchange for two notifies: the token is cached')
  const message = await call(comm.url, 'GET', `/v1/messages/${first.body.notification.messageId as string}`, user(acme), acme)
  t.match(message.body, { channel: 'email', to: 'ann@example.com', subject: 'Note saved: Quarterly plan', sentBy: 'svc:notes', metadata: { note: first.body.id } }, 'the comm-service records the notes service as the sender')
  let status = message.body.status as string
  for (let i = 0; i < 100 && status !== 'sent'; i++) {
    await sleep(100)
    status = (await call(comm.url, 'GET', `/v1/messages/${first.body.notification.messageId as string}`, user(acme), acme)).body.status
  }
  t.equal(status, 'sent', 'and delivers it')

  // Without an address notify is refused before anything is saved. Without notify, no email.
  t.match(await call(comm.url, 'GET', `/v1/messages/${bySub.body.notification.messageId as string}`, user(acme), acme), { body: { to: `ann@${acme}.test`, sentBy: 'svc:notes' } })
  t.match(await call(notes.url, 'POST', '/v1/notes', user(acme, { sub: 'user-42' }), acme, { title: 'Nobody', notify: true }), { status: 400, body: { code: 'VALIDATION_FAILED', message: /no email address/ } })
  t.match(await call(notes.url, 'POST', '/v1/notes', user(acme), acme, { title: 'Quiet', notify: 'yes' }), { status: 400, body: { code: 'VALIDATION_FAILED' } })
  const quiet = await call(notes.url, 'POST', '/v1/notes', user(acme), acme, { title: 'Quiet', notify: false })
  t.equal(quiet.status, 201)
  t.notOk('notification' in quiet.body)
  t.same((await messages(acme)).map((m) => m.subject), ['Note saved: By sub', 'Note saved: Quarterly plan'], 'two emails, both the notes service\'s')
  t.same((await call(notes.url, 'GET', '/v1/notes', user(acme), acme)).body.items.map((n: { title: string }) => n.title), ['Quiet', 'By sub', 'Quarterly plan'], 'a refused notify saved nothing')

  // The cached token has expired (3 s): the next notify gets a fresh one and still works.
  await sleep(3500)
  const beforeLater = await exchanges(p)
  const later = await call(notes.url, 'POST', '/v1/notes', user(acme, { email: 'ann@example.com' }), acme, { title: 'Later', notify: true })
  t.match(later.body, { notification: { status: 'queued' } }, 'a notify after the cached token expired')
  t.match(await call(comm.url, 'GET', `/v1/messages/${later.body.notification.messageId as string}`, user(acme), acme), { body: { sentBy: 'svc:notes', to: 'ann@example.com' } })
  t.equal(await exchanges(p) - beforeLater, 1, 'a new exchange, made for the expired token')

  // A suspended tenant: the notes service refuses the request itself (the registry's feed tells it).
  await p.createTenant(tid('n-other'))
  t.equal((await call(notes.url, 'POST', '/v1/notes', user(held), held, { title: 'Before', notify: true })).body.notification.status, 'queued')
  t.equal((await p.admin('POST', `/v1/tenants/${held}/suspend`)).status, 200)
  let refused: Answer = { status: 0, body: null }
  for (let i = 0; i < 50 && refused.status !== 403; i++) {
    refused = await call(notes.url, 'POST', '/v1/notes', user(held), held, { title: 'While suspended', notify: true })
    if (refused.status !== 403) await sleep(100)
  }
  t.match(refused, { status: 403, body: { code: 'TENANT_SUSPENDED' } })

  // A notes instance whose tenant cache is stale (no change feed, long TTL) still serves the
  // suspended tenant: then the exchange refuses, the note is saved and the answer says why.
  const staleConfig = loadConfig(env)
  staleConfig.multitenant.registry = { ...staleConfig.multitenant.registry as { url: string, token: string }, follow: false, ttl: 600_000 }
  t.equal((await p.admin('POST', `/v1/tenants/${held}/activate`)).status, 200)
  const stale: RunningNotes = await startNotesServer(staleConfig)
  t.teardown(() => stale.close())
  t.equal((await call(stale.url, 'GET', '/v1/notes', user(held), held)).status, 200, 'the stale instance has cached the tenant as active')
  t.equal((await p.admin('POST', `/v1/tenants/${held}/suspend`)).status, 200)
  const suspended = await call(stale.url, 'POST', '/v1/notes', user(held), held, { title: 'Stale', notify: true })
  t.equal(suspended.status, 201, 'the note is saved: a failed email does not fail it')
  t.match(suspended.body, { title: 'Stale', notification: { status: 'failed', code: 'TENANT_SUSPENDED' } }, 'the exchange refused the suspended tenant')
  t.equal((await p.admin('POST', `/v1/tenants/${held}/activate`)).status, 200)
  t.same((await messages(held)).map((m) => m.subject), ['Note saved: Before'], 'no message was sent while the tenant was suspended')

  // A revoked registration: the exchange is refused; the note is saved, the answer says no more
  // than that the email could not be sent (the credential is this service's business).
  t.equal((await p.admin('DELETE', '/v1/services/notes')).status, 200)
  await sleep(3500) // the cached token ends; the next notify asks for a new one
  const revoked = await call(notes.url, 'POST', '/v1/notes', user(acme), acme, { title: 'Revoked', notify: true })
  t.equal(revoked.status, 201)
  t.match(revoked.body, { notification: { status: 'failed', code: 'MT_REGISTRY_REFUSED', message: 'the email could not be sent now; the note is saved' } })
  t.notMatch(JSON.stringify(revoked.body), /SERVICE_TOKEN|Bearer|credential/)
})

t.test('notify without COMM_URL is refused clearly and saves nothing', async (t) => {
  const p = await startPlatform(t)
  const acme = tid('n-nocomm')
  await p.createTenant(acme)
  const notes = await startNotesServer(loadConfig(notesEnv(p)))
  t.teardown(() => notes.close())
  const token = p.sign({ sub: 'ann@example.com', tenant: acme, roles: ['member'], scope: 'notes:read notes:write' })
  t.match(await call(notes.url, 'POST', '/v1/notes', token, acme, { title: 'x', notify: true }), { status: 400, body: { code: 'VALIDATION_FAILED', message: /COMM_URL is not set/ } })
  t.same((await call(notes.url, 'GET', '/v1/notes', token, acme)).body.items, [])

  // A comm-service that does not answer: the exchange works, the call does not; the note is saved
  // and the answer names no address or port.
  const credential = (await p.admin('POST', '/v1/services', { name: 'notes', scopes: ['messages:send'], audiences: ['comm'] })).body.credential.token as string
  const down = await startNotesServer(loadConfig(notesEnv(p, { SERVICE_TOKEN: credential, COMM_URL: `http://127.0.0.1:${await freePort()}` })))
  t.teardown(() => down.close())
  const saved = await call(down.url, 'POST', '/v1/notes', token, acme, { title: 'y', notify: true })
  t.equal(saved.status, 201)
  t.same(saved.body.notification, { status: 'failed', code: 'SERVICE_UNAVAILABLE', message: 'the email could not be sent now; the note is saved' })
})
