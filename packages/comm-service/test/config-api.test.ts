// GET/PATCH /v1/config: forwarded to the registry with the caller's token and If-Match, secrets
// sealed before they leave the service (the registry's raw row holds only ciphertext), never
// returned, readable after the key ring rotates, and a tenant's SMTP password reaching its own
// SMTP server's AUTH and nothing else.
import postgres from 'postgres'
import t from 'tap'
import { Webhook } from 'standardwebhooks'
import { KeyRing } from '../src/secrets.ts'
import { schemaName } from '@platform/multitenant'
import { startPlatform, tid } from './fixtures.ts'
import { settled, startComm } from './helpers.ts'
import { httpPeer, smtpPeer } from './peers.ts'

const K1 = KeyRing.generate('k1')
const K2 = KeyRing.generate('k2')
const OWNER = { roles: ['owner'], scope: 'config:write messages:read messages:send' }
const PASSWORD = 'S3cret-A-password-8f2c'
// The loopback SMTP peer speaks plain SMTP: the platform and the tenant both allow a login without TLS.
const PLAIN = { allowPlaintextSmtpAuth: true }

t.test('config: roles, sealed secrets, If-Match, refusals, the SMTP password reaching AUTH only', async (t) => {
  const p = await startPlatform(t)
  const a = tid('cfg-a')
  const b = tid('cfg-b')
  await p.createTenant(a, { domains: ['a.example.com'] })
  await p.createTenant(b, { domains: ['b.example.com'] })
  const smtp = await smtpPeer(t, { user: 'a-user', password: PASSWORD })
  const { call } = await startComm(t, p, { keys: KeyRing.parse(K1), allowWebhookHosts: ['127.0.0.1'], providers: PLAIN })

  const initial = await call('GET', '/v1/config', a)
  t.equal(initial.status, 200, 'a member reads the configuration')
  t.match(initial.body, { emailFrom: '', smtp: { host: '', password: { set: false, setAt: null }, allowPlaintextAuth: false }, webhook: { secret: { set: false, derived: true } } })
  t.match(initial.headers.etag, new RegExp(`^"${a}\\.\\d+"$`))

  const change = { emailFrom: 'no-reply@a.example.com', providers: { email: 'smtp' }, smtp: { host: '127.0.0.1', port: smtp.port, user: 'a-user', password: PASSWORD, allowPlaintextAuth: true } }
  for (const [who, options] of [['member', { roles: ['member'], scope: 'config:write' }], ['manager', { roles: ['manager'], scope: 'config:write' }], ['admin without config:write', { roles: ['admin'], scope: 'messages:send' }]] as const) {
    const res = await call('PATCH', '/v1/config', a, change, options as never)
    t.equal(res.status, 403, `${who} may not change it`)
  }
  const crossed = await call('PATCH', '/v1/config', a, change, { ...OWNER, headers: { 'x-tenant-id': b } })
  t.equal(crossed.status, 403, 'A\'s owner cannot write B\'s configuration')
  t.equal(crossed.body.code, 'TENANT_MISMATCH')

  const patched = await call('PATCH', '/v1/config', a, change, OWNER)
  t.equal(patched.status, 200, JSON.stringify(patched.body))
  t.match(patched.body, { emailFrom: 'no-reply@a.example.com', providers: { email: 'smtp' }, smtp: { host: '127.0.0.1', port: smtp.port, user: 'a-user', password: { set: true, setAt: /^\d{4}-/ }, allowPlaintextAuth: true } })
  t.notOk(JSON.stringify(patched.body).includes(PASSWORD), 'the answer carries no secret')
  t.not(patched.headers.etag, initial.headers.etag)

  // The registry's raw row holds the box, never the password.
  const admin = postgres(p.superUrl, { max: 1, onnotice: () => {} })
  t.teardown(() => admin.end())
  const [row] = await admin`select config::text as config from tenants where id = ${a}`
  t.notOk(String(row?.config).includes(PASSWORD), 'the registry\'s row has no plaintext')
  t.match(JSON.parse(String(row?.config)).comm.smtp.password, /^v1\.k1\./, 'it has the box, sealed with k1')
  const view = await call('GET', '/v1/config', a)
  t.equal(view.status, 200)
  t.notOk(JSON.stringify(view.body).includes('v1.k1.'), 'GET shows neither the secret nor its box')
  t.equal(view.headers.etag, patched.headers.etag, 'the local cache was refreshed from the registry\'s answer')

  // Concurrent writes without If-Match: a loser is merged again on the fresh record, nothing is lost.
  const racing = await Promise.all([{ emailFromName: 'Racer' }, { smsSenderId: 'RACE' }, { providers: { webhook: 'log' } }].map(async (body) => await call('PATCH', '/v1/config', a, body, OWNER)))
  t.same(racing.map((r) => r.status), [200, 200, 200])
  t.match((await call('GET', '/v1/config', a)).body, { emailFromName: 'Racer', smsSenderId: 'RACE', providers: { webhook: 'log', email: 'smtp' }, smtp: { password: { set: true } } }, 'every concurrent change landed')
  t.equal((await call('PATCH', '/v1/config', a, { providers: { webhook: null } }, OWNER)).status, 200)
  const settledView = await call('GET', '/v1/config', a)

  // Stale If-Match, and configurations that cannot work.
  t.match(await call('PATCH', '/v1/config', a, { emailFromName: 'A' }, { ...OWNER, headers: { 'if-match': initial.headers.etag as string } }), { status: 412, body: { code: 'PRECONDITION_FAILED' } })
  t.match(await call('PATCH', '/v1/config', a, { emailFromName: 'A' }, { ...OWNER, headers: { 'if-match': 'nonsense' } }), { status: 412, body: { code: 'PRECONDITION_FAILED' } })
  const refusals: Array<[string, unknown, RegExp]> = [
    ['unknown provider', { providers: { email: 'carrier-pigeon' } }, /providers/],
    ['sms-http without a URL (none on the platform)', { providers: { sms: 'sms-http' } }, /smsHttp\.url/],
    ['a private SMTP host', { smtp: { host: '10.1.2.3' } }, /non-public/],
    ['a host that does not resolve', { smtp: { host: 'mail.nowhere.invalid' } }, /does not resolve/],
    ['a malformed host', { smtp: { host: 'bad host!' } }, /smtp\.host/],
    ['a user without a password', { smtp: { password: null } }, /smtp\.password is required/],
    ['a plain-http SMS API', { smsHttp: { url: 'http://sms.example.com/send' } }, /https/],
    ['an SMS URL with credentials', { smsHttp: { url: 'https://u:p@sms.example.com/send' } }, /credentials/],
    ['a bad sender', { emailFrom: 'not an address' }, /emailFrom/],
    ['an unknown field', { surprise: 1 }, /surprise|additional/],
    ['an empty patch', {}, /fewer than 1|minProperties|must NOT have fewer/]
  ]
  for (const [name, body, message] of refusals) {
    const res = await call('PATCH', '/v1/config', a, body, OWNER)
    t.equal(res.status, 400, name)
    t.equal(res.body.code, 'VALIDATION_FAILED', `${name}: VALIDATION_FAILED`)
    t.match(res.body.message, message, `${name}: ${res.body.message}`)
  }
  t.equal((await call('GET', '/v1/config', a)).headers.etag, settledView.headers.etag, 'no refused write landed')

  // The password reaches the SMTP server's AUTH, and nothing else: not the queue, not the rows.
  const sent = await call('POST', '/v1/messages', a, { channel: 'email', to: 'someone@example.com', subject: 'hi', text: 'hello' })
  t.equal(sent.status, 202)
  t.equal((await settled(call, a, sent.body.id)).status, 'sent')
  t.same(smtp.logins, [{ user: 'a-user', password: PASSWORD }], 'AUTH saw A\'s own user and password')
  t.equal(smtp.mails.length, 1)
  t.notOk(smtp.mails[0]?.raw.includes(PASSWORD), 'the mail itself does not carry it')
  const leaks = await admin.unsafe(`select (select count(*) from "${schemaName(a)}".messages m where m::text like $1)::int as rows, (select count(*) from pgboss.job j where j::text like $1)::int as jobs`, [`%${PASSWORD}%`])
  t.same(leaks[0], { rows: 0, jobs: 0 }, 'neither the message rows nor the queue hold it')
  const other = await call('POST', '/v1/messages', b, { channel: 'email', to: 'someone@example.com', subject: 'hi', text: 'hello' })
  t.equal((await settled(call, b, other.body.id)).status, 'sent')
  t.equal(smtp.logins.length, 1, 'B\'s mail (log provider) never reached A\'s server')

  // A's own SMS API: its URL, and its token in the Authorization header of that API only.
  const smsApi = await httpPeer(t, '/sms')
  const TOKEN = 'sms-token-of-a-7d1e'
  t.equal((await call('PATCH', '/v1/config', a, { smsSenderId: 'ACOMP', providers: { sms: 'sms-http' }, smsHttp: { url: smsApi.url, token: TOKEN } }, OWNER)).status, 200)
  const text = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'hi' })
  t.equal((await settled(call, a, text.body.id)).status, 'sent')
  t.equal(smsApi.received.length, 1)
  t.equal(smsApi.received[0]?.headers.authorization, `Bearer ${TOKEN}`, 'A\'s token went to A\'s API')
  t.match(JSON.parse(smsApi.received[0]?.body as string), { from: 'ACOMP', to: '+15550100' })
  const [smsRow] = await admin`select config::text as config from tenants where id = ${a}`
  t.notOk(String(smsRow?.config).includes(TOKEN), 'the registry has the token sealed only')
  const again = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'again' })
  t.equal((await settled(call, a, again.body.id)).status, 'sent', 'the client for A\'s API is reused')

  // A's box copied into B's configuration does not open there (bound to tenant and field).
  const box = JSON.parse(String(row?.config)).comm.smtp.password as string
  await admin`update tenants set config = ${admin.json({ comm: { emailFrom: 'x@b.example.com', providers: { email: 'smtp' }, smtp: { host: '127.0.0.1', port: smtp.port, user: 'a-user', password: box } } })}, version = version + 1 where id = ${b}`
  const { call: fresh } = await startComm(t, p, { keys: KeyRing.parse(K1), allowWebhookHosts: ['127.0.0.1'], providers: PLAIN })
  const stolen = await fresh('POST', '/v1/messages', b, { channel: 'email', to: 'someone@example.com', subject: 'hi', text: 'hello' })
  const failed = await settled(fresh, b, stolen.body.id, ['failed', 'sent'])
  t.equal(failed.status, 'failed', 'B cannot use A\'s sealed password')
  t.match(failed.lastError, /does not open/)
  t.equal(smtp.logins.length, 1, 'and nothing reached the SMTP server')
})

t.test('the key ring rotates without downtime; without one, secrets are refused', async (t) => {
  const p = await startPlatform(t)
  const a = tid('ring')
  await p.createTenant(a, { domains: ['ring.example.com'] })
  const smtp = await smtpPeer(t, { user: 'ring', password: PASSWORD })
  const old = await startComm(t, p, { keys: KeyRing.parse(K1), allowWebhookHosts: ['127.0.0.1'], providers: PLAIN })
  t.equal((await old.call('PATCH', '/v1/config', a, { emailFrom: 'r@ring.example.com', providers: { email: 'smtp' }, smtp: { host: '127.0.0.1', port: smtp.port, user: 'ring', password: PASSWORD, allowPlaintextAuth: true } }, OWNER)).status, 200)
  // The new key first, the old one kept: the old box still opens.
  const rotated = await startComm(t, p, { keys: KeyRing.parse(`${K2},${K1}`), allowWebhookHosts: ['127.0.0.1'], providers: PLAIN })
  const sent = await rotated.call('POST', '/v1/messages', a, { channel: 'email', to: 'x@example.com', subject: 's', text: 't' })
  t.equal((await settled(rotated.call, a, sent.body.id)).status, 'sent', 'a secret sealed with k1 opens with the ring k2,k1')
  t.same(smtp.logins.at(-1), { user: 'ring', password: PASSWORD })
  t.equal((await rotated.call('PATCH', '/v1/config', a, { smtp: { password: PASSWORD } }, OWNER)).status, 200, 'rewriting the secret')
  const admin = postgres(p.superUrl, { max: 1, onnotice: () => {} })
  t.teardown(() => admin.end())
  const [row] = await admin`select config from tenants where id = ${a}`
  t.match((row?.config as { comm: { smtp: { password: string } } }).comm.smtp.password, /^v1\.k2\./, 'new writes use the newest key')

  const none = await startComm(t, p, { allowWebhookHosts: ['127.0.0.1'] })
  t.match(await none.call('PATCH', '/v1/config', a, { smtp: { password: 'x' } }, OWNER), { status: 503, body: { code: 'SERVICE_UNAVAILABLE', message: /COMM_ENCRYPTION_KEYS/ } })
  t.equal((await none.call('PATCH', '/v1/config', a, { emailFromName: 'Ring' }, OWNER)).status, 200, 'settings without secrets still change')
})

t.test('webhook secrets: generated on rotation, shown once, both valid during the grace period', async (t) => {
  const p = await startPlatform(t)
  const a = tid('whs')
  await p.createTenant(a)
  const receiver = await httpPeer(t, '/hook')
  const { call } = await startComm(t, p, { keys: KeyRing.parse(K1), allowWebhookHosts: ['127.0.0.1'], providers: PLAIN })
  const first = await call('PATCH', '/v1/config', a, { webhook: { rotateSecret: true } }, OWNER)
  t.equal(first.status, 200)
  const secret1 = first.body.webhook.newSecret as string
  t.match(secret1, /^whsec_[A-Za-z0-9+/]{43}=$/)
  t.match(first.body.webhook, { secret: { set: true, derived: false }, previousValidUntil: null })
  t.notOk(JSON.stringify((await call('GET', '/v1/config', a)).body).includes(secret1.slice(6)), 'GET never shows it')

  const deliver = async (): Promise<{ headers: Record<string, string>, body: string }> => {
    const res = await call('POST', '/v1/messages', a, { channel: 'webhook', to: receiver.url, body: '{"n":1}' })
    t.equal((await settled(call, a, res.body.id)).status, 'sent')
    return receiver.received.at(-1) as { headers: Record<string, string>, body: string }
  }
  const one = await deliver()
  t.same(new Webhook(secret1).verify(one.body, one.headers), { n: 1 }, 'signed with the generated secret')

  const second = await call('PATCH', '/v1/config', a, { webhook: { rotateSecret: true, graceHours: 2 } }, OWNER)
  const secret2 = second.body.webhook.newSecret as string
  t.not(secret2, secret1)
  t.ok(Date.parse(second.body.webhook.previousValidUntil) > Date.now() + 3_500_000, 'the old one stays valid for the grace period')
  const two = await deliver()
  t.same(new Webhook(secret2).verify(two.body, two.headers), { n: 1 }, 'the new secret verifies')
  t.same(new Webhook(secret1).verify(two.body, two.headers), { n: 1 }, 'and so does the old one, during the grace period')

  const third = await call('PATCH', '/v1/config', a, { webhook: { rotateSecret: true, graceHours: 0 } }, OWNER)
  const secret3 = third.body.webhook.newSecret as string
  const three = await deliver()
  t.same(new Webhook(secret3).verify(three.body, three.headers), { n: 1 })
  t.throws(() => new Webhook(secret2).verify(three.body, three.headers), 'a secret rotated out with no grace no longer verifies')
})
