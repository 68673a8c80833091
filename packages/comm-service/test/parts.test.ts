// The parts on their own: the environment's provider settings, tenant settings, SMTP and SMS
// providers' edges, backoff, Retry-After, and the operational routes of a running app.
import { request } from 'undici'
import t from 'tap'
import { loadConfig, providersFromEnv } from '../src/config.ts'
import { Providers } from '../src/delivery/providers/index.ts'
import { SmsHttpProvider } from '../src/delivery/providers/sms-http.ts'
import { classifySmtpError, parseSmtpUrl, SmtpProvider } from '../src/delivery/providers/smtp.ts'
import { retryAfterMs } from '../src/delivery/providers/types.ts'
import { backoffMs, DEFAULT_RETRY } from '../src/delivery/worker.ts'
import { DeliveryQueue } from '../src/queue/boss.ts'
import { commSettings } from '../src/settings.ts'
import { startPlatform, tid } from './fixtures.ts'
import { startComm } from './helpers.ts'
import { httpPeer, smtpPeer } from './peers.ts'
import { makeContext, makeSettings, makeTenant } from './tenant.ts'

const message = { id: 'c0ffee00-0000-4000-8000-000000000002', channel: 'email' as const, to: 'ann@example.com', subject: 'Hi', text: 'x', html: null, body: null, metadata: {} }

t.test('provider settings from the environment, each mistake naming its variable', async (t) => {
  t.match(providersFromEnv({}), { email: 'log', sms: 'log', timeout: 10_000 })
  t.match(providersFromEnv({ SMTP_URL: 'smtps://me%40x:p%3Ass@mail.test', SMS_HTTP_URL: 'https://sms.test/send', SMS_HTTP_TOKEN: 'tok', COMM_EMAIL_FROM: 'no-reply@x.test', COMM_SMS_SENDER_ID: 'PLATFORM', COMM_WEBHOOK_SECRET: 'x'.repeat(32), COMM_SEND_TIMEOUT_MS: '5000' }), {
    email: 'smtp', sms: 'sms-http', smtp: { host: 'mail.test', port: 465, secure: true, user: 'me@x', password: 'p:ss' }, smsHttp: { url: 'https://sms.test/send', token: 'tok' }, emailFrom: 'no-reply@x.test', smsSenderId: 'PLATFORM', webhookSecret: 'x'.repeat(32), timeout: 5000
  })
  t.match(providersFromEnv({ SMTP_URL: 'smtp://[::1]', SMS_HTTP_URL: 'http://sms.test', COMM_EMAIL_PROVIDER: 'log', COMM_SMS_PROVIDER: 'log' }), { email: 'log', sms: 'log', smtp: { host: '::1', port: 587, secure: false }, smsHttp: { url: 'http://sms.test' } })
  const cases: Array<[string, Record<string, string>]> = [
    ['SMTP_URL', { SMTP_URL: 'mail.test:25' }],
    ['SMTP_URL', { SMTP_URL: 'http://mail.test' }],
    ['SMTP_URL', { SMTP_URL: 'smtp://' }],
    ['SMS_HTTP_URL', { SMS_HTTP_URL: 'sms.test' }],
    ['COMM_EMAIL_PROVIDER', { COMM_EMAIL_PROVIDER: 'ses' }],
    ['SMTP_URL', { COMM_EMAIL_PROVIDER: 'smtp' }],
    ['COMM_SMS_PROVIDER', { COMM_SMS_PROVIDER: 'twilio' }],
    ['SMS_HTTP_URL', { COMM_SMS_PROVIDER: 'sms-http' }],
    ['COMM_EMAIL_FROM', { COMM_EMAIL_FROM: 'not an address' }],
    ['COMM_SMS_SENDER_ID', { COMM_SMS_SENDER_ID: 'A-VERY-LONG-SENDER' }],
    ['COMM_WEBHOOK_SECRET', { COMM_WEBHOOK_SECRET: 'short' }],
    ['COMM_SEND_TIMEOUT_MS', { COMM_SEND_TIMEOUT_MS: '0' }]
  ]
  for (const [variable, env] of cases) t.throws(() => providersFromEnv(env), { code: 'MT_INVALID_ENV', variable }, `${variable}: ${JSON.stringify(env)}`)
  const base = { REGISTRY_URL: 'http://r:4000', SERVICE_TOKEN: 't', DATABASE_URL: 'postgres://c:p@db/x', JWT_SECRET: 'a-secret-that-is-long-enough-0123456789' }
  t.match(loadConfig({ ...base, COMM_MAX_ATTEMPTS: '3', COMM_RETRY_BASE_MS: '100', COMM_RETRY_MAX_MS: '1000' }), { retry: { attempts: 3, baseMs: 100, maxMs: 1000 }, queueUrls: { default: base.DATABASE_URL } })
  t.throws(() => loadConfig({ ...base, COMM_MAX_ATTEMPTS: '0' }), { code: 'MT_INVALID_ENV', variable: 'COMM_MAX_ATTEMPTS' } as never)
})

t.test('tenant settings: every problem named; an invalid section throws for that tenant only', async (t) => {
  const heard: string[][] = []
  const settings = commSettings((_tenant, problems) => heard.push(problems))
  const bad = { emailFrom: 'nope', emailFromName: 'A "quoted" name', smsSenderId: 'TOO-LONG-SENDER', providers: { email: 'ses', sms: 'twilio', webhook: 'pigeon' }, smtp: { host: '-bad-', port: 70000, secure: 'yes' } }
  t.throws(() => settings.for({ ...makeTenant('a'), config: { comm: bad } }), { code: 'TENANT_CONFIG_INVALID' })
  t.equal(heard[0]?.length, 9, `nine problems: ${JSON.stringify(heard[0])}`)
  t.match(settings.for({ ...makeTenant('b'), config: { comm: { emailFrom: 'x@b.test', providers: { email: 'smtp' } } } }), { emailFrom: 'x@b.test', providers: { email: 'smtp', sms: '' } })
})

t.test('backoff doubles with jitter and a cap; Retry-After read as seconds or a date', async (t) => {
  const policy = { ...DEFAULT_RETRY, baseMs: 1000, maxMs: 5000 }
  t.equal(backoffMs(1, policy, () => 0), 500)
  t.equal(backoffMs(1, policy, () => 1), 1000)
  t.equal(backoffMs(3, policy, () => 1), 4000)
  t.equal(backoffMs(10, policy, () => 1), 5000, 'capped')
  t.equal(retryAfterMs('7'), 7000)
  t.equal(retryAfterMs(['3']), 3000)
  t.equal(retryAfterMs(new Date(Date.now() + 10_000).toUTCString(), Date.now()) as number > 8000, true)
  t.equal(retryAfterMs('soon'), undefined)
  t.equal(retryAfterMs(undefined), undefined)
  t.equal(retryAfterMs(''), undefined)
})

t.test('SMTP: URL parsing, failures classified, one transport per server, moved when settings change', async (t) => {
  t.throws(() => parseSmtpUrl('https://x'), /smtp:\/\//)
  t.match(parseSmtpUrl('smtp://mail.test:2525'), { host: 'mail.test', port: 2525, secure: false })
  t.match(classifySmtpError({ responseCode: 550, message: 'no' }), { code: 'PROVIDER_REJECTED' })
  t.match(classifySmtpError({ responseCode: 421, message: 'busy' }), { code: 'PROVIDER_TRANSIENT' })
  t.match(classifySmtpError({ code: 'EAUTH', message: 'bad login' }), { code: 'PROVIDER_REJECTED' })
  t.match(classifySmtpError({ code: 'ECONNECTION', message: 'refused' }), { code: 'PROVIDER_TRANSIENT' })
  t.match(classifySmtpError('odd'), { code: 'PROVIDER_TRANSIENT', message: 'smtp: odd' })

  const one = await smtpPeer(t)
  const two = await smtpPeer(t)
  let port = one.port
  const provider = new SmtpProvider({ server: () => ({ host: '127.0.0.1', port, secure: false }), timeout: 2000 })
  t.teardown(() => provider.close())
  await provider.send(message, makeContext('a', { emailFromName: 'Acme' }))
  await provider.send(message, makeContext('b'))
  t.equal(provider.transports, 1, 'tenants on the same server share a transport')
  port = two.port
  await provider.send(message, makeContext('a'))
  t.equal(provider.transports, 2, 'a tenant whose server changed moves to a new transport')
  await provider.send(message, makeContext('b'))
  t.equal(provider.transports, 1, 'the old one is closed when no tenant uses it')
  t.same([one.mails.length, two.mails.length], [2, 2])
  await t.rejects(provider.send(message, makeContext('c', { emailFrom: '' })), { code: 'PROVIDER_REJECTED', message: /emailFrom/ })
  const none = new SmtpProvider({ server: () => null })
  await t.rejects(none.send(message, makeContext('a')), { code: 'PROVIDER_REJECTED', message: /no SMTP server/ })
  const bad = new SmtpProvider({ server: () => ({ host: '127.0.0.1', port: 1, secure: false, user: 'u' }), timeout: 1000 })
  t.teardown(() => bad.close())
  await t.rejects(bad.send(message, makeContext('a')), { code: 'PROVIDER_TRANSIENT' }, 'a server that is down is transient')
})

t.test('SMS over HTTP: sender required, unreachable is transient, an answer without an id is fine', async (t) => {
  const peer = await httpPeer(t, '/sms')
  peer.answer = { status: 202, body: 'ok' }
  const sms = { ...message, channel: 'sms' as const, to: '+15550100', subject: null, text: null, body: 'hi' }
  const plain = new SmsHttpProvider({ url: peer.url })
  t.teardown(() => plain.close())
  t.same(await plain.send(sms, makeContext('a')), { providerMessageId: sms.id })
  await t.rejects(plain.send(sms, makeContext('a', { smsSenderId: '' })), { code: 'PROVIDER_REJECTED', message: /smsSenderId/ })
  const down = new SmsHttpProvider({ url: 'http://127.0.0.1:1/sms', timeout: 1000 })
  t.teardown(() => down.close())
  await t.rejects(down.send(sms, makeContext('a')), { code: 'PROVIDER_TRANSIENT', message: /unreachable/ })
})

t.test('providers chosen per tenant and channel, with the platform\'s defaults', async (t) => {
  const providers = new Providers({ email: 'log', sms: 'log', webhook: 'webhook', emailFrom: 'platform@x.test', smsSenderId: 'PLAT', smtp: null, smsHttp: null, webhookSecret: 'x'.repeat(32), allowWebhookHosts: [], timeout: 1000, keys: null })
  t.teardown(() => providers.close())
  const empty = makeSettings({ emailFrom: '', smsSenderId: '' })
  t.match(providers.settings(empty), { emailFrom: 'platform@x.test', smsSenderId: 'PLAT' })
  t.equal(providers.for({ tenant: makeTenant('a'), settings: empty }, 'email').name, 'log')
  t.equal(providers.for({ tenant: makeTenant('a'), settings: empty }, 'webhook').name, 'webhook')
  t.equal(providers.for({ tenant: makeTenant('a'), settings: makeSettings({ providers: { email: 'smtp', sms: '', webhook: 'log' } }) }, 'webhook').name, 'log')
  t.equal(providers.for({ tenant: makeTenant('a'), settings: makeSettings({ providers: { email: 'smtp', sms: '', webhook: '' } }) }, 'email').name, 'smtp')
  const sms = providers.for({ tenant: makeTenant('a'), settings: makeSettings({ providers: { email: '', sms: 'sms-http', webhook: '' } }) }, 'sms')
  await t.rejects(sms.send({ ...message, channel: 'sms', to: '+15550100', body: 'x' }, makeContext('a')), { code: 'PROVIDER_REJECTED', message: /SMS_HTTP_URL/ })
  const smtp = { host: '127.0.0.1', port: 0, secure: true, user: '', password: '', passwordSetAt: '' }
  await t.rejects(providers.smtpServer(makeSettings({ smtp }), 'a'), { code: 'PROVIDER_REJECTED', message: /non-public/ }, 'a tenant\'s SMTP host must be public')
  await t.rejects(providers.smtpServer(makeSettings({ smtp: { ...smtp, host: 'nowhere.invalid' } }), 'a'), { code: 'PROVIDER_TRANSIENT', message: /does not resolve/ })
  const open = new Providers({ email: 'log', sms: 'log', webhook: 'webhook', emailFrom: '', smsSenderId: '', smtp: null, smsHttp: null, webhookSecret: 'x'.repeat(32), allowWebhookHosts: ['127.0.0.1'], timeout: 1000, keys: null })
  t.teardown(() => open.close())
  t.same(await open.smtpServer(makeSettings({ smtp }), 'a'), { host: '127.0.0.1', port: 465, secure: true })
  t.same(await open.smtpServer(makeSettings({ smtp: { ...smtp, secure: false } }), 'a'), { host: '127.0.0.1', port: 587, secure: false })
  await t.rejects(open.smtpServer(makeSettings({ smtp: { ...smtp, user: 'u', password: 'v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAA' } }), 'a'), { code: 'PROVIDER_REJECTED', message: /COMM_ENCRYPTION_KEYS is not set/ })
  t.equal(await providers.smtpServer(makeSettings(), 'a'), null)
  const logged = await providers.log.send({ ...message, channel: 'webhook', to: 'https://x.test', body: '{}' }, { tenant: makeTenant('a'), settings: makeSettings() })
  t.match(providers.log.sent.at(-1), { from: '', providerMessageId: logged.providerMessageId })
})

t.test('operations: /ready, /metrics without tenant labels, /docs; a missing queue schema is named', async (t) => {
  const p = await startPlatform(t)
  const a = tid('ops')
  await p.createTenant(a)
  const { url, call } = await startComm(t, p, { processMetrics: true })
  t.match(await (await request(`${url}/ready`)).body.json(), { status: 'ready', registry: true, database: true })
  t.equal((await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'hi' })).status, 202)
  const metrics = await (await request(`${url}/metrics`)).body.text()
  t.match(metrics, /comm_messages_accepted_total\{channel="sms",tier="standard"\} 1/)
  t.match(metrics, /comm_queue_depth\{cluster="default"\} \d+/)
  t.match(metrics, /comm_queue_oldest_seconds\{cluster="default"\} [\d.]+/)
  t.match(metrics, /process_cpu_user_seconds_total/)
  t.notMatch(metrics, new RegExp(a), 'no tenant id in any label')
  const docs = await (await request(`${url}/docs/json`)).body.json() as { paths: Record<string, unknown> }
  t.ok(docs.paths['/v1/messages'] !== undefined && docs.paths['/v1/messages/{id}/retry'] !== undefined, 'the OpenAPI document lists the routes')
  const queue = new DeliveryQueue({ url: p.serviceDatabaseUrl, schema: 'nowhere' })
  await t.rejects(queue.start(), { code: 'COMM_QUEUE_MISSING', message: /setupQueueSchema/ })
  await t.rejects(startComm(t, p, { queueUrls: { other: p.serviceDatabaseUrl.replace(/\/[^/]*$/, '/no_such_db') } }), 'a cluster whose queue cannot start fails the start')
})
