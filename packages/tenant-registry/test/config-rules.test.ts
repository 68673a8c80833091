// A tenant's `config` as the registry stores it: bounded in size, the comm section checked against
// its schema, email senders only at the tenant's own domains, an SMS sender id one tenant's only.
// These are writes straight to the registry (a tenant's owner with config:write, a platform admin,
// the CLI's store), which do not pass the comm-service's own checks.
import { cp, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import postgres from 'postgres'
import t from 'tap'
import { checkConfig, MAX_CONFIG_BYTES } from '../src/config-rules.ts'
import { migrateRegistry } from '../src/db/migrate.ts'
import { createRegistryDatabase, startRegistry, tid } from './fixtures/registry.ts'

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

t.test('a tenant writing its own config straight to the registry', async (t) => {
  const r = await startRegistry(t)
  const acme = tid('acme')
  const globex = tid('globex')
  const create = async (payload: Record<string, unknown>): Promise<{ statusCode: number, body: string, json: () => any }> =>
    await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload })
  t.equal((await create({ id: globex, name: 'Globex', domains: [`${globex}.test`], config: { comm: { emailFrom: `hello@${globex}.test`, smsSenderId: 'GLOBEX' } } })).statusCode, 201)
  t.equal((await create({ id: acme, name: 'Acme', domains: [`${acme}.test`] })).statusCode, 201)
  const owner = r.tokenFor({ sub: 'owner', tenant: acme, roles: ['owner'], scope: 'config:write' })
  const patch = async (config: unknown, token = owner, id = acme): Promise<{ statusCode: number, body: string, json: () => any }> =>
    await r.app.inject({ method: 'PATCH', url: `/v1/tenants/${id}`, headers: bearer(token), payload: { config } as object })
  const refused = async (config: unknown, status: number, code: string, message: RegExp, what: string): Promise<void> => {
    const res = await patch(config)
    t.same([res.statusCode, res.json().code], [status, code], what)
    t.match(res.json().message, message, `${what}: the field is named`)
    t.notMatch(res.body, /select|update|insert|postgres|constraint|tenants_/i, `${what}: no internals`)
  }

  t.test('another tenant\'s email domain, as From or Reply-To', async (t) => {
    await refused({ comm: { emailFrom: `hello@${globex}.test` } }, 400, 'VALIDATION_FAILED', new RegExp(`config\\.comm\\.emailFrom must be at one of this tenant's domains \\(${acme}\\.test, ${acme}\\.example\\.com\\).*${globex}\\.test is not one`), 'globex\'s address as emailFrom')
    await refused({ comm: { replyTo: `billing@${globex}.TEST` } }, 400, 'VALIDATION_FAILED', /config\.comm\.replyTo must be at one of this tenant's domains/, 'globex\'s address as replyTo, in upper case')
    await refused({ comm: { emailFrom: `no-reply@mail.${acme}.test` } }, 400, 'VALIDATION_FAILED', /config\.comm\.emailFrom/, 'a subdomain of its own domain is not implied (another tenant may own it)')
    await refused({ comm: { emailFrom: 'no-reply@example.com' } }, 400, 'VALIDATION_FAILED', /config\.comm\.emailFrom/, 'the base domain itself is the platform\'s')
    await refused({ comm: { emailFrom: `x@${globex}.example.com` } }, 400, 'VALIDATION_FAILED', /config\.comm\.emailFrom/, 'another tenant\'s subdomain of the base domain')
    t.same((await r.app.inject({ url: `/v1/tenants/${acme}`, headers: bearer(r.admin) })).json().config, {}, 'nothing landed')
  })

  t.test('another tenant\'s SMS sender id', async (t) => {
    for (const id of ['GLOBEX', 'globex', 'Globex']) await refused({ comm: { smsSenderId: id } }, 409, 'CONFLICT', /config\.comm\.smsSenderId is already another tenant's sender id/, `smsSenderId ${id}`)
    const created = await create({ id: tid('copycat'), name: 'Copycat', config: { comm: { smsSenderId: 'gLoBeX' } } })
    t.same([created.statusCode, created.json().code], [409, 'CONFLICT'], 'a new tenant cannot take it either')
    t.equal((await r.app.inject({ url: `/v1/tenants/${tid('copycat')}`, headers: bearer(r.admin) })).statusCode, 404, 'and nothing of it was left behind')
    const admin = await patch({ comm: { smsSenderId: 'GLOBEX' } }, r.admin)
    t.equal(admin.statusCode, 409, 'not even a platform admin gives one tenant\'s sender id to another')
  })

  t.test('its own senders are stored', async (t) => {
    const own = await patch({ comm: { emailFrom: `No-Reply@${acme.toUpperCase()}.test`, replyTo: `help@${acme}.example.com`, smsSenderId: 'ACME' } })
    t.equal(own.statusCode, 200, own.body)
    t.match(own.json().config, { comm: { emailFrom: `No-Reply@${acme.toUpperCase()}.test`, replyTo: `help@${acme}.example.com`, smsSenderId: 'ACME' } })
    t.equal((await patch({ comm: { emailFrom: '', replyTo: null } })).statusCode, 200, 'empty: the platform\'s default sender')
    t.equal((await patch({ comm: { smsSenderId: 'GLOBEX' } }, r.tokenFor({ sub: 'g', tenant: globex, roles: ['owner'], scope: 'config:write' }), globex)).statusCode, 200, 'a tenant writing its own sender id again is no conflict')
    t.equal((await patch({ comm: { smsSenderId: null } }, r.admin, globex)).statusCode, 200)
    t.equal((await patch({ comm: { smsSenderId: 'globex' } })).statusCode, 200, 'a released sender id can be taken')
  })

  t.test('the comm section is checked against its schema, every problem named', async (t) => {
    const cases: Array<[string, unknown, RegExp]> = [
      ['not an object', { comm: 'x' }, /config\.comm must be object/],
      ['an unknown setting', { comm: { retry: { attempts: 3 } } }, /config\.comm\.retry is not a setting/],
      ['an unknown nested setting', { comm: { smtp: { tls: false } } }, /config\.comm\.smtp\.tls is not a setting/],
      ['a port as text', { comm: { smtp: { port: '25' } } }, /config\.comm\.smtp\.port must be integer/],
      ['plaintext AUTH as text', { comm: { smtp: { allowPlaintextAuth: 'yes' } } }, /config\.comm\.smtp\.allowPlaintextAuth must be boolean/],
      ['a port out of range', { comm: { smtp: { port: 70000 } } }, /config\.comm\.smtp\.port must be <= 65535/],
      ['an unknown provider', { comm: { providers: { email: 'ses' } } }, /config\.comm\.providers\.email must be equal to one of the allowed values/],
      ['a plaintext SMTP password', { comm: { smtp: { password: 'hunter2' } } }, /config\.comm\.smtp\.password must be set through the comm-service/],
      ['a plaintext webhook secret', { comm: { webhook: { secrets: [{ secret: 'whsec_plain', createdAt: '2026-01-01T00:00:00Z', expiresAt: null }] } } }, /config\.comm\.webhook\.secrets\.0\.secret must be generated through the comm-service/],
      ['a header injection in the sender name', { comm: { emailFromName: 'A\r\nBcc: all@x.test' } }, /config\.comm\.emailFromName must be at most 100 characters, without line breaks/],
      ['an address as the sender name', { comm: { emailFromName: 'billing@globex.test' } }, /config\.comm\.emailFromName must be .*"@"/],
      ['a sender that is no address', { comm: { emailFrom: 'not an address' } }, /config\.comm\.emailFrom must be an email address/],
      ['a sender id too long', { comm: { smsSenderId: 'MUCH-TOO-LONG-ID' } }, /config\.comm\.smsSenderId must be 1 to 11 letters/],
      ['an SMS URL that is not http', { comm: { smsHttp: { url: 'file:///etc/passwd' } } }, /config\.comm\.smsHttp\.url must be an http\(s\) URL/],
      ['several at once', { comm: { smtp: { port: -1, host: '-x-' } } }, /config\.comm\.smtp\.host must be a host name.*; config\.comm\.smtp\.port must be >= 0|config\.comm\.smtp\.port must be >= 0.*; config\.comm\.smtp\.host must be a host name/]
    ]
    for (const [what, config, message] of cases) await refused(config, 400, 'VALIDATION_FAILED', message, what)
    t.same((await r.app.inject({ url: `/v1/tenants/${acme}`, headers: bearer(r.admin) })).json().config.comm, { emailFrom: '', smsSenderId: 'globex' }, 'nothing of it landed')
    t.equal((await patch({ notes: { maxNotes: 500, anything: ['goes', { here: true }] } })).statusCode, 200, 'other sections are stored as sent')
  })

  t.test('the whole config is bounded in size', async (t) => {
    const big = 'x'.repeat(20_000)
    t.equal((await patch({ notes: { a: big, b: big } })).statusCode, 200, 'under the bound')
    await refused({ notes: { c: big, d: big } }, 400, 'VALIDATION_FAILED', new RegExp(`config is at most ${MAX_CONFIG_BYTES} bytes of JSON \\(this one would be \\d+\\)`), 'past the bound, with what is already stored')
    const created = await create({ id: tid('huge'), name: 'Huge', config: { notes: { a: 'y'.repeat(MAX_CONFIG_BYTES) } } })
    t.same([created.statusCode, created.json().code], [400, 'VALIDATION_FAILED'], 'a create too')
    t.equal((await patch({ notes: null })).statusCode, 200, 'a write that shrinks it is fine')
  })

  t.test('a section written before these rules does not block other writes', async (t) => {
    await r.sql`update tenants set config = jsonb_set(config, '{comm,emailFrom}', to_jsonb(${`hello@${globex}.test`}::text)) where id = ${acme}`
    t.equal((await patch({ notes: { maxNotes: 1 } })).statusCode, 200, 'a write that leaves comm alone')
    t.equal((await r.app.inject({ method: 'PATCH', url: `/v1/tenants/${acme}`, headers: bearer(r.admin), payload: { name: 'Acme Inc' } })).statusCode, 200, 'a write of no config')
    await refused({ comm: { emailFromName: 'Acme' } }, 400, 'VALIDATION_FAILED', /config\.comm\.emailFrom must be at one of this tenant's domains/, 'a comm write must fix it')
    t.equal((await patch({ comm: { emailFrom: null, emailFromName: 'Acme' } })).statusCode, 200, 'fixed')
  })
})

t.test('checkConfig: senders without a base domain, and tenants with no domain', async (t) => {
  t.throws(() => checkConfig({ comm: { emailFrom: 'a@acme.example.com' } }, { id: 'acme', domains: [] }), { code: 'VALIDATION_FAILED', message: /it has none: add a custom domain first/ })
  t.doesNotThrow(() => checkConfig({ comm: { emailFrom: 'a@acme.test' } }, { id: 'acme', domains: ['acme.test'] }))
  t.doesNotThrow(() => checkConfig({ comm: { emailFrom: 'a@globex.test' } }, { id: 'acme', domains: [] }, false), 'not checked when the write leaves the section alone')
})

t.test('migration 0003: a sender id that several tenants hold is taken from all of them', async (t) => {
  const db = await createRegistryDatabase(t)
  const sql = postgres(db.url, { max: 1, onnotice: () => {} })
  t.teardown(() => sql.end())
  const dir = await mkdtemp(join(tmpdir(), 'registry-0003-'))
  t.teardown(() => rm(dir, { recursive: true }))
  const migrations = fileURLToPath(new URL('../src/db/migrations/', import.meta.url))
  for (const name of ['0001_registry.sql', '0002_role_model.sql']) await cp(join(migrations, name), join(dir, name))
  await migrateRegistry(sql, dir + '/')
  const row = (id: string, comm: Record<string, unknown>): Record<string, unknown> => ({ id, name: id, status: 'active', tier: 'standard', schema_name: `tenant_${id}`, config: sql.json({ comm } as never) })
  await sql`insert into tenants ${sql([row('acme', { smsSenderId: 'GLOBEX', emailFrom: 'a@acme.test' }), row('globex', { smsSenderId: 'globex' }), row('initech', { smsSenderId: 'INITECH' }), row('umbrella', { smsSenderId: '' }), row('hooli', { smsSenderId: '' })])}`
  t.same((await migrateRegistry(sql, migrations)).applied, ['0003_sms_sender_ids.sql', '0004_services.sql'])
  const rows = await sql<Array<{ id: string, config: { comm: Record<string, unknown> }, version: number }>>`select id, config, version from tenants order by id`
  t.same(Object.fromEntries(rows.map((r) => [r.id, [r.config.comm, r.version]])), {
    acme: [{ emailFrom: 'a@acme.test' }, 2],
    globex: [{}, 2],
    hooli: [{ smsSenderId: '' }, 1],
    initech: [{ smsSenderId: 'INITECH' }, 1],
    umbrella: [{ smsSenderId: '' }, 1]
  }, 'the shared id is gone from both holders, the rest untouched (an empty id is nobody\'s)')
  t.same((await sql`select tenant_id, type from tenant_changes order by tenant_id`).map((c) => [c.tenant_id, c.type]), [['acme', 'tenant.updated'], ['globex', 'tenant.updated']], 'on the feed')
  await t.rejects(sql`update tenants set config = ${sql.json({ comm: { smsSenderId: 'Initech' } } as never)} where id = 'acme'`, { code: '23505' }, 'the index holds from now on')
})
