// The pieces behind issue 11's routes, on their own: the key ring, the environment, the settings
// checks, the configuration merge and its refusals, receipts' parsing and signatures.
import t from 'tap'
import { callbackSecretsFromEnv, keysFromEnv } from '../src/config.ts'
import { signWebhook } from '../src/delivery/providers/webhook.ts'
import { applyPatch, assertWorkable, configView } from '../src/routes/config.ts'
import { parseReceipt, verifyCallback } from '../src/routes/webhooks.ts'
import { KeyRing, secretContext } from '../src/secrets.ts'
import { check, COMM_DEFAULTS, type CommSettings } from '../src/settings.ts'
import { checkData, NO_FS } from '../src/templates/render.ts'
import { makeSettings, makeTenant } from './tenant.ts'

t.test('the key ring: parse, seal, open, refuse', async (t) => {
  const k1 = KeyRing.generate('k1')
  const ring = KeyRing.parse(` ${KeyRing.generate('k2')}, ${k1} `)
  t.equal(ring.currentKeyId, 'k2', 'the first key is the current one')
  const box = ring.seal('pa55', secretContext('acme', 'smtp.password'))
  t.match(box, /^v1\.k2\./)
  t.ok(KeyRing.isBox(box))
  t.notOk(KeyRing.isBox('pa55'))
  t.equal(ring.open(box, secretContext('acme', 'smtp.password')), 'pa55')
  t.not(ring.seal('pa55', 'x'), ring.seal('pa55', 'x'), 'a fresh IV each time')
  t.throws(() => ring.open(box, secretContext('globex', 'smtp.password')), { code: 'SECRET_UNREADABLE', message: /another tenant or field/ }, 'bound to the tenant')
  t.throws(() => ring.open(box, secretContext('acme', 'smsHttp.token')), { code: 'SECRET_UNREADABLE' }, 'and to the field')
  t.throws(() => ring.open(box.slice(0, -4) + (box.endsWith('AAAA') ? 'BBBB' : 'AAAA'), secretContext('acme', 'smtp.password')), { code: 'SECRET_UNREADABLE' }, 'altered')
  t.throws(() => ring.open('plaintext', 'x'), { message: /not an encrypted secret/ })
  t.throws(() => KeyRing.parse(k1).open(box, secretContext('acme', 'smtp.password')), { message: /key k2, which COMM_ENCRYPTION_KEYS lacks/ })
  const old = KeyRing.parse(k1).seal('old', 'c')
  t.equal(ring.open(old, 'c'), 'old', 'a box of an older key opens with the ring that still has it')
  for (const [raw, message] of [['', /at least one key/], ['k1', /id:base64/], [':abc', /id:base64/], ['k1:not base64!', /not base64/], ['k1:AAAA', /32 bytes/], [`bad id!:${k1.slice(3)}`, /key id/], [`${k1},${k1}`, /unique/]] as const) {
    t.throws(() => KeyRing.parse(raw), { message }, `refused: ${raw.slice(0, 12)}`)
  }
})

t.test('COMM_ENCRYPTION_KEYS and the callback secrets from the environment', async (t) => {
  t.equal(keysFromEnv({}), null)
  t.equal(keysFromEnv({ COMM_ENCRYPTION_KEYS: ' ' }), null)
  t.equal(keysFromEnv({ COMM_ENCRYPTION_KEYS: KeyRing.generate('prod') })?.currentKeyId, 'prod')
  t.throws(() => keysFromEnv({ COMM_ENCRYPTION_KEYS: 'k1:short' }), { message: /COMM_ENCRYPTION_KEYS.*32 bytes/ })
  t.same(callbackSecretsFromEnv({}), {})
  t.same(callbackSecretsFromEnv({ COMM_CALLBACK_SECRET_SMS_HTTP: 'whsec_abc', COMM_CALLBACK_SECRET_SMTP: 'x'.repeat(32) }), { 'sms-http': 'whsec_abc', smtp: 'x'.repeat(32) })
  t.throws(() => callbackSecretsFromEnv({ COMM_CALLBACK_SECRET_SMTP: 'short' }), { message: /COMM_CALLBACK_SECRET_SMTP/ })
})

t.test('settings checks refuse what cannot work', async (t) => {
  const ring = KeyRing.parse(KeyRing.generate())
  const good = { ...makeSettings(), smtp: { ...makeSettings().smtp, password: ring.seal('p', 'c') }, smsHttp: { url: 'https://sms.example.com/send', token: ring.seal('t', 'c'), tokenSetAt: '' }, webhook: { secrets: [{ secret: ring.seal('s', 'c'), createdAt: '', expiresAt: null }] } }
  t.same(check(good), [])
  const bad = (patch: Partial<CommSettings>, pattern: RegExp): void => { t.match(check({ ...good, ...patch }).join('; '), pattern) }
  bad({ smtp: { ...good.smtp, user: 'a\r\nb' } }, /smtp\.user/)
  bad({ smtp: { ...good.smtp, password: 'plaintext' } }, /smtp\.password/)
  bad({ smtp: { ...good.smtp, allowPlaintextAuth: 'yes' as never } }, /smtp\.allowPlaintextAuth must be true or false/)
  bad({ smsHttp: { ...good.smsHttp, url: 'ftp://x' } }, /smsHttp\.url/)
  bad({ smsHttp: { ...good.smsHttp, url: 'https://[bad' } }, /smsHttp\.url/)
  bad({ smsHttp: { ...good.smsHttp, token: 'plaintext' } }, /smsHttp\.token/)
  bad({ webhook: { secrets: [{ secret: 'plain', createdAt: '', expiresAt: null }] } }, /webhook\.secrets/)
  bad({ webhook: { secrets: 'nope' as never } }, /webhook\.secrets/)
  bad({ webhook: { secrets: [null as never] } }, /webhook\.secrets/)
})

t.test('applyPatch and assertWorkable', async (t) => {
  const ring = KeyRing.parse(KeyRing.generate())
  const options = { keys: ring, graceHours: 1 }
  const base = structuredClone(COMM_DEFAULTS) as CommSettings
  const now = new Date('2026-11-24T00:00:00Z')
  const all = applyPatch(base, { emailFrom: 'a@x.example.com', emailFromName: 'A', smsSenderId: 'ACME', providers: { email: 'smtp', sms: 'sms-http', webhook: 'log' }, smtp: { host: 'Mail.Example.com', port: 2525, secure: true, user: 'u', password: 'p', allowPlaintextAuth: true }, smsHttp: { url: 'https://sms.example.com', token: 'tok' } }, 'acme', options, now)
  t.match(all.settings, { emailFrom: 'a@x.example.com', smtp: { host: 'mail.example.com', port: 2525, secure: true, user: 'u', passwordSetAt: now.toISOString(), allowPlaintextAuth: true }, smsHttp: { tokenSetAt: now.toISOString() } })
  t.equal(ring.open(all.settings.smtp.password, secretContext('acme', 'smtp.password')), 'p')
  t.equal(ring.open(all.settings.smsHttp.token, secretContext('acme', 'smsHttp.token')), 'tok')
  t.equal(all.newSecret, undefined)
  const cleared = applyPatch(all.settings, { emailFrom: null, emailFromName: null, smsSenderId: null, providers: { email: null }, smtp: { host: null, port: null, secure: null, user: null, password: null, allowPlaintextAuth: null }, smsHttp: { url: null, token: null } }, 'acme', options, now)
  t.match(cleared.settings, { emailFrom: '', emailFromName: '', smsSenderId: '', providers: { email: '', sms: 'sms-http' }, smtp: { host: '', port: 0, secure: false, user: '', password: '', passwordSetAt: '', allowPlaintextAuth: false }, smsHttp: { url: '', token: '', tokenSetAt: '' } })
  t.throws(() => applyPatch(base, { smtp: { password: 'p' } }, 'acme', { keys: null }), { code: 'SERVICE_UNAVAILABLE' })
  // Rotation: the first has no predecessor; the next keeps the previous for the grace period.
  const first = applyPatch(base, { webhook: { rotateSecret: true } }, 'acme', options, now)
  t.equal(first.settings.webhook.secrets.length, 1)
  const second = applyPatch(first.settings, { webhook: { rotateSecret: true } }, 'acme', options, new Date(now.getTime() + 1000))
  t.equal(second.settings.webhook.secrets.length, 2)
  t.equal(second.settings.webhook.secrets[1]?.expiresAt, new Date(now.getTime() + 1000 + 3_600_000).toISOString(), 'default grace from the options')
  const later = applyPatch(second.settings, { emailFromName: 'x' }, 'acme', options, new Date(now.getTime() + 7_200_000))
  t.equal(later.settings.webhook.secrets.length, 1, 'an expired secret is dropped on the next write')
  const senders = { emailFrom: '', smsSenderId: '' }
  t.match(configView({ ...makeTenant('acme'), config: { comm: second.settings as never } }, senders, now.getTime() + 2000), { webhook: { secret: { set: true, derived: false }, previousValidUntil: /^2026/ } })
  t.match(configView({ ...makeTenant('acme'), config: { comm: { smtp: { password: 'plaintext' } } } }, senders), { problems: [/smtp\.password/] }, 'a record written around the service shows its problems')
  t.match(configView({ ...makeTenant('acme'), config: { comm: { webhook: { secrets: 'x' } } } }, senders), { webhook: { secret: { set: false } } })

  const platform = { smtp: false, smsHttp: false, emailFrom: false, smsSenderId: false }
  const workable = async (settings: Partial<CommSettings>, allowHosts: string[] = []): Promise<void> => { await assertWorkable({ ...base, ...settings }, { allowHosts, platform, senders }, makeTenant('acme')) }
  await t.resolves(workable({}))
  await t.rejects(workable({ providers: { email: 'smtp', sms: '', webhook: '' } }), { message: /set smtp\.host.*set emailFrom/ })
  await t.rejects(workable({ providers: { email: '', sms: 'sms-http', webhook: '' } }), { message: /set smsHttp\.url.*set smsSenderId/ })
  await t.rejects(workable({ emailFrom: 'bad', smsSenderId: '!!!' }), { message: /emailFrom.*smsSenderId/ })
  await t.rejects(workable({ smtp: { ...base.smtp, password: ring.seal('p', 'c') } }), { message: /smtp\.user is required/ })
  await t.rejects(workable({ smtp: { ...base.smtp, port: 25 } }), { message: /need smtp\.host/ })
  await t.rejects(workable({ smsHttp: { ...base.smsHttp, token: ring.seal('t', 'c') } }), { message: /smsHttp\.token needs smsHttp\.url/ })
  await t.rejects(workable({ smsHttp: { ...base.smsHttp, url: 'https://127.0.0.1/send' } }), { message: /non-public/ })
  await t.rejects(workable({ smsHttp: { ...base.smsHttp, url: 'https://sms.nowhere.invalid/send' } }), { message: /does not resolve/ })
  await t.resolves(workable({ smsHttp: { ...base.smsHttp, url: 'http://127.0.0.1:9/send' } }, ['127.0.0.1']), 'an allowed development host may be plain http')
  await t.resolves(workable({ smtp: { ...base.smtp, host: 'localhost', port: 2525 } }, ['localhost']))
})

t.test('receipts: parsing after the signature, signatures in constant time', async (t) => {
  const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`
  const signature = signWebhook(secret, 'evt', 1700000000, '{}')
  t.ok(verifyCallback(secret, 'evt', '1700000000', '{}', `v1,bogus ${signature}`), 'any of several signatures')
  t.notOk(verifyCallback(secret, 'evt', '1700000001', '{}', signature))
  t.notOk(verifyCallback(secret, 'evt', '1700000000', '{}', 'v1,short'))
  const id = '00000000-0000-4000-8000-000000000001'
  t.same(parseReceipt(`{"type":"delivered","tenant":"acme","messageId":"${id}","at":"x"}`), { type: 'delivered', tenant: 'acme', messageId: id, at: 'x' })
  for (const [body, message] of [
    ['[]', /an object/], ['"x"', /an object/], ['null', /an object/],
    ['{"type":"delivered","tenant":"acme","messageId":"not-a-uuid"}', /messageId/],
    ['{"type":"delivered","tenant":"acme","providerMessageId":""}', /providerMessageId/],
    [`{"type":"delivered","tenant":"acme","messageId":"${id}","providerMessageId":"p"}`, /one of them/],
    ['{"type":"delivered","tenant":"acme"}', /one of them/],
    [`{"type":"delivered","tenant":"acme","messageId":"${id}","detail":5}`, /detail/],
    [`{"type":"delivered","tenant":"ACME","messageId":"${id}"}`, /tenant/]
  ] as const) t.throws(() => parseReceipt(body), { code: 'VALIDATION_FAILED', message }, body)
})

t.test('templates have no file system', async (t) => {
  t.equal(await NO_FS.exists('x'), false)
  t.equal(NO_FS.existsSync('x'), false)
  t.equal(await NO_FS.contains?.('/', 'x'), false)
  t.equal(NO_FS.resolve('/root', 'file', '.liquid'), 'file')
  await t.rejects(NO_FS.readFile('/etc/passwd'), { message: /cannot include files/ })
  t.throws(() => NO_FS.readFileSync('/etc/passwd'), { message: /cannot include files/ })
})

t.test('template data must be a JSON object', async (t) => {
  for (const data of [[], null, 'x', 5]) t.throws(() => checkData(data), { code: 'TEMPLATE_INVALID', message: /an object/ })
})

t.test('a tenant\'s own servers: credentials only when set, one SMS client per URL and token', async (t) => {
  const { Providers } = await import('../src/delivery/providers/index.ts')
  const ring = KeyRing.parse(KeyRing.generate())
  const providers = new Providers({ email: 'log', sms: 'log', webhook: 'webhook', emailFrom: '', smsSenderId: '', smtp: null, smsHttp: null, webhookSecret: 'x'.repeat(32), allowWebhookHosts: ['127.0.0.1'], timeout: 1000, keys: ring })
  t.teardown(() => providers.close())
  const smtp = { host: '127.0.0.1', port: 2525, secure: false, user: 'u', password: '', passwordSetAt: '' }
  t.same(await providers.smtpServer(makeSettings({ smtp }), 'acme'), { host: '127.0.0.1', port: 2525, secure: false, user: 'u', password: '' }, 'a user without a password (written around the service) sends none')
  const plain = makeSettings({ smsHttp: { url: 'http://127.0.0.1:9/sms', token: '', tokenSetAt: '' } })
  const first = await providers.smsFor(plain, 'acme')
  t.equal(await providers.smsFor(plain, 'globex'), first, 'the same URL without a token shares one client')
  const sealed = makeSettings({ smsHttp: { url: 'http://127.0.0.1:9/sms', token: ring.seal('tok', secretContext('acme', 'smsHttp.token')), tokenSetAt: '' } })
  t.not(await providers.smsFor(sealed, 'acme'), first, 'a token makes its own client')
  await t.rejects(providers.smsFor(sealed, 'globex'), { code: 'PROVIDER_REJECTED', message: /does not open/ }, 'and only for its tenant')
})
