// The role model's setup: names, logins, the move of tenants provisioned before it, and what
// checkHardening reports on a database with and without it.
import { randomBytes } from 'node:crypto'
import { createTestDatabase } from '@platform/testkit'
import postgres from 'postgres'
import t from 'tap'
import { runAsTenant } from '../../src/context.ts'
import { TenantDb } from '../../src/pg/index.ts'
import { assertRoleName, checkHardening, createServiceLogin, loginUrl, setupDatabase } from '../../src/pg/roles.ts'
import { createPlatformDatabase, tid } from './fixtures.ts'

const tag = (): string => randomBytes(3).toString('hex')
const login = (url: string, user: string, password: string): string => loginUrl(url, { user, password })

t.test('role names and passwords are checked before anything is sent', async (t) => {
  for (const bad of ['', 'Upper', 'tenant_acme', 'pg_monitor', 'has-dash', 'x'.repeat(64), 'a"b']) {
    t.throws(() => assertRoleName(bad), { code: 'MT_INVALID_OPTION' }, JSON.stringify(bad))
  }
  t.equal(assertRoleName('comm_service'), 'comm_service')
  const db = await createPlatformDatabase(t)
  const registry = postgres(db.registryUrl, { max: 1, onnotice: () => {} })
  t.teardown(() => registry.end())
  await t.rejects(createServiceLogin(registry, { user: `svc_${tag()}`, password: 'short' }), { code: 'MT_INVALID_OPTION' })
  await t.rejects(setupDatabase(registry, { registry: { user: 'Bad Name', password: 'x'.repeat(20) } }), { code: 'MT_INVALID_OPTION' })
  // Created by the registry's login, then its password changed: the new one works, the old does not.
  const user = `svc_${tag()}`
  await createServiceLogin(registry, { user, password: 'first-password-1' })
  await createServiceLogin(registry, { user, password: 'second-password-2' })
  const ok = postgres(login(db.url, user, 'second-password-2'), { max: 1 })
  t.teardown(() => ok.end())
  t.same(await ok`select current_user as u, (select rolsuper from pg_roles where rolname = current_user) as s`, [{ u: user, s: false }])
  const old = postgres(login(db.url, user, 'first-password-1'), { max: 1 })
  await t.rejects(old`select 1`, { code: '28P01' })
  await old.end()
  // A superuser's name is refused, and the attempt changes nothing (one transaction).
  const root = postgres(db.url, { max: 1, onnotice: () => {} })
  t.teardown(() => root.end())
  const superName = `super_${tag()}`
  await root.unsafe(`create role ${superName} superuser login password 'unchanged-password'`)
  await t.rejects(createServiceLogin(root, { user: superName, password: 'changed-password-1' }), { code: 'MT_INVALID_OPTION', message: /superuser/ })
  const still = postgres(login(db.url, superName, 'unchanged-password'), { max: 1 })
  t.same(await still`select 1 as one`, [{ one: 1 }], 'the password was not changed')
  await still.end()
  await root.unsafe(`drop role ${superName}`)
})

t.test('tenants provisioned before the role model are moved to it', async (t) => {
  const db = await createTestDatabase(t)
  const root = postgres(db.url, { max: 1, onnotice: () => {} })
  t.teardown(() => root.end())
  const id = tid('legacy')
  const role = `tenant_${id.replaceAll('-', '_')}`
  const legacy = { user: `legacy_${tag()}`, password: `legacy-${tag()}-password` }
  // The old way: a login that inherits the tenant role reads its tables outside any unit.
  await root.unsafe(`create role ${legacy.user} login password '${legacy.password}'`)
  await root.unsafe(`create role "${role}" nologin`)
  await root.unsafe(`grant "${role}" to ${legacy.user}`)
  await root.unsafe(`create schema "${role}" authorization "${role}"`)
  await root.unsafe(`create table "${role}".notes (body text); alter table "${role}".notes owner to "${role}"; insert into "${role}".notes values ('old')`)
  await root.unsafe('create table public.tenants (id text)')
  const before = postgres(login(db.url, legacy.user, legacy.password), { max: 1 })
  t.same(await before.unsafe(`select body from "${role}".notes`), [{ body: 'old' }], 'before: the login inherits the tenant')
  await before.end()

  const registry = { user: `reg_${tag()}`, password: `reg-${tag()}-password` }
  const service = { user: `svc_${tag()}`, password: `svc-${tag()}-password` }
  await setupDatabase(root, { registry, services: [service] })
  await setupDatabase(root, { registry }) // idempotent, and services may come later

  const after = postgres(login(db.url, legacy.user, legacy.password), { max: 1 })
  t.teardown(() => after.end())
  await t.rejects(after.unsafe(`select body from "${role}".notes`), { code: '42501' }, 'after: membership without inheritance')
  t.same(await root`select tableowner from pg_tables where schemaname = 'public' and tablename = 'tenants'`, [{ tableowner: registry.user }], 'the registry owns its tables')
  const tdb = new TenantDb({ url: login(db.url, service.user, service.password), max: 2 })
  t.teardown(() => tdb.close())
  t.same(await runAsTenant(id, async () => await tdb.query('select body from notes')), [{ body: 'old' }], 'the service reaches the tenant inside its units')
  // The registry administers the moved role: it can purge it.
  const reg = postgres(login(db.url, registry.user, registry.password), { max: 1, onnotice: () => {} })
  t.teardown(() => reg.end())
  t.same(await root`select nspowner::regrole::text as owner from pg_namespace where nspname = ${role}`, [{ owner: registry.user }], 'the registry owns the moved schema')
  await reg.begin(async (tx) => {
    await tx.unsafe(`drop schema "${role}" cascade`)
    await tx.unsafe(`set local role "${role}"`)
    await tx.unsafe(`drop owned by "${role}"`)
    await tx.unsafe('reset role')
    await tx.unsafe(`drop role "${role}"`)
  })
  t.same(await root`select 1 from pg_roles where rolname = ${role}`, [])
  await root.unsafe(`drop role ${legacy.user}`)
})

t.test('checkHardening says what a database does not guarantee', async (t) => {
  const plain = await createTestDatabase(t)
  const root = postgres(plain.url, { max: 1 })
  t.teardown(() => root.end())
  const bare = await checkHardening(root, `no_group_${tag()}`, `no_owner_${tag()}`)
  t.ok(bare.weaker.some((w) => /owner role .* does not exist/.test(w)), 'reports a missing owner role')
  t.equal(bare.superuser, true)
  for (const weak of [/set_config/, /pg_notify/, /advisory locks/, /TEMPORARY/, /group role .* does not exist/, /language plpgsql/]) {
    t.ok(bare.weaker.some((w) => weak.test(w)), `reports ${String(weak)}`)
  }
  const db = await createPlatformDatabase(t)
  const registry = postgres(db.registryUrl, { max: 1 })
  t.teardown(() => registry.end())
  t.same(await checkHardening(registry), { superuser: false, weaker: [] }, 'after the setup: nothing weaker')
})
