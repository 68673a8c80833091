// A tenant sends only as itself: acme cannot set globex's email domain (From, Reply-To) or SMS
// sender id, neither through PATCH /v1/config nor straight at the registry; a sender that reached
// the registry some other way (written before these rules, or a domain removed afterwards) fails
// the message permanently at send time, before any provider sees it. Real PostgreSQL, the real
// registry, an SMTP peer as the platform relay and an HTTP SMS API on loopback.
import postgres from 'postgres'
import t from 'tap'
import { request } from 'undici'
import { senderDomains, senderProblems, storedSenders } from '../src/senders.ts'
import { check } from '../src/settings.ts'
import { SECRET, startPlatform, tid } from './fixtures.ts'
import { settled, startComm, until } from './helpers.ts'
import { httpPeer, smtpPeer } from './peers.ts'
import { makeSettings, makeTenant } from './tenant.ts'

const BASE = 'platform.test'
const OWNER = { roles: ['owner'], scope: 'config:write messages:read messages:send' }

t.test('acme cannot send as globex; its own senders and the platform\'s still deliver', async (t) => {
  const p = await startPlatform(t, { baseDomain: BASE })
  const acme = tid('acme')
  const globex = tid('globex')
  const acmeDomain = `${acme}.test`
  const globexDomain = `${globex}.test`
  await p.createTenant(globex, { domains: [globexDomain], config: { comm: { emailFrom: `hello@${globexDomain}`, smsSenderId: 'GLOBEX' } } })
  await p.createTenant(acme, { domains: [acmeDomain] })
  const relay = await smtpPeer(t)
  const sms = await httpPeer(t, '/sms')
  const { call } = await startComm(t, p, {
    multitenant: { registry: { url: p.registryUrl, token: p.serviceToken, ttl: 200 }, db: { url: p.serviceDatabaseUrl, max: 8 }, auth: { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' }, baseDomain: BASE },
    providers: { email: 'smtp', smtp: { host: '127.0.0.1', port: relay.port, secure: false }, emailFrom: `no-reply@${BASE}`, sms: 'sms-http', smsHttp: { url: sms.url }, smsSenderId: 'PLATFORM', timeout: 5000 }
  })
  const admin = postgres(p.superUrl, { max: 1, onnotice: () => {} })
  t.teardown(() => admin.end())
  const stored = async (): Promise<Record<string, unknown> | undefined> => ((await admin`select config from tenants where id = ${acme}`)[0]?.config as { comm?: Record<string, unknown> }).comm
  const registryPatch = async (id: string, config: unknown, token: string): Promise<{ status: number, body: any }> => {
    const res = await request(`${p.registryUrl}/v1/tenants/${id}`, { method: 'PATCH', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ config }) })
    return { status: res.statusCode, body: await res.body.json() }
  }
  const acmeOwner = p.sign({ sub: 'owner@acme', tenant: acme, roles: ['owner'], scope: 'config:write' })
  const email = async (): Promise<any> => {
    const accepted = await call('POST', '/v1/messages', acme, { channel: 'email', to: 'ann@example.com', subject: 'Hello', text: 'Hi' })
    t.equal(accepted.status, 202)
    return await settled(call, acme, accepted.body.id)
  }
  const text = async (): Promise<any> => {
    const accepted = await call('POST', '/v1/messages', acme, { channel: 'sms', to: '+15550100', body: 'Code 1' })
    return await settled(call, acme, accepted.body.id)
  }
  /** Writes acme's section straight into the registry's row (as before these rules); its new version. */
  const writeRow = async (comm: Record<string, unknown>): Promise<number> => {
    const [row] = await admin`update tenants set config = ${admin.json({ comm } as never)}, version = version + 1 where id = ${acme} returning version`
    return row?.version as number
  }
  /** Until the comm-service's cached record of acme is at `version`; its configuration's problems. */
  const seen = async (version: number): Promise<string[] | undefined> => {
    let view: { headers: Record<string, unknown>, body: any } | undefined
    await until(async () => {
      view = await call('GET', '/v1/config', acme)
      return view.headers.etag === `"${acme}.${version}"`
    }, 10_000, `acme's record at version ${version}`)
    return view?.body.problems
  }

  t.test('through the comm API: refused, the field named, nothing stored', async (t) => {
    const cases: Array<[string, unknown, number, string, RegExp]> = [
      ['globex\'s address as From', { emailFrom: `hello@${globexDomain}` }, 400, 'VALIDATION_FAILED', new RegExp(`emailFrom hello@${globexDomain} is not at one of this tenant's domains \\(${acmeDomain}, ${acme}\\.${BASE}\\)`)],
      ['globex\'s domain as Reply-To, in capitals', { replyTo: `billing@${globexDomain.toUpperCase()}` }, 400, 'VALIDATION_FAILED', /replyTo billing@.* is not at one of this tenant's domains/],
      ['globex\'s <id>.<BASE_DOMAIN>', { emailFrom: `x@${globex}.${BASE}` }, 400, 'VALIDATION_FAILED', /emailFrom/],
      ['the platform\'s default sender as Reply-To', { replyTo: `no-reply@${BASE}` }, 400, 'VALIDATION_FAILED', /replyTo/],
      ['globex\'s address as the display name', { emailFromName: `billing@${globexDomain}` }, 400, 'VALIDATION_FAILED', /emailFromName .*"@"/],
      ['globex\'s SMS sender id', { smsSenderId: 'GLOBEX' }, 409, 'CONFLICT', /smsSenderId is already another tenant's sender id/],
      ['globex\'s SMS sender id in lower case', { smsSenderId: 'globex' }, 409, 'CONFLICT', /smsSenderId/]
    ]
    for (const [what, body, status, code, message] of cases) {
      const res = await call('PATCH', '/v1/config', acme, body, OWNER)
      t.same([res.status, res.body.code], [status, code], what)
      t.match(res.body.message, message, `${what}: ${String(res.body.message)}`)
    }
    t.equal(await stored(), undefined, 'the registry\'s row never got any of it')
  })

  t.test('straight to the registry with acme\'s owner token: refused too', async (t) => {
    const from = await registryPatch(acme, { comm: { emailFrom: `hello@${globexDomain}` } }, acmeOwner)
    t.same([from.status, from.body.code], [400, 'VALIDATION_FAILED'])
    t.match(from.body.message, /config\.comm\.emailFrom must be at one of this tenant's domains/)
    const replyTo = await registryPatch(acme, { comm: { replyTo: `hello@${globexDomain}` } }, acmeOwner)
    t.same([replyTo.status, replyTo.body.code], [400, 'VALIDATION_FAILED'])
    const id = await registryPatch(acme, { comm: { smsSenderId: 'Globex' } }, acmeOwner)
    t.same([id.status, id.body.code], [409, 'CONFLICT'])
    t.match(id.body.message, /config\.comm\.smsSenderId/)
    t.equal(await stored(), undefined, 'nothing stored')
    t.equal(relay.mails.length, 0)
  })

  t.test('acme\'s own senders, <id>.<BASE_DOMAIN> and the platform\'s default are delivered', async (t) => {
    const own = await call('PATCH', '/v1/config', acme, { emailFrom: `no-reply@${acmeDomain.toUpperCase()}`, replyTo: `help@${acme}.${BASE}`, smsSenderId: 'ACME' }, OWNER)
    t.equal(own.status, 200, JSON.stringify(own.body))
    t.equal((await email()).status, 'sent')
    t.match(relay.mails.at(-1), { from: `no-reply@${acmeDomain}`, headers: { from: `no-reply@${acmeDomain}`, 'reply-to': `help@${acme}.${BASE}` } }, 'From and Reply-To are acme\'s (the domain in capitals is the same domain)')
    t.equal((await text()).status, 'sent')
    t.match(JSON.parse(sms.received.at(-1)?.body as string), { from: 'ACME' })

    t.equal((await call('PATCH', '/v1/config', acme, { emailFrom: `hello@${acme}.${BASE}`, replyTo: null }, OWNER)).status, 200)
    t.equal((await email()).status, 'sent')
    t.match(relay.mails.at(-1), { from: `hello@${acme}.${BASE}` }, 'its subdomain of the base domain')
    t.notOk('reply-to' in (relay.mails.at(-1)?.headers ?? {}), 'no Reply-To when none is set')

    const platform = await call('PATCH', '/v1/config', acme, { emailFrom: `No-Reply@${BASE}`, smsSenderId: 'platform' }, OWNER)
    t.equal(platform.status, 200, JSON.stringify(platform.body))
    t.match(platform.body, { emailFrom: '', smsSenderId: '' }, 'the platform\'s default, written explicitly, is stored as the default')
    t.match(await stored(), { emailFrom: '', smsSenderId: '' })
    t.equal((await email()).status, 'sent')
    t.match(relay.mails.at(-1), { from: `no-reply@${BASE}` }, 'the platform\'s default sender')
    t.equal((await text()).status, 'sent')
    t.match(JSON.parse(sms.received.at(-1)?.body as string), { from: 'PLATFORM' })
    t.equal((await registryPatch(globex, { comm: { smsSenderId: 'PLATFORM' } }, p.adminToken)).status, 200, 'the platform\'s default id stays free for everyone (no tenant reserved it)')
  })

  t.test('a sender written before these rules (straight into the row) fails at send time', async (t) => {
    const before = relay.mails.length
    t.match(await seen(await writeRow({ emailFrom: `hello@${globexDomain}`, smsSenderId: 'ACME' })), [/emailFrom hello@.* is not at one of this tenant's domains/], 'GET /v1/config names the problem')
    const failed = await email()
    t.match(failed, { status: 'failed', attempts: 1, lastError: new RegExp(`emailFrom hello@${globexDomain} is not at one of this tenant's domains.*the message is not sent as another's sender`) })
    t.match(failed.history.at(-1), { status: 'failed', detail: /^rejected: emailFrom/ })
    t.match(await seen(await writeRow({ emailFrom: `no-reply@${acmeDomain}`, replyTo: `billing@${globexDomain}`, smsSenderId: 'ACME' })), [/replyTo billing@/])
    t.match(await email(), { status: 'failed', attempts: 1, lastError: /replyTo billing@.* is not at one of this tenant's domains/ })
    t.equal(relay.mails.length, before, 'neither reached the SMTP relay')
    t.equal((await text()).status, 'sent', 'its SMS, with its own sender id, still go')
  })

  t.test('a custom domain removed after the sender was set: the next email is refused at send time', async (t) => {
    t.equal(await seen(await writeRow({ emailFrom: `no-reply@${acmeDomain}`, smsSenderId: 'ACME' })), undefined, 'no problems')
    t.equal((await email()).status, 'sent', 'while acme owns the domain')
    const before = relay.mails.length
    const removed = await request(`${p.registryUrl}/v1/tenants/${acme}/domains/${acmeDomain}`, { method: 'DELETE', headers: { authorization: `Bearer ${p.adminToken}` } })
    t.equal(removed.statusCode, 200)
    const { version } = await removed.body.json() as { version: number }
    t.match(await seen(version), [/emailFrom no-reply@.* is not at one of this tenant's domains \(/])
    t.match(await email(), { status: 'failed', attempts: 1, lastError: /emailFrom no-reply@.* is not at one of this tenant's domains/ })
    t.equal(relay.mails.length, before, 'nothing reached the SMTP relay')
    const fix = await call('PATCH', '/v1/config', acme, { emailFromName: 'Acme' }, OWNER)
    t.same([fix.status, fix.body.code], [400, 'VALIDATION_FAILED'], 'and a write must fix it')
    t.equal((await call('PATCH', '/v1/config', acme, { emailFrom: null }, OWNER)).status, 200)
    t.equal((await email()).status, 'sent', 'fixed')
  })
})

t.test('the rules, unit by unit', async (t) => {
  const acme = { ...makeTenant('acme'), domains: [{ domain: 'Acme.Test', primary: true }] }
  const policy = { baseDomain: 'Platform.Test', emailFrom: 'no-reply@platform.test', smsSenderId: 'PLATFORM' }
  t.same(senderDomains(acme, policy.baseDomain), ['acme.test', 'acme.platform.test'])
  t.same(senderDomains(acme, undefined), ['acme.test'], 'without BASE_DOMAIN, custom domains only')
  t.same(senderProblems(makeSettings({ emailFrom: 'a@ACME.test', replyTo: 'b@acme.platform.test' }), acme, policy), [])
  t.same(senderProblems(makeSettings({ emailFrom: 'NO-REPLY@platform.test' }), acme, policy), [], 'the platform\'s default sender')
  t.match(senderProblems(makeSettings({ emailFrom: 'a@globex.test', replyTo: 'no-reply@platform.test' }), makeTenant('acme'), { emailFrom: 'no-reply@platform.test', smsSenderId: '' }), [/emailFrom a@globex\.test is not at one of this tenant's domains \(it has none\) nor the platform's default sender/, /^replyTo no-reply@platform\.test is not at one of this tenant's domains \(it has none\)$/])
  t.match(senderProblems(makeSettings({ emailFrom: 'a@globex.test' }), acme, { emailFrom: '', smsSenderId: '' }), [/emailFrom/], 'no platform default: only the tenant\'s domains')
  t.match(storedSenders(makeSettings({ emailFrom: 'No-Reply@Platform.Test', smsSenderId: 'platform' }), policy), { emailFrom: '', smsSenderId: '' })
  t.match(storedSenders(makeSettings({ emailFrom: 'a@acme.test', smsSenderId: 'ACME' }), policy), { emailFrom: 'a@acme.test', smsSenderId: 'ACME' })
  t.match(storedSenders(makeSettings({ emailFrom: 'no-reply@platform.test', smsSenderId: 'PLATFORM' }), { emailFrom: '', smsSenderId: '' }), { emailFrom: 'no-reply@platform.test', smsSenderId: 'PLATFORM' }, 'no platform default: nothing to fold')
  t.match(check(makeSettings({ replyTo: 'not an address' })), [/^replyTo must be an email address$/])
  t.same(check(makeSettings({ replyTo: 'help@acme.example.com' })), [])
})
