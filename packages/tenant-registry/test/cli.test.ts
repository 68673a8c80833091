import { spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import postgres from 'postgres'
import t from 'tap'
import { runCli } from '../src/cli.ts'
import { createRegistryDatabase, bearer, SECRET, startRegistry, suffix, tid } from './fixtures/registry.ts'

interface Run { code: number, out: string, err: string }

function cli (env: NodeJS.ProcessEnv, cwd = tmpdir()) {
  return async (...argv: string[]): Promise<Run> => {
    let out = ''
    let err = ''
    const code = await runCli(argv, { env, cwd, out: (s) => { out += s }, err: (s) => { err += s } })
    return { code, out, err }
  }
}

t.test('every command against a real database, human and --json output', async (t) => {
  const r = await startRegistry(t)
  const run = cli({ DATABASE_URL: r.url, JWT_SECRET: SECRET })
  const id = tid('cli')
  const schema = `tenant_${id.replaceAll('-', '_')}`

  const created = await run('create', id, '--name', 'CLI Co', '--tier', 'premium', '--domain', `Mail.${id}.test`, '--contact-email', 'ops@cli.test', '--database', 'default')
  t.same(created, { code: 0, out: `created ${id}: schema ${schema}, status active\n`, err: '' })
  t.equal((await r.sql`select count(*)::int as n from pg_namespace where nspname = ${schema}`)[0]?.n, 1, 'the schema exists')
  const trial = await run('create', tid('cli-trial'), '--name', 'Trial', '--trial', '--json')
  t.match(JSON.parse(trial.out), { status: 'trial', tier: 'standard' })

  const list = await run('list', '--q', suffix)
  t.equal(list.code, 0)
  t.match(list.out, /^ID\s+STATUS\s+TIER\s+SCHEMA\s+NAME\n/)
  t.match(list.out, new RegExp(`${id}\\s+active\\s+premium\\s+${schema}\\s+CLI Co`))
  t.match(list.out, /2 of 2\n$/)
  t.match((await run('list', '--q', suffix, '--limit', '1')).out, /1 of 2 \(use --offset 1 for more\)/)
  t.same(JSON.parse((await run('list', '--status', 'trial', '--q', suffix, '--json')).out).items.map((x: { id: string }) => x.id), [tid('cli-trial')])
  t.equal((await run('list', '--tier', 'free', '--q', suffix)).out, 'no tenants\n')

  const show = await run('show', id)
  t.match(show.out, /status\s+active\n/)
  t.match(show.out, new RegExp(`domains\\s+mail\\.${id}\\.test \\(primary\\)`))
  t.match(show.out, /contact\s+ops@cli.test/)

  t.match(await run('suspend', id), { code: 0, out: `${id} is suspended\n` })
  t.equal((await r.app.inject({ url: `/v1/tenants/${id}`, headers: bearer(r.service) })).json().status, 'suspended', 'the API sees the CLI\'s change')
  t.match(await run('activate', id, '--json'), { code: 0, out: /"status": "active"/ })

  t.match(await run('domain', 'add', id, `www.${id}.test`, '--primary'), { code: 0, out: new RegExp(`mail\\.${id}\\.test, www\\.${id}\\.test \\(primary\\)`) })
  t.match(await run('show', id), { out: new RegExp(`domains {5}mail\\.${id}\\.test, www\\.${id}\\.test \\(primary\\)\\n`) })
  t.match(await run('domain', 'remove', id, `mail.${id}.test`), { code: 0, out: new RegExp(`domains: www\\.${id}\\.test \\(primary\\)\\n`) })
  t.match(await run('domain', 'remove', id, `www.${id}.test`), { code: 0, out: /domains: -\n/ })

  // Configuration: dotted keys, JSON values (else text), null removes.
  t.same(await run('config', id), { code: 0, out: '{}\n', err: '' })
  const set = await run('config', id, 'notes.maxNotes=500', 'comm.emailFromName=CLI', 'comm.providers={"email":"log"}', 'flag=true')
  t.equal(set.code, 0, set.err)
  t.match(set.out, new RegExp(`^${id} config \\(version \\d+\\):`))
  t.same(JSON.parse((await run('config', id, '--json')).out), { notes: { maxNotes: 500 }, comm: { emailFromName: 'CLI', providers: { email: 'log' } }, flag: true })
  t.same(JSON.parse((await run('config', id, 'comm.providers=null', 'flag=null', '--json')).out), { notes: { maxNotes: 500 }, comm: { emailFromName: 'CLI' } }, 'merge-patch semantics')
  t.equal((await r.app.inject({ url: `/v1/tenants/${id}`, headers: bearer(r.service) })).json().config.notes.maxNotes, 500, 'the API sees it')
  t.same(JSON.parse((await run('limits', id, 'messagesPerMinute=60', '--json')).out), { messagesPerMinute: 60 })
  t.match(await run('config', id, 'no-equals-sign'), { code: 2, err: /is not <key>=<value>/ })
  t.match(await run('config', id, 'a..b=1'), { code: 2, err: /dotted key/ })
  t.match(await run('config', id, '__proto__.x=1'), { code: 2 }, 'no prototype keys')
  t.match(await run('config'), { code: 2, err: /usage: tenant-registry config <id>/ })
  t.match(await run('config', tid('nobody'), 'a=1'), { code: 1, err: /TENANT_NOT_FOUND/ })
  // The CLI knows BASE_DOMAIN as the server does: `<id>.<BASE_DOMAIN>` is the tenant's own sender domain.
  const withBase = cli({ DATABASE_URL: r.url, JWT_SECRET: SECRET, BASE_DOMAIN: 'Platform.TEST' })
  t.match(await withBase('config', id, `comm.emailFrom=hello@${id}.platform.test`, '--json'), { code: 0, out: new RegExp(`hello@${id}.platform.test`) })
  t.match(await run('config', id, `comm.emailFrom=hello@${id}.other.test`), { code: 1, err: /emailFrom/ }, 'not its own domain')
  t.match(await withBase('config', id, 'comm.emailFrom=null'), { code: 0 })

  const feed = await r.app.inject({ url: '/v1/changes?after=0&limit=1000', headers: bearer(r.service) })
  t.same(feed.json().items.filter((c: { tenantId: string }) => c.tenantId === id).map((c: { type: string }) => c.type),
    ['tenant.created', 'tenant.suspended', 'tenant.active', 'domain.added', 'domain.removed', 'domain.removed', 'tenant.updated', 'tenant.updated', 'tenant.updated', 'tenant.updated', 'tenant.updated'], 'CLI changes are on the feed')

  t.match(await run('delete', id), { code: 0, out: `archived ${id}\n` })
  t.match(await run('delete', id, '--purge'), { code: 2, err: /add --yes to confirm/ })
  t.match(await run('delete', id, '--purge', '--yes'), { code: 0, out: `purged ${id}: row, schema and role dropped\n` })
  t.same(await r.sql`select 1 from pg_roles where rolname = ${schema}`, [], 'the role is gone')
  t.match(await run('show', id), { code: 1, err: 'error: Tenant not found (TENANT_NOT_FOUND)\n' })

  t.match(await run('show', tid('cli-trial')), { code: 0, out: /domains {5}-\ncontact {5}-\n/ })
  t.match(await run('migrate'), { code: 0, out: 'up to date (4 applied before)\n' })
  const fresh = await createRegistryDatabase(t)
  t.match(await cli({ DATABASE_URL: fresh.url })('migrate'), { code: 0, out: 'applied 0001_registry.sql, 0002_role_model.sql, 0003_sms_sender_ids.sql, 0004_services.sql\n' })
  t.same(JSON.parse((await run('migrate', '--json')).out), { applied: [], skipped: ['0001_registry.sql', '0002_role_model.sql', '0003_sms_sender_ids.sql', '0004_services.sql'] })
})

t.test('setup-database and service-login', async (t) => {
  const db = await createRegistryDatabase(t)
  const user = `cli_reg_${suffix.replaceAll('-', '_')}`
  const setup = cli({ DATABASE_URL: db.superUrl })
  t.match(await setup('setup-database', '--registry-user', user, '--password', 'a-long-enough-password'), { code: 0, out: new RegExp(`run the registry as ${user}`) })
  t.match(await setup('setup-database', '--password', 'a-long-enough-password'), { code: 2, err: /--registry-user is required/ })
  t.match(await setup('setup-database', '--registry-user', user), { code: 2, err: /at least 12 characters/ })
  // Run again, it moves tenants whose role owns its schema (provisioned before tenant roles owned
  // nothing) and says what it dropped.
  const root = postgres(db.superUrl, { max: 1, onnotice: () => {} })
  for (const [n, extra, said] of [['1', '', /moved 1 tenant\(s\) .*dropped what they had made: nothing/], ['2', 'create function %s.f() returns int language sql as \'select 1\';', /moved 1 tenant\(s\) .*function tenant_cli_old2_\w+\.f\(\)/]] as const) {
    const role = `tenant_cli_old${n}_${suffix.replaceAll('-', '_')}`
    await root.unsafe(`create role ${role} nologin; create schema ${role} authorization ${role}; set role ${role}; create table ${role}.notes (n int); ${extra.replace('%s', role)} reset role`)
    t.match(await setup('setup-database', '--registry-user', user, '--password', 'a-long-enough-password'), { code: 0, out: said })
    await root.unsafe(`drop schema ${role} cascade; drop role ${role}`)
  }
  await root.end()
  const asRegistry = new URL(db.superUrl)
  asRegistry.username = user
  asRegistry.password = 'a-long-enough-password'
  const svc = `cli_svc_${suffix.replaceAll('-', '_')}`
  const run = cli({ DATABASE_URL: asRegistry.toString(), SERVICE_DB_PASSWORD: 'service-password-1' })
  t.match(await run('service-login', svc, '--json'), { code: 0, out: new RegExp(`"user": "${svc}"`) })
  t.match(await cli({ DATABASE_URL: asRegistry.toString() })('service-login', svc), { code: 2, err: /at least 12 characters/ })
  t.match(await run('service-login', 'tenant_x'), { code: 1, err: /service login must be/ })
})

t.test('token issues what the registry accepts', async (t) => {
  const r = await startRegistry(t)
  const run = cli({ JWT_SECRET: SECRET })
  const admin = await run('token', '--sub', 'ops', '--role', 'platform-admin', '--scope', 'tenants:read tenants:write')
  t.equal(admin.code, 0)
  const token = admin.out.trim()
  t.match(r.app.jwt.verify(token), { sub: 'ops', roles: ['platform-admin'], scope: 'tenants:read tenants:write', iss: 'tenant-registry', aud: 'platform' })
  t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(token), payload: { id: tid('by-token'), name: 'T' } })).statusCode, 201)

  const tenantToken = JSON.parse((await run('token', '--sub', 'u1', '--tenant', 'acme', '--role', 'owner', '--scope', 'tenants:read', '--expires', '60', '--json')).out)
  t.match(tenantToken, { claims: { sub: 'u1', tenant: 'acme', roles: ['owner'] }, expiresIn: 60 })
  const claims = r.app.jwt.verify<{ exp: number, iat: number }>(tenantToken.token)
  t.equal(claims.exp - claims.iat, 60)
  t.equal((await r.app.inject({ url: '/v1/tenants', headers: bearer(tenantToken.token) })).statusCode, 200)
  t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(tenantToken.token), payload: { id: 'x', name: 'x' } })).statusCode, 403)

  // With no JWT variables, `token` uses the dev stack's secret from .data/ (searched upwards).
  const dir = await mkdtemp(join(tmpdir(), 'cli-dev-'))
  t.teardown(() => rm(dir, { recursive: true }))
  await mkdir(join(dir, '.data'))
  await mkdir(join(dir, 'sub'))
  await writeFile(join(dir, '.data', 'jwt-secret'), SECRET + '\n')
  const dev = await cli({}, join(dir, 'sub'))('token', '--sub', 'svc', '--scope', 'tenants:read')
  t.equal(dev.code, 0)
  t.match(r.app.jwt.verify(dev.out.trim()), { sub: 'svc' })
  t.match(await cli({}, tmpdir())('token', '--sub', 'svc'), { code: 1, err: /^error: JWT_SECRET: is required/ })
})

t.test('bad input: usage errors exit 2, failures exit 1, both with a clear message', async (t) => {
  const r = await startRegistry(t)
  const run = cli({ DATABASE_URL: r.url, JWT_SECRET: SECRET })
  const existing = tid('dup')
  t.equal((await run('create', existing, '--name', 'Dup')).code, 0)
  const cases: Array<[string[], number, RegExp]> = [
    [[], 2, /^Usage: tenant-registry <command>/],
    [['frobnicate'], 2, /unknown command "frobnicate"/],
    [['list', '--nope'], 2, /Unknown option '--nope'/],
    [['create', 'x1'], 2, /--name is required/],
    [['create', 'x1', '--name', 'A', '--tier', 'gold'], 2, /--tier must be one of free, standard, premium/],
    [['create', 'x1', '--name', 'A', '--database', 'Bad DB'], 2, /--database/],
    [['create', 'x1', '--name', 'A', '--contact-email', 'nope'], 2, /--contact-email/],
    [['create', 'Bad_Id', '--name', 'A'], 1, /TENANT_INVALID/],
    [['create', 'admin', '--name', 'A'], 1, /TENANT_INVALID/],
    [['create', existing, '--name', 'A'], 1, /already exists \(CONFLICT\)/],
    [['create', 'x2', '--name', 'A', '--domain', 'not a domain'], 1, /domain must be a host name .*\(VALIDATION_FAILED\)/],
    [['create', 'x2', '--name', 'A', '--domain', 'a.example.com', '--domain', 'A.example.com'], 1, /domains must not repeat/],
    [['list', '--limit', 'ten'], 2, /--limit must be a whole number/],
    [['list', '--status', 'gone'], 2, /--status must be one of/],
    [['list', 'extra'], 2, /usage: tenant-registry list/],
    [['show'], 2, /usage: tenant-registry show <id>/],
    [['suspend', 'no-such-tenant'], 1, /TENANT_NOT_FOUND/],
    [['domain', 'move', existing, 'a.example.com'], 2, /domain add\|remove/],
    [['domain', 'remove', existing, 'a.example.com'], 1, /DOMAIN_NOT_FOUND/],
    [['token'], 2, /--sub is required/],
    [['token', '--sub', 'x', '--role', 'owner'], 2, /not allowed on a platform token/],
    [['token', '--sub', 'x', '--tenant', 'acme', '--role', 'platform-admin'], 2, /not allowed on a tenant token/],
    [['token', '--sub', 'x', '--tenant', 'Not Valid'], 2, /--tenant must be a tenant id/],
    [['token', '--sub', 'x', '--scope', 'DROP TABLE'], 2, /--scope/],
    [['token', '--sub', 'x', '--expires', '0'], 2, /at least 1 second/],
    [['serve', 'now'], 2, /usage: tenant-registry serve/]
  ]
  for (const [argv, code, err] of cases) {
    const result = await run(...argv)
    t.equal(result.code, code, `${argv.join(' ') || '(nothing)'} exits ${code}`)
    t.match(result.err, err)
    t.notMatch(result.err, /at .*\.ts:\d+|postgres:\/\/|insert into/i, 'no stack, URL or SQL')
  }
  t.match(await run('--help'), { code: 0, out: /Usage: tenant-registry <command>/ })
  t.same((await r.sql`select count(*)::int as n from tenants`)[0]?.n, 1, 'nothing was created by bad input')

  t.match(await cli({ DATABASE_URL: 'mysql://x' })('list'), { code: 1, err: 'error: DATABASE_URL: must be a postgres:// or postgresql:// URL\n' })
  const devDir = await mkdtemp(join(tmpdir(), 'cli-devjson-'))
  t.teardown(() => rm(devDir, { recursive: true }))
  await mkdir(join(devDir, '.data'))
  await writeFile(join(devDir, '.data', 'dev.json'), JSON.stringify({ databaseUrl: r.url }))
  t.match(await cli({}, devDir)('list', '--json'), { code: 0, out: /"total": 1/ }, 'the dev stack\'s database from .data/dev.json')
  t.match(await cli({}, tmpdir())('list'), { code: 1, err: /DATABASE_URL: is not set and no \.data\/dev\.json was found/ })
  t.match(await cli({ DATABASE_URL: 'postgres://x:y@127.0.0.1:1/none' })('list'), { code: 1, err: /cannot reach the database/ })
  t.match(await cli({ DATABASE_URL: r.url.replace(/\/[^/]+$/, '/no_such_database') })('list'), { code: 1, err: /the database refused the connection/ })
  const verifyOnly = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string
  t.match(await cli({ JWT_PUBLIC_KEY: verifyOnly })('token', '--sub', 'x'), { code: 1, err: 'error: JWT_PRIVATE_KEY is needed to issue tokens\n' })
  t.match(await cli({ JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----' })('token', '--sub', 'x'), { code: 1, err: 'error: JWT_PUBLIC_KEY: holds something that is not a PEM public key\n' })
  t.match(await cli({ JWT_SECRET: SECRET })('serve'), { code: 1, err: /DATABASE_URL: is required to serve/ })
})

t.test('the bin exits with the code and writes errors to stderr', async (t) => {
  const bin = fileURLToPath(new URL('../src/bin.ts', import.meta.url))
  const result = await new Promise<Run>((resolve) => {
    const child = spawn(process.execPath, [bin, 'show', 'x'], { env: { ...process.env, DATABASE_URL: 'mysql://nope' } })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += String(d) })
    child.stderr.on('data', (d: Buffer) => { err += String(d) })
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }))
  })
  t.same(result, { code: 1, out: '', err: 'error: DATABASE_URL: must be a postgres:// or postgresql:// URL\n' })
  const help = await new Promise<Run>((resolve) => {
    const child = spawn(process.execPath, [bin, '--help'])
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += String(d) })
    child.on('close', (code) => resolve({ code: code ?? -1, out, err: '' }))
  })
  t.match(help, { code: 0, out: /^Usage: tenant-registry/ })
})
