// A tenant on another cluster: its tables, its message and its delivery job live on that cluster
// (here a second database on the same server, set up as another cluster would be), never on the
// default one, and its own cluster's workers deliver it.
import { schemaName } from '@platform/multitenant'
import { DEFAULT_OWNER_ROLE, loginUrl, setupDatabase } from '@platform/multitenant/pg'
import { createTestDatabase } from '@platform/testkit'
import postgres from 'postgres'
import t from 'tap'
import { setupQueueSchema } from '../src/queue/setup.ts'
import { SECRET, startPlatform, tid } from './fixtures.ts'
import { settled, startComm } from './helpers.ts'

t.test('a tenant whose database is another cluster has its message and its job there', async (t) => {
  const p = await startPlatform(t, { clusters: ['eu'] })
  const other = await createTestDatabase(t)
  const home = tid('home')
  const away = tid('away')
  await p.createTenant(home)
  await p.createTenant(away, { database: 'eu' })
  // The one-time setup on the second cluster, and the tenant's schema there (roles are server-wide
  // here; on a real second server the registry's provisioning creates both).
  const adminB = postgres(other.url, { max: 1, onnotice: () => {} })
  const adminA = postgres(p.superUrl, { max: 1, onnotice: () => {} })
  t.teardown(async () => { await adminB.end(); await adminA.end() })
  await setupDatabase(adminB, { registry: p.logins.registry, services: [p.logins.service] })
  await setupQueueSchema(adminB, p.logins.service.user)
  // As the registry provisions it: the registry owns the schema, the tenant's role may use it, the
  // owner role creates the tables (the service's migrations).
  const awaySchema = `"${schemaName(away)}"`
  await adminB.unsafe(`create schema ${awaySchema} authorization "${p.logins.registry.user}"; grant usage on schema ${awaySchema} to ${awaySchema}; grant usage, create on schema ${awaySchema} to ${DEFAULT_OWNER_ROLE}`)
  const euUrl = loginUrl(other.url, p.logins.service)

  const { call } = await startComm(t, p, {
    multitenant: { registry: { url: p.registryUrl, token: p.serviceToken, ttl: 200 }, db: { clusters: { default: p.serviceDatabaseUrl, eu: euUrl }, max: 4 }, auth: { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' } },
    queueUrls: { eu: euUrl }
  })
  const atHome = await call('POST', '/v1/messages', home, { channel: 'sms', to: '+15550100', body: 'home' })
  const abroad = await call('POST', '/v1/messages', away, { channel: 'sms', to: '+15550101', body: 'away' })
  t.same([atHome.status, abroad.status], [202, 202])
  const jobs = async (sql: postgres.Sql): Promise<string[]> => (await sql<Array<{ id: string }>>`select data->>'messageId' as id from pgboss.job where name = 'comm-deliver'`).map((r) => r.id)
  t.same(await jobs(adminB), [abroad.body.id], 'the away tenant\'s job is on its cluster only')
  t.same(await jobs(adminA), [atHome.body.id], 'the home tenant\'s job is on the default cluster only')
  t.same((await adminB.unsafe(`select id from "${schemaName(away)}".messages`)).map((r) => r.id), [abroad.body.id], 'the message row is on its cluster')
  t.same(await adminA.unsafe(`select 1 from pg_namespace n join pg_class c on c.relnamespace = n.oid where n.nspname = '${schemaName(away)}' and c.relname = 'messages'`), [], 'and its tables are not on the default one')
  t.match(await settled(call, away, abroad.body.id), { status: 'sent' }, 'delivered by the workers of its cluster')
  t.match(await settled(call, home, atHome.body.id), { status: 'sent' })
})
