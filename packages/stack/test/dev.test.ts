import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { devAllowHosts, startDevStack, withoutPassword, type DevInfo } from '../src/dev.ts'
import { createStackDatabase } from './fixtures.ts'

/** A raw SMTP conversation: each command after the server's answer to the one before. */
async function smtpSay (port: number, commands: string[]): Promise<void> {
  const { connect } = await import('node:net')
  const socket = connect(port, '127.0.0.1')
  let buffer = ''
  const answer = async (): Promise<void> => await new Promise((resolve) => {
    const check = (): void => {
      if (/^\d{3} [^\n]*\r\n/m.test(buffer)) {
        buffer = ''
        socket.off('data', onData)
        resolve()
      }
    }
    const onData = (chunk: Buffer): void => { buffer += String(chunk); check() }
    socket.on('data', onData)
    check()
  })
  await answer()
  for (const command of commands) {
    socket.write(`${command}\r\n`)
    await answer()
  }
  socket.destroy()
}

async function call (info: DevInfo, path: string, token: string, method: 'GET' | 'POST' | 'DELETE' = 'GET', body?: unknown): Promise<{ status: number, json: any }> {
  const res = await request(info.registryUrl + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.body.text()
  return { status: res.statusCode, json: text === '' ? null : JSON.parse(text) }
}

t.test('with DATABASE_URL: demo tenants once, dev.json, ready tokens, banner', async (t) => {
  const db = await createStackDatabase(t)
  const cwd = await mkdtemp(join(tmpdir(), 'dev-stack-'))
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  const env = { DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent', BASE_DOMAIN: '' }
  let banner = ''
  const first = await startDevStack({ env, cwd, print: (s) => { banner += s } })
  t.teardown(first.close)
  const info = first.info
  t.same(JSON.parse(await readFile(join(cwd, '.data', 'dev.json'), 'utf8')), info, '.data/dev.json holds what the banner says')
  t.equal(info.databaseUrl, db.url)
  t.equal(info.serviceDatabaseUrl, env.SERVICE_DATABASE_URL, 'a service login of your own')
  t.match(info.registryUrl, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.equal(info.baseDomain, 'platform.localhost', 'an empty BASE_DOMAIN falls back to the dev default')
  t.equal((await stat(join(cwd, '.data', 'jwt-private.pem'))).mode & 0o777, 0o600, 'the registry\'s signing key is made once in .data/, private')
  // One issuer: only the registry's environment holds what signs; the services verify through
  // its JWKS URL and each holds its own credential, issued by the registry.
  t.match(first.env.registry, { JWT_PRIVATE_KEY: /BEGIN PRIVATE KEY/, JWT_PUBLIC_KEY: /BEGIN PUBLIC KEY/ })
  for (const name of ['comm', 'notes'] as const) {
    const own = first.env[name]
    t.notOk('JWT_PRIVATE_KEY' in own || 'JWT_SECRET' in own || 'JWT_PUBLIC_KEY' in own, `${name}'s environment holds no key`)
    t.notMatch(JSON.stringify(own), /PRIVATE KEY/, `${name}'s environment holds no key under any name`)
    t.equal(own.JWKS_URL, `${info.registryUrl}/.well-known/jwks.json`)
    const claims = JSON.parse(Buffer.from((own.SERVICE_TOKEN as string).split('.')[1] as string, 'base64url').toString()) as Record<string, unknown>
    t.match(claims, { sub: `svc:${name}`, roles: ['service'], scope: 'tokens:exchange tenants:read', iss: 'tenant-registry' }, `${name}'s credential is a registered service's`)
  }
  t.equal(first.env.notes.COMM_URL, info.commUrl, 'notes is told where the comm-service is')
  const jwks = await (await request(info.jwksUrl)).body.json() as { keys: Array<{ kid: string, alg: string }> }
  t.match(jwks.keys, [{ alg: 'EdDSA', kid: String }], 'the registry publishes its public key')
  t.equal(JSON.parse(Buffer.from(info.tokens.acmeOwner.split('.')[0] as string, 'base64url').toString()).kid, jwks.keys[0]?.kid, 'the demo tokens are signed by the registry\'s key')
  const devEnv = await readFile(join(cwd, '.data', 'dev.env'), 'utf8')
  t.match(devEnv, new RegExp(`JWKS_URL="${info.jwksUrl}"`))
  t.match(devEnv, new RegExp(`COMM_URL="${info.commUrl}"`))
  t.notMatch(devEnv, /JWT_SECRET|JWT_PUBLIC_KEY|PRIVATE/, 'dev.env gives your service no key either')
  t.match(banner, new RegExp(`curl -s ${info.registryUrl}/v1/tenants -H "authorization: Bearer \\$TOKEN"`))
  t.match(banner, /Ctrl-C stops the services\./)
  for (const url of [db.url, db.serviceUrl, db.commUrl]) {
    const password = decodeURIComponent(new URL(url).password)
    t.ok(password.length > 0 && !banner.includes(password) && !banner.includes(new URL(url).password), 'the banner prints no database password')
  }
  t.match(banner, /PostgreSQL {8}postgres:\/\/[^:]+:\*\*\*@/, 'the URL is shown with its password masked')
  t.match(banner, new RegExp(`curl -s -X POST ${info.notesUrl}/v1/notes -H "authorization: Bearer \\$ACME"`))

  // The notes service runs on the service login, migrated for every demo tenant, with the
  // printed token.
  const note = await request(`${info.notesUrl}/v1/notes`, { method: 'POST', headers: { authorization: `Bearer ${info.tokens.acmeOwner}`, 'content-type': 'application/json' }, body: JSON.stringify({ title: 'Hello from acme' }) })
  t.equal(note.statusCode, 201, await note.body.text())
  const listed = await request(`${info.notesUrl}/v1/notes`, { headers: { authorization: `Bearer ${info.tokens.acmeOwner}` } })
  t.match(await listed.body.json(), { items: [{ title: 'Hello from acme', author: 'owner@acme.test' }] })

  t.match(await (await request(info.inboxUrl)).body.text(), /Email \(0\)<\/h2><p class="none">nothing yet/, 'the inbox starts empty')
  // A bounce-style mail straight to the inbox's SMTP server: a null sender, no subject.
  await smtpSay(Number(new URL(info.smtpUrl).port), ['EHLO test', 'MAIL FROM:<>', 'RCPT TO:<x@example.com>', 'DATA', 'X-Test: 1\r\n\r\nno subject here\r\n.', 'QUIT'])
  t.match(await (await request(`${info.inboxUrl}/api/mail`)).body.json(), { items: [{ from: '', subject: '', to: ['x@example.com'] }] })
  const empty = await request(`${info.inboxUrl}/hooks/empty`, { method: 'POST' })
  t.equal(empty.statusCode, 204, 'a webhook without a body')
  await empty.body.dump()

  // The communication service: the banner's send and status lines, with the printed token.
  t.match(banner, new RegExp(`curl -s -X POST ${info.commUrl}/v1/messages -H "authorization: Bearer \\$ACME"`))
  t.match(banner, new RegExp(`curl -s "${info.commUrl}/v1/messages\\?limit=3" -H "authorization: Bearer \\$ACME"`))
  const sent = await request(`${info.commUrl}/v1/messages`, { method: 'POST', headers: { authorization: `Bearer ${info.tokens.acmeOwner}`, 'content-type': 'application/json' }, body: JSON.stringify({ channel: 'email', to: 'ann@example.com', subject: 'Hello', text: 'Hi Ann' }) })
  t.equal(sent.statusCode, 202)
  const { id } = await sent.body.json() as { id: string }
  let status = ''
  for (let i = 0; i < 100 && status !== 'sent'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    status = (await (await request(`${info.commUrl}/v1/messages/${id}`, { headers: { authorization: `Bearer ${info.tokens.acmeOwner}` } })).body.json() as { status: string }).status
  }
  t.equal(status, 'sent', 'the message went out through the dev inbox\'s SMTP server')
  const mail = await (await request(`${info.inboxUrl}/api/mail`)).body.json() as { items: Array<{ subject: string, from: string, to: string[] }> }
  t.match(mail.items, [{ subject: 'Hello', from: 'no-reply@acme.test', to: ['ann@example.com'] }, { from: '' }], 'and the inbox caught it')

  // One service calling another for a tenant: a note with notify emails its author (the token's
  // sub, owner@acme.test) through the comm-service, with a token the registry exchanged.
  const notified = await request(`${info.notesUrl}/v1/notes`, { method: 'POST', headers: { authorization: `Bearer ${info.tokens.acmeOwner}`, 'content-type': 'application/json' }, body: JSON.stringify({ title: 'Quarterly plan', notify: true }) })
  const noted = await notified.body.json() as { notification: { status: string, messageId: string } }
  t.equal(notified.statusCode, 201)
  t.match(noted, { title: 'Quarterly plan', notification: { status: 'queued', messageId: String } })
  let byNotes: { status: string, sentBy: string } = { status: '', sentBy: '' }
  for (let i = 0; i < 100 && byNotes.status !== 'sent'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    byNotes = await (await request(`${info.commUrl}/v1/messages/${noted.notification.messageId}`, { headers: { authorization: `Bearer ${info.tokens.acmeOwner}` } })).body.json() as typeof byNotes
  }
  t.match(byNotes, { status: 'sent', sentBy: 'svc:notes', to: 'owner@acme.test', subject: 'Note saved: Quarterly plan' }, 'the comm-service sent it for the notes service')
  const inbox = await (await request(`${info.inboxUrl}/api/mail`)).body.json() as { items: Array<{ subject: string, from: string, to: string[] }> }
  t.match(inbox.items[0], { subject: 'Note saved: Quarterly plan', from: 'no-reply@acme.test', to: ['owner@acme.test'] }, 'the email is in the dev inbox')
  t.match(banner, /"notify":true/, 'the banner shows the call')
  // The inbox's other doors: the SMS API (even a body it cannot read gets an id), the webhook
  // receiver, and the page, which escapes what it shows.
  const sms = await request(`${info.inboxUrl}/sms`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' })
  t.match(await sms.body.json(), { id: /^sms_/ })
  const hook = await request(`${info.inboxUrl}/hooks/demo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x":"<b>"}' })
  t.equal(hook.statusCode, 204)
  await hook.body.dump()
  t.match(await (await request(`${info.inboxUrl}/api/hooks`)).body.json(), { items: [{ name: 'demo', body: '{"x":"<b>"}' }, { name: 'empty', body: '' }] })
  t.match(await (await request(`${info.inboxUrl}/api/sms`)).body.json(), { items: [{ body: '' }] })
  const html = await (await request(info.inboxUrl)).body.text()
  t.match(html, /<b>Hello<\/b> from <code>no-reply@acme\.test<\/code>/)
  t.match(html, /&#34;x&#34;:&#34;&#60;b&#62;&#34;/, 'webhook bodies are escaped')

  // Of the machine's loopback ports, a tenant may name only the dev inbox's: its webhook receiver
  // and SMS API, and its SMTP server; not the registry, the database or any other.
  const comm = async (method: string, path: string, body: unknown): Promise<{ status: number, json: any }> => {
    const res = await request(`${info.commUrl}${path}`, { method: method as 'POST', headers: { authorization: `Bearer ${info.tokens.acmeOwner}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: res.statusCode, json: await res.body.json() }
  }
  t.equal((await comm('POST', '/v1/messages', { channel: 'webhook', to: `${info.inboxUrl}/hooks/acme`, body: '{}' })).status, 202, 'a webhook to the inbox')
  for (const target of [`${info.registryUrl}/v1/tenants`, `${info.notesUrl}/v1/notes`, `http://127.0.0.1:${new URL(info.databaseUrl).port || 5432}/`]) {
    t.match(await comm('POST', '/v1/messages', { channel: 'webhook', to: target, body: '{}' }), { status: 400, json: { code: 'VALIDATION_FAILED', message: /public addresses/ } }, `not to ${target}`)
  }
  const smtpPort = Number(new URL(info.smtpUrl).port)
  t.match(await comm('PATCH', '/v1/config', { smtp: { host: '127.0.0.1', port: Number(new URL(info.registryUrl).port) } }), { status: 400, json: { message: /non-public/ } }, 'a tenant SMTP host on another loopback port is refused')
  t.equal((await comm('PATCH', '/v1/config', { smtp: { host: '127.0.0.1', port: smtpPort } })).status, 200, 'the inbox\'s SMTP port is allowed')
  t.equal((await comm('PATCH', '/v1/config', { smtp: { host: null, port: null } })).status, 200)

  const page = await call(info, '/v1/tenants', info.tokens.service)
  t.same(page.json.items.map((x: { id: string }) => x.id), ['acme', 'globex', 'initech'])
  t.equal((await call(info, `/v1/resolve?host=acme.${info.baseDomain}`, info.tokens.service)).json.id, 'acme')
  t.equal((await call(info, '/v1/tenants', info.tokens.service, 'POST', { id: 'nope', name: 'x' })).status, 403, 'the service token only reads')
  t.equal((await call(info, '/v1/tenants/acme', info.tokens.acmeOwner)).status, 200)
  t.equal((await call(info, '/v1/tenants/globex', info.tokens.acmeOwner)).status, 403, 'acme\'s token does not see globex')
  t.equal((await call(info, '/v1/tenants/globex', info.tokens.platformAdmin, 'DELETE')).json.status, 'archived')
  // A registration revoked between two starts is made again by the next one.
  t.equal((await call(info, '/v1/services/notes', info.tokens.platformAdmin, 'DELETE')).json.status, 'revoked')
  await first.close()

  // A restart keeps the data and does not re-create demo tenants; tokens from before still work.
  const second = await startDevStack({ env, cwd, print: () => {} })
  t.teardown(second.close)
  t.equal((await call(second.info, '/v1/tenants/globex', info.tokens.platformAdmin)).json.status, 'archived')
  t.equal((await call(second.info, '/v1/tenants?limit=200', second.info.tokens.service)).json.total, 3)
  t.match((await call(second.info, '/v1/services/notes', info.tokens.platformAdmin)).json, { status: 'active', scopes: ['messages:read', 'messages:send'], audiences: ['comm'] }, 'notes is registered again')
  t.not(second.env.notes.SERVICE_TOKEN, first.env.notes.SERVICE_TOKEN, 'with a fresh credential')
  const again = await request(`${second.info.notesUrl}/v1/notes`, { method: 'POST', headers: { authorization: `Bearer ${info.tokens.acmeOwner}`, 'content-type': 'application/json' }, body: JSON.stringify({ title: 'Again', notify: true }) })
  t.match(await again.body.json(), { notification: { status: 'queued' } }, 'and notify works with it')
})

t.test('the dev stack\'s private targets: the dev inbox\'s own ports only', async (t) => {
  t.same(devAllowHosts({ url: 'http://127.0.0.1:4300', smtpPort: 1025 }), ['127.0.0.1:4300', '127.0.0.1:1025'])
})

t.test('withoutPassword masks what a URL carries', async (t) => {
  t.equal(withoutPassword('postgres://u:s3cret@127.0.0.1:5432/db'), 'postgres://u:***@127.0.0.1:5432/db')
  t.equal(withoutPassword('postgres://u@127.0.0.1/db'), 'postgres://u@127.0.0.1/db', 'nothing to mask')
  t.equal(withoutPassword('host=x password=s3cret'), '(set by DATABASE_URL)', 'not a URL: nothing of it is printed')
})

t.test('bad configuration is refused before anything starts', async (t) => {
  const cwd = await mkdtemp(join(tmpdir(), 'dev-stack-'))
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  await t.rejects(startDevStack({ env: { PORT: 'x' }, cwd, print: () => {} }), { name: 'ConfigError', variable: 'PORT' })
  await t.rejects(startDevStack({ env: { DATABASE_URL: 'postgres://x:y@127.0.0.1:1/none', PORT: '0', LOG_LEVEL: 'silent' }, cwd, print: () => {} }), { code: 'ECONNREFUSED' })
  await t.rejects(startDevStack({ env: { DEV_PG_PORT: '70000' }, cwd, print: () => {} }), { name: 'ConfigError', variable: 'DEV_PG_PORT' })
  const db = await createStackDatabase(t)
  const running = await startDevStack({ env: { DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent' }, cwd, print: () => {} })
  t.teardown(running.close)
  const port = new URL(running.info.registryUrl).port
  await t.rejects(startDevStack({ env: { DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: port, NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent' }, cwd, print: () => {} }), { name: 'ConfigError', variable: 'PORT', message: /in use/ })
  const notesPort = new URL(running.info.notesUrl).port
  await t.rejects(startDevStack({ env: { DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: '0', NOTES_PORT: notesPort, COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent' }, cwd, print: () => {} }), { name: 'ConfigError', variable: 'NOTES_PORT', message: /in use/ })
  const commPort = new URL(running.info.commUrl).port
  await t.rejects(startDevStack({ env: { DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: '0', NOTES_PORT: '0', COMM_PORT: commPort, INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent' }, cwd, print: () => {} }), { name: 'ConfigError', variable: 'COMM_PORT', message: /in use/ })
})

t.test('without DATABASE_URL: an embedded PostgreSQL under .data/pg that survives restarts', async (t) => {
  const cwd = await mkdtemp(join(tmpdir(), 'dev-stack-'))
  await chmod(cwd, 0o755) // as root, the server runs as user postgres, which must enter it
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  const env = { PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent' }
  let banner = ''
  const first = await startDevStack({ env, cwd, print: (s) => { banner += s } })
  t.teardown(first.close)
  t.match(first.info.databaseUrl, /^postgres:\/\/platform_registry:[^@]+@127\.0\.0\.1:\d+\/platform$/, 'the registry runs as its own login, not the superuser')
  t.match(first.info.serviceDatabaseUrl, /^postgres:\/\/platform_service:[^@]+@127\.0\.0\.1:\d+\/platform$/)
  t.match(banner, /the data stays in \.data\/pg/)
  for (const name of ['registry-db-password', 'service-db-password', 'comm-db-password']) {
    t.notOk(banner.includes((await readFile(join(cwd, '.data', name), 'utf8')).trim()), `the banner does not print ${name}`)
  }
  await t.rejects(startDevStack({ env, cwd, print: () => {} }), /Is another `pnpm start` running\?/, 'a second stack on the same data is refused')
  t.ok((await stat(join(cwd, '.data', 'pg', 'PG_VERSION'))).isFile())
  t.equal((await call(first.info, '/v1/tenants', first.info.tokens.platformAdmin, 'POST', { id: 'hooli', name: 'Hooli' })).status, 201)
  await first.close()

  const second = await startDevStack({ env, cwd, print: () => {} })
  t.teardown(second.close)
  t.equal((await call(second.info, '/v1/tenants/hooli', second.info.tokens.service)).json.name, 'Hooli', 'data survived the restart')
  t.equal((await call(second.info, '/v1/tenants', second.info.tokens.service)).json.total, 4, 'demo tenants were not created twice')
})

t.test('a second checkout on the same machine starts beside the first (ports move, no shared socket)', async (t) => {
  const stacks = []
  for (const name of ['first', 'second']) {
    const cwd = await mkdtemp(join(tmpdir(), `dev-${name}-`))
    await chmod(cwd, 0o755)
    t.teardown(() => rm(cwd, { recursive: true, force: true }))
    // No port variables at all: what a newcomer runs in two clones.
    const stack = await startDevStack({ env: { LOG_LEVEL: 'silent' }, cwd, print: () => {} })
    t.teardown(stack.close)
    stacks.push(stack)
  }
  const [a, b] = stacks.map((s) => s.info) as [DevInfo, DevInfo]
  t.not(a.registryUrl, b.registryUrl)
  t.not(a.notesUrl, b.notesUrl)
  t.not(new URL(a.databaseUrl).port, new URL(b.databaseUrl).port)
  for (const info of [a, b]) t.equal((await call(info, '/v1/tenants/acme', info.tokens.service)).status, 200, 'each stack answers')
})

t.test('with a key pair instead of a secret, the services verify the printed tokens', async (t) => {
  const { generateKeyPairSync } = await import('node:crypto')
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
  const db = await createStackDatabase(t)
  const cwd = await mkdtemp(join(tmpdir(), 'dev-keys-'))
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  const stack = await startDevStack({ env: { DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent', JWT_PUBLIC_KEY: publicKey, JWT_PRIVATE_KEY: privateKey }, cwd, print: () => {} })
  t.teardown(stack.close)
  // Demo tenants are cluster-wide roles that an earlier test here already made, so acme may be
  // another database's: what matters is that the token passed verification and reached the look-up.
  const res = await request(`${stack.info.notesUrl}/v1/notes`, { headers: { authorization: `Bearer ${stack.info.tokens.acmeOwner}` } })
  const body = await res.body.json() as { code?: string }
  t.ok(res.statusCode === 200 || body.code === 'TENANT_NOT_FOUND', `the RS256 token was accepted (${res.statusCode} ${body.code ?? ''})`)
  const forged = await request(`${stack.info.notesUrl}/v1/notes`, { headers: { authorization: `Bearer ${stack.info.tokens.acmeOwner.slice(0, -4)}AAAA` } })
  t.equal(forged.statusCode, 401, 'a forged signature is not')
  t.equal(stack.env.notes.JWKS_URL, stack.info.jwksUrl, 'the services verify through the registry\'s JWKS')
  t.notOk('JWT_PRIVATE_KEY' in stack.env.notes || 'JWT_PUBLIC_KEY' in stack.env.comm)
  await stack.close()

  // A public key alone cannot sign the stack's tokens: refused before anything starts.
  await t.rejects(startDevStack({ env: { DATABASE_URL: db.url, PORT: '0', LOG_LEVEL: 'silent', JWT_PUBLIC_KEY: publicKey }, cwd, print: () => {} }), { name: 'ConfigError', variable: 'JWT_PRIVATE_KEY' })
  // The development-only shared secret, chosen explicitly: then (and only then) the services hold it.
  const secret = 'dev-only-shared-secret-0123456789abcdef'
  const shared = await startDevStack({ env: { DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent', JWT_SECRET: secret }, cwd, print: () => {} })
  t.teardown(shared.close)
  t.equal(shared.env.notes.JWT_SECRET, secret)
  t.notOk('JWKS_URL' in shared.env.notes)
  t.match(await readFile(join(cwd, '.data', 'dev.env'), 'utf8'), /JWT_SECRET=/, 'dev.env says so too')
  const withSecret = await request(`${shared.info.notesUrl}/v1/notes`, { headers: { authorization: `Bearer ${shared.info.tokens.acmeOwner}` } })
  const answer = await withSecret.body.json() as { code?: string }
  t.ok(withSecret.statusCode === 200 || answer.code === 'TENANT_NOT_FOUND', `the HS256 token was accepted (${withSecret.statusCode} ${answer.code ?? ''})`)
})

t.test('a PostgreSQL left running on .data/pg by a crashed stack is stopped first; taken ports are named', async (t) => {
  const { startEmbeddedPostgres } = await import('@platform/testkit')
  const { createServer } = await import('node:net')
  const cwd = await mkdtemp(join(tmpdir(), 'dev-leftover-'))
  await chmod(cwd, 0o755)
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  // What a stack killed with -9 leaves behind: its server, no live lock holder.
  const leftover = await startEmbeddedPostgres({ dataDir: join(cwd, '.data', 'pg') })
  const pid = Number((await readFile(join(cwd, '.data', 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0])
  const env = { PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent' }
  // A lock file naming this very process (left by an earlier stack of it) does not block it.
  await writeFile(join(cwd, '.data', 'stack.pid'), `${process.pid}\n`)
  const stack = await startDevStack({ env, cwd, print: () => {} })
  t.teardown(stack.close)
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the leftover server was stopped')
  t.not(stack.info.pids.postgres, pid, 'and a new one runs')
  t.equal((await call(stack.info, '/v1/tenants/acme', stack.info.tokens.service)).status, 200, 'on the same data')
  await stack.close()
  t.equal(leftover.port > 0, true, 'the leftover\'s handle is not stopped again: its process is gone')

  // A port you chose that is taken is named; PostgreSQL's own refusal is explained.
  const busy = createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => busy.close())
  const taken = String((busy.address() as { port: number }).port)
  await writeFile(join(cwd, '.data', 'stack.pid'), 'not a pid\n') // unreadable: nobody holds it
  await t.rejects(startDevStack({ env: { ...env, DEV_PG_PORT: taken }, cwd, print: () => {} }), /could not start the embedded PostgreSQL[\s\S]*Is another `pnpm start` running\?/)
  const db = await createStackDatabase(t)
  const external = { DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, ...env }
  // Another live stack (another process) owns this .data: a DATABASE_URL stack leaves its dev.json alone.
  await writeFile(join(cwd, '.data', 'stack.pid'), `${process.ppid}\n`)
  await writeFile(join(cwd, '.data', 'dev.json'), '{"theirs":true}\n')
  const beside = await startDevStack({ env: external, cwd, print: () => {} })
  t.same(JSON.parse(await readFile(join(cwd, '.data', 'dev.json'), 'utf8')), { theirs: true }, 'the other stack\'s dev.json is untouched')
  t.same(JSON.parse(await readFile(join(cwd, '.data', `dev-${process.pid}.json`), 'utf8')).commUrl, beside.info.commUrl, 'this one has its own')
  t.equal((await readFile(join(cwd, '.data', 'stack.pid'), 'utf8')).trim(), String(process.ppid), 'and the lock stays the other\'s')
  await beside.close()
  await t.rejects(startDevStack({ env: { ...external, INBOX_PORT: taken }, cwd, print: () => {} }), { name: 'ConfigError', variable: 'INBOX_PORT', message: /in use/ })
  await t.rejects(startDevStack({ env: { ...external, SMTP_PORT: taken }, cwd, print: () => {} }), { name: 'ConfigError', variable: 'SMTP_PORT', message: /in use/ })
})
