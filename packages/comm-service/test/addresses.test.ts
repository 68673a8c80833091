// Connect to what was checked: one classification of addresses (ipaddr.js), one resolution per
// connection (a resolver the test controls answers as a rebinding DNS would: a public address
// first, 127.0.0.1 after), the connection made to the address checked with the name kept for
// TLS, and SMTP credentials over TLS only. Real peers on loopback (smtp-server, HTTP servers);
// where each connection goes is read from Node's own `net.client.socket` diagnostics channel.
import dc from 'node:diagnostics_channel'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:https'
import type { Socket } from 'node:net'
import tls from 'node:tls'
import { SMTPServer } from 'smtp-server'
import t, { type Test } from 'tap'
import { allowHostsFromEnv, providersFromEnv } from '../src/config.ts'
import { hostAllowed, isPublicAddress, parseAllowEntry, pinAddresses, type Resolve } from '../src/delivery/address.ts'
import { Providers, type ProviderDefaults } from '../src/delivery/providers/index.ts'
import { SmsHttpProvider } from '../src/delivery/providers/sms-http.ts'
import { WebhookProvider } from '../src/delivery/providers/webhook.ts'
import { checkWebhookTarget } from '../src/messages/validate.ts'
import { assertWorkable } from '../src/routes/config.ts'
import { KeyRing, secretContext } from '../src/secrets.ts'
import { httpPeer, smtpPeer } from './peers.ts'
import { makeContext, makeSettings, makeTenant } from './tenant.ts'

// Owns the sender domain of makeSettings(), so only the addresses are judged.
const ACME_OWNER = { id: 'acme', domains: [{ domain: 'acme.example.com', primary: true }] }
const NO_DEFAULT_SENDERS = { emailFrom: '', smsSenderId: '' }

// A public address (example.com's, once): the test stops every connection to it at its first attempt.
const PUBLIC = '93.184.216.34'
const TOKEN = 'sms-bearer-token-5f1c9e'
const PASSWORD = 'smtp-password-of-the-tenant-77a1'

// The forms the issue names, as a resolver (or the WHATWG URL parser) gives them, with what each is.
const SPECIAL: Array<[string, string]> = [
  ['::7f00:1', 'IPv4-compatible ::127.0.0.1'],
  ['::ffff:0:7f00:1', 'IPv4-translated ::ffff:0:127.0.0.1'],
  ['::ffff:7f00:1', 'IPv4-mapped ::ffff:127.0.0.1'],
  ['64:ff9b::a9fe:a9fe', 'NAT64 64:ff9b::169.254.169.254'],
  ['64:ff9b:1::a9fe:a9fe', 'NAT64 local-use 64:ff9b:1::/48'],
  ['2002:7f00:1::', '6to4 of 127.0.0.1'],
  ['2001::1', 'Teredo'],
  ['198.18.0.1', 'benchmarking 198.18.0.0/15'],
  ['198.19.255.254', 'benchmarking, upper half'],
  ['192.0.0.8', 'IETF protocol assignments'],
  ['100::1', 'discard-only'],
  ['2001:db8::1', 'documentation'],
  ['255.255.255.255', 'broadcast']
]

const message = { id: 'c0ffee00-0000-4000-8000-00000000a001', channel: 'email' as const, to: 'ann@example.com', subject: 'Hi', text: 'Hello', html: null, body: null, metadata: {} }
const sms = { ...message, channel: 'sms' as const, to: '+15550100', subject: null, text: null, body: 'code 1234' }

function defaults (overrides: Partial<ProviderDefaults> = {}): ProviderDefaults {
  return { email: 'smtp', sms: 'sms-http', webhook: 'webhook', emailFrom: '', smsSenderId: '', smtp: null, smsHttp: null, webhookSecret: 'x'.repeat(32), allowWebhookHosts: [], timeout: 3000, keys: null, ...overrides }
}

/** A resolver that answers `first` once, then 127.0.0.1 (a rebinding DNS); counts its questions. */
function rebinding (first: string): { resolve: Resolve, asked: string[] } {
  const asked: string[] = []
  return { asked, resolve: async (host) => { asked.push(host); return asked.length === 1 ? [first] : ['127.0.0.1'] } }
}

/**
 * Every outgoing TCP connection attempt of this process while the test runs (address and port,
 * as Node's `net` makes it); an attempt to PUBLIC is stopped at once, before anything is written
 * on it (unless the network refuses it first).
 */
function watchConnections (t: Test): Array<{ address: string, port: number }> {
  const attempts: Array<{ address: string, port: number }> = []
  const onSocket = (message: unknown): void => {
    const socket = (message as { socket: Socket }).socket
    socket.on('connectionAttempt', (address: string, port: number) => {
      attempts.push({ address, port })
      if (address === PUBLIC) setImmediate(() => socket.destroy(Object.assign(new Error('stopped by the test at the checked address'), { code: 'ESTOPPED' })))
    })
  }
  dc.subscribe('net.client.socket', onSocket)
  t.teardown(() => { dc.unsubscribe('net.client.socket', onSocket) })
  return attempts
}

t.test('one classification: only ipaddr.js unicast is public; embedded IPv4 judged as itself', async (t) => {
  for (const [address, what] of SPECIAL) t.notOk(isPublicAddress(address), `${address} (${what}) is not public`)
  for (const address of ['127.0.0.1', '10.0.0.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '240.0.0.1', '::', '::1', 'fe80::1', 'fc00::1', 'fec0::1', 'ff02::1', '::ffff:a00:1', '64:ff9b::7f00:1', '::a9fe:a9fe']) {
    t.notOk(isPublicAddress(address), `${address} is not public`)
  }
  for (const address of [PUBLIC, '8.8.8.8', '2606:4700::1111', '::ffff:808:808', '64:ff9b::808:808', '::808:808']) {
    t.ok(isPublicAddress(address), `${address} is public`)
  }
  t.notOk(isPublicAddress('localhost'), 'a name is not an address')
})

t.test('the allow list: a host (any port) or host:port (that port only)', async (t) => {
  t.same(parseAllowEntry('Inbox.Test:8025'), { host: 'inbox.test', port: 8025 })
  t.same(parseAllowEntry('[::1]:25'), { host: '::1', port: 25 })
  t.same(parseAllowEntry('[::1]'), { host: '::1', port: null })
  t.same(parseAllowEntry('::1'), { host: '::1', port: null })
  t.same(parseAllowEntry('localhost'), { host: 'localhost', port: null })
  for (const bad of ['host:0', 'host:70000', 'host:x', '[nope]:25', ':25', 'a:b:c']) t.throws(() => parseAllowEntry(bad), { message: /not a host/ }, bad)
  const allow = ['127.0.0.1:8025', 'localhost', '[::1]:25']
  t.ok(hostAllowed(allow, '127.0.0.1', 8025))
  t.notOk(hostAllowed(allow, '127.0.0.1', 5432), 'another port of an allowed address is not allowed')
  t.ok(hostAllowed(allow, 'LOCALHOST', 5432), 'a bare host allows every port')
  t.ok(hostAllowed(allow, '[::1]', 25))
  t.notOk(hostAllowed(allow, '::1', 26))
  t.same(allowHostsFromEnv({ COMM_WEBHOOK_ALLOW_HOSTS: ' 127.0.0.1:8025 , [::1]:25,' }), ['127.0.0.1:8025', '[::1]:25'])
  t.same(allowHostsFromEnv({}), [])
  t.throws(() => allowHostsFromEnv({ COMM_WEBHOOK_ALLOW_HOSTS: '127.0.0.1:99999' }), { code: 'MT_INVALID_ENV', variable: 'COMM_WEBHOOK_ALLOW_HOSTS' })

  const peer = await httpPeer(t)
  const port = Number(new URL(peer.url).port)
  t.ok(await checkWebhookTarget(peer.url, [`127.0.0.1:${port}`]), 'the allowed port')
  await t.rejects(checkWebhookTarget(`http://127.0.0.1:${port + 1}/hook`, [`127.0.0.1:${port}`]), { code: 'VALIDATION_FAILED', message: /public addresses/ }, 'not the port next to it')
  const webhook = new WebhookProvider({ secrets: () => ['whsec_AAAA'], allowHosts: [`127.0.0.1:${port}`], timeout: 2000 })
  t.teardown(() => webhook.close())
  t.ok(await webhook.send({ ...message, channel: 'webhook', to: peer.url, body: '{}' }, makeContext('acme')))
  await t.rejects(webhook.send({ ...message, channel: 'webhook', to: `http://127.0.0.1:${port + 1}/hook`, body: '{}' }, makeContext('acme')), { code: 'PROVIDER_REJECTED', message: /non-public/ })
})

t.test('each special-purpose form is refused: webhook target, SMS URL, SMTP host', async (t) => {
  const peer = await httpPeer(t)
  const port = Number(new URL(peer.url).port)
  const attempts = watchConnections(t)
  const webhook = new WebhookProvider({ secrets: () => ['whsec_AAAA'], timeout: 2000 })
  t.teardown(() => webhook.close())
  for (const literal of ['[::127.0.0.1]', '[::ffff:0:127.0.0.1]', '[::ffff:127.0.0.1]', '[64:ff9b::169.254.169.254]', '[2002:7f00:1::]', '[2001::7f00:1]', '198.18.0.1']) {
    const url = `http://${literal}:${port}/hook`
    // At accept (POST /v1/messages runs this check) and again when the delivery connects.
    await t.rejects(checkWebhookTarget(url), { code: 'VALIDATION_FAILED', message: /public addresses/ }, `${literal}: refused at accept`)
    await t.rejects(webhook.send({ ...message, channel: 'webhook', to: url, body: '{}' }, makeContext('acme')), { code: 'PROVIDER_REJECTED', message: /non-public/ }, `${literal}: refused at connect`)
    // A tenant's SMS API at that address: refused when the configuration is written.
    await t.rejects(assertWorkable(makeSettings({ smsHttp: { url: `https://${literal}:${port}/sms`, token: '', tokenSetAt: '' } }), { allowHosts: [], platform: { smtp: true, smsHttp: true, emailFrom: true, smsSenderId: true }, senders: NO_DEFAULT_SENDERS }, ACME_OWNER), { code: 'VALIDATION_FAILED', message: /non-public/ }, `${literal}: refused as an SMS URL`)
  }
  for (const secure of [false, true]) {
    const smtp = { host: '198.18.0.1', port: 0, secure, user: '', password: '', passwordSetAt: '' }
    await t.rejects(assertWorkable(makeSettings({ smtp }), { allowHosts: [], platform: { smtp: true, smsHttp: true, emailFrom: true, smsSenderId: true }, senders: NO_DEFAULT_SENDERS }, ACME_OWNER), { code: 'VALIDATION_FAILED', message: /smtp\.host 198\.18\.0\.1 resolves to a non-public address/ })
    // Allowed on its default port only (465 with implicit TLS, 587 otherwise).
    const allowHosts = [`198.18.0.1:${secure ? 465 : 587}`]
    await t.resolves(assertWorkable(makeSettings({ smtp }), { allowHosts, platform: { smtp: true, smsHttp: true, emailFrom: true, smsSenderId: true }, senders: NO_DEFAULT_SENDERS }, ACME_OWNER))
  }

  // A name that resolves to each form: refused by every provider before any connection.
  for (const [address, what] of SPECIAL) {
    const resolve: Resolve = async () => [address]
    const webhooks = new WebhookProvider({ secrets: () => ['whsec_AAAA'], resolve, timeout: 2000 })
    t.teardown(() => webhooks.close())
    const providers = new Providers(defaults({ resolve }))
    t.teardown(() => providers.close())
    const to = `http://evil.example.com:${port}/hook`
    for (const origin of ['http://evil.example.com', 'https://evil.example.com']) {
      await t.rejects(webhooks.send({ ...message, channel: 'webhook', to: `${origin}/hook`, body: '{}' }, makeContext('acme')), { code: 'PROVIDER_REJECTED' }, `${origin} (its default port) resolving to ${what}`)
    }
    await t.rejects(webhooks.send({ ...message, channel: 'webhook', to, body: '{}' }, makeContext('acme')), { code: 'PROVIDER_REJECTED', message: /evil\.example\.com resolves to a non-public address/ }, `webhook to a name resolving to ${what}`)
    const smsSettings = makeSettings({ smsHttp: { url: `http://sms.evil.example.com:${port}/hook`, token: '', tokenSetAt: '' } })
    await t.rejects(providers.for({ tenant: makeTenant('acme'), settings: smsSettings }, 'sms').send(sms, { tenant: makeTenant('acme'), settings: smsSettings }), { code: 'PROVIDER_REJECTED', message: /non-public/ }, `SMS URL resolving to ${what}`)
    await t.rejects(providers.smtpServer(makeSettings({ smtp: { host: 'mail.evil.example.com', port, secure: false, user: '', password: '', passwordSetAt: '' } }), 'acme'), { code: 'PROVIDER_REJECTED', message: /non-public/ }, `SMTP host resolving to ${what}`)
  }
  t.equal(peer.received.length, 0, 'nothing reached the loopback listener')
  t.same(attempts.filter((a) => a.port === port), [], 'no connection was even attempted')
})

t.test('SMS rebinding: one resolution, the connection to the address checked, the token never on loopback', async (t) => {
  const listener = await httpPeer(t, '/sms')
  const port = Number(new URL(listener.url).port)
  const attempts = watchConnections(t)
  const dns = rebinding(PUBLIC)
  const ring = KeyRing.parse(KeyRing.generate('k1'))
  const providers = new Providers(defaults({ resolve: dns.resolve, keys: ring }))
  t.teardown(() => providers.close())
  const settings = makeSettings({ providers: { email: '', sms: 'sms-http', webhook: '' }, smsHttp: { url: `http://sms.rebind.example.com:${port}/sms`, token: ring.seal(TOKEN, secretContext('acme', 'smsHttp.token')), tokenSetAt: '' } })
  const context = { tenant: makeTenant('acme'), settings }
  await t.rejects(providers.for(context, 'sms').send(sms, context), { code: 'PROVIDER_TRANSIENT' }, 'stopped at the checked (public) address: a transient failure')
  t.same(dns.asked, ['sms.rebind.example.com'], 'the name was resolved once for the check and the connection')
  t.same(attempts.filter((a) => a.port === port), [{ address: PUBLIC, port }], 'one connection attempt, to the checked address')
  // The next attempt resolves again: the answer is now 127.0.0.1, refused before connecting.
  await t.rejects(providers.for(context, 'sms').send(sms, context), { code: 'PROVIDER_REJECTED', message: /non-public/ })
  t.equal(attempts.filter((a) => a.address === '127.0.0.1' && a.port === port).length, 0, 'never a connection to loopback')
  t.equal(listener.received.length, 0, 'the bearer token never reached the loopback listener')
})

t.test('SMTP rebinding: one resolution, the connection to the address checked, the login never on loopback', async (t) => {
  const listener = await smtpPeer(t, { user: 'tenant', password: PASSWORD })
  const attempts = watchConnections(t)
  const dns = rebinding(PUBLIC)
  const ring = KeyRing.parse(KeyRing.generate('k1'))
  const providers = new Providers(defaults({ resolve: dns.resolve, keys: ring, allowPlaintextSmtpAuth: true }))
  t.teardown(() => providers.close())
  const settings = makeSettings({ providers: { email: 'smtp', sms: '', webhook: '' }, smtp: { host: 'mail.rebind.example.com', port: listener.port, secure: false, user: 'tenant', password: ring.seal(PASSWORD, secretContext('acme', 'smtp.password')), passwordSetAt: '', allowPlaintextAuth: true } })
  const context = { tenant: makeTenant('acme'), settings }
  await t.rejects(providers.for(context, 'email').send(message, context), { code: 'PROVIDER_TRANSIENT' }, 'stopped at the checked (public) address: a transient failure')
  t.same(dns.asked, ['mail.rebind.example.com'], 'the name was resolved once for the check and the connection')
  t.same(attempts.filter((a) => a.port === listener.port), [{ address: PUBLIC, port: listener.port }], 'one connection attempt, to the checked address')
  await t.rejects(providers.for(context, 'email').send(message, context), { code: 'PROVIDER_REJECTED', message: /non-public/ }, 'the next resolution (127.0.0.1) is refused')
  t.equal(attempts.filter((a) => a.address === '127.0.0.1' && a.port === listener.port).length, 0, 'never a connection to loopback')
  t.same(listener.logins, [], 'the SMTP login never reached the loopback listener')
  t.same(listener.mails, [])
})

const cert = readFileSync(new URL('./tls/tenant.crt', import.meta.url), 'utf8')
const key = readFileSync(new URL('./tls/tenant.key', import.meta.url), 'utf8')

t.test('the name is kept for TLS: SNI, certificate and Host checked against it, not the pinned address', async (t) => {
  // The test's certificate (mail.tenant.test, sms.tenant.test) trusted as a CA by this process.
  const before = tls.getCACertificates('default')
  tls.setDefaultCACertificates([...before, cert])
  t.teardown(() => { tls.setDefaultCACertificates(before) })
  const ring = KeyRing.parse(KeyRing.generate('k1'))

  // SMTP with STARTTLS required (credentials, no plaintext allowed): the login arrives over TLS.
  const sni: string[] = []
  const logins: Array<{ user: string, secure: boolean }> = []
  const server = new SMTPServer({
    key,
    cert,
    logger: false,
    SNICallback (servername, callback) { sni.push(servername); callback(null, tls.createSecureContext({ key, cert })) },
    onAuth (login, session, callback) { logins.push({ user: login.username as string, secure: session.secure }); callback(null, { user: login.username }) },
    onData (stream, _session, callback) { stream.resume(); stream.on('end', () => callback()) }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const smtpPort = (server.server.address() as { port: number }).port

  const https = createServer({ key, cert }, (request, response) => {
    response.setHeader('content-type', 'application/json')
    response.end(JSON.stringify({ id: 'sms-1', host: request.headers.host, authorization: request.headers.authorization }))
  })
  const hosts: string[] = []
  https.on('request', (request) => hosts.push(String(request.headers.host)))
  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => https.close(() => resolve())))
  const httpsPort = (https.address() as { port: number }).port

  const resolve: Resolve = async () => ['127.0.0.1']
  const providers = new Providers(defaults({ resolve, keys: ring, allowWebhookHosts: [`mail.tenant.test:${smtpPort}`, `sms.tenant.test:${httpsPort}`] }))
  t.teardown(() => providers.close())
  const settings = makeSettings({
    smtp: { host: 'mail.tenant.test', port: smtpPort, secure: false, user: 'tenant', password: ring.seal(PASSWORD, secretContext('acme', 'smtp.password')), passwordSetAt: '' },
    smsHttp: { url: `https://sms.tenant.test:${httpsPort}/sms`, token: ring.seal(TOKEN, secretContext('acme', 'smsHttp.token')), tokenSetAt: '' }
  })
  t.match(await providers.smtpServer(settings, 'acme'), { host: '127.0.0.1', servername: 'mail.tenant.test' }, 'connect to the address, verify the name')
  const context = { tenant: makeTenant('acme'), settings }
  t.ok((await providers.smtp.send(message, context)).providerMessageId)
  t.same(sni, ['mail.tenant.test'], 'SNI names the server')
  t.same(logins, [{ user: 'tenant', secure: true }], 'the login went over TLS')
  t.same(await (await providers.smsFor(settings, 'acme')).send(sms, context), { providerMessageId: 'sms-1' })
  t.same(hosts, [`sms.tenant.test:${httpsPort}`], 'the Host header names the API, not the address')

  // Without the name the certificate does not match the address: the pinned path really verifies.
  const bare = new SmsHttpProvider({ url: `https://127.0.0.1:${httpsPort}/sms`, pin: { allow: [`127.0.0.1:${httpsPort}`] }, timeout: 2000 })
  t.teardown(() => bare.close())
  await t.rejects(bare.send(sms, context), { code: 'PROVIDER_TRANSIENT', message: /ERR_TLS_CERT_ALTNAME_INVALID/ })
  t.same(hosts.length, 1)
})

t.test('SMTP credentials over TLS only, unless the tenant and the platform both allow plaintext', async (t) => {
  const peer = await smtpPeer(t, { user: 'tenant', password: PASSWORD }) // plain SMTP, no STARTTLS
  const ring = KeyRing.parse(KeyRing.generate('k1'))
  const sealed = ring.seal(PASSWORD, secretContext('acme', 'smtp.password'))
  const send = async (platform: boolean, tenant: boolean): Promise<unknown> => {
    const providers = new Providers(defaults({ keys: ring, allowWebhookHosts: [`127.0.0.1:${peer.port}`], allowPlaintextSmtpAuth: platform }))
    t.teardown(() => providers.close())
    const context = makeContext('acme', { smtp: { host: '127.0.0.1', port: peer.port, secure: false, user: 'tenant', password: sealed, passwordSetAt: '', allowPlaintextAuth: tenant } })
    return await providers.smtp.send(message, context)
  }
  for (const [platform, tenant] of [[false, false], [false, true], [true, false]] as const) {
    await t.rejects(send(platform, tenant), { code: 'PROVIDER_REJECTED', message: /credentials are sent over TLS only/ }, `platform ${platform}, tenant ${tenant}: refused`)
  }
  t.same(peer.logins, [], 'the password was never sent in plaintext')
  t.ok(await send(true, true), 'both: sent')
  t.same(peer.logins, [{ user: 'tenant', password: PASSWORD }])

  // The platform's own server (SMTP_URL) with credentials: plaintext only when the platform allows it.
  const platform = { host: '127.0.0.1', port: peer.port, secure: false, user: 'tenant', password: PASSWORD }
  const strict = new Providers(defaults({ smtp: platform }))
  t.teardown(() => strict.close())
  await t.rejects(strict.smtp.send(message, makeContext('acme')), { code: 'PROVIDER_REJECTED', message: /TLS only/ })
  const relaxed = new Providers(defaults({ smtp: platform, allowPlaintextSmtpAuth: true }))
  t.teardown(() => relaxed.close())
  t.ok(await relaxed.smtp.send(message, makeContext('acme')))
  t.equal(peer.logins.length, 2)
  // Without credentials there is nothing to protect: plain SMTP as before.
  const open = await smtpPeer(t)
  const anonymous = new Providers(defaults({ smtp: { host: '127.0.0.1', port: open.port, secure: false } }))
  t.teardown(() => anonymous.close())
  t.ok(await anonymous.smtp.send(message, makeContext('acme')))

  t.equal(providersFromEnv({}).allowPlaintextSmtpAuth, false, 'off by default')
  t.equal(providersFromEnv({ COMM_ALLOW_PLAINTEXT_SMTP_AUTH: 'true' }).allowPlaintextSmtpAuth, true)
  t.throws(() => providersFromEnv({ COMM_ALLOW_PLAINTEXT_SMTP_AUTH: 'yes' }), { code: 'MT_INVALID_ENV', variable: 'COMM_ALLOW_PLAINTEXT_SMTP_AUTH' })
})

t.test('a pinned connection tries the checked addresses in turn; an unresolved name is transient', async (t) => {
  const peer = await httpPeer(t, '/sms')
  const port = Number(new URL(peer.url).port)
  // ::1 first (nothing listens there on this port), then 127.0.0.1: both allowed, the second answers.
  const provider = new SmsHttpProvider({ url: `http://two.example.com:${port}/sms`, pin: { allow: [`two.example.com:${port}`], resolve: async () => ['::1', '127.0.0.1'] }, timeout: 2000 })
  t.teardown(() => provider.close())
  t.ok(await provider.send(sms, makeContext('acme')))
  t.equal(peer.received[0]?.headers.host, `two.example.com:${port}`)
  const nowhere = new SmsHttpProvider({ url: `http://nowhere.example.com:${port}/sms`, pin: { resolve: async () => [] }, timeout: 2000 })
  t.teardown(() => nowhere.close())
  await t.rejects(nowhere.send(sms, makeContext('acme')), { code: 'PROVIDER_TRANSIENT', message: /ENOTFOUND/ })
  await t.rejects(pinAddresses('failing.example.com', 80, { resolve: async () => { throw new Error('SERVFAIL') } }), { code: 'ENOTFOUND' })
})

t.test('a round-robin SMTP name keeps its tenant on the address used last while it is still answered', async (t) => {
  const answers = [['8.8.8.8', '8.8.4.4'], ['8.8.4.4', '8.8.8.8'], ['1.1.1.1', '8.8.4.4'], ['8.8.4.4', '1.1.1.1']]
  const providers = new Providers(defaults({ resolve: async () => answers.shift() ?? [] }))
  t.teardown(() => providers.close())
  const settings = makeSettings({ smtp: { host: 'mail.round.example.com', port: 587, secure: false, user: '', password: '', passwordSetAt: '' } })
  const hosts: string[] = []
  for (let i = 0; i < 4; i++) hosts.push((await providers.smtpServer(settings, 'acme'))?.host as string)
  t.same(hosts, ['8.8.8.8', '8.8.8.8', '1.1.1.1', '1.1.1.1'])
  t.match(await providers.smtpServer(settings, 'acme').catch((err: Error) => err), { code: 'PROVIDER_TRANSIENT', message: /does not resolve/ })
})
