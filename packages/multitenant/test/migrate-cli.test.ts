import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import postgres from 'postgres'
import t from 'tap'
import { runMigrateCli } from '../src/cli/migrate.ts'
import { schemaName } from '../src/tenant-id.ts'
import { startTestRegistry } from './fixtures/registry.ts'
import { suffix } from './pg/fixtures.ts'

const tid = (name: string): string => `mc-${name}-${suffix}`

function cli (env: NodeJS.ProcessEnv, cwd: string, tty = false) {
  return async (...argv: string[]): Promise<{ code: number, out: string, err: string }> => {
    let out = ''
    let err = ''
    const code = await runMigrateCli(argv, { env, cwd, tty, out: (s) => { out += s }, err: (s) => { err += s } })
    return { code, out, err }
  }
}

t.test('tenant-migrate against a real registry: progress, summary, failures, resume', async (t) => {
  const r = await startTestRegistry(t)
  const ids = ['a', 'b', 'c', 'd', 'gone'].map(tid)
  for (const id of ids) t.equal((await r.admin('POST', '/v1/tenants', { id, name: id })).status, 201)
  t.equal((await r.admin('DELETE', `/v1/tenants/${tid('gone')}`)).status, 200, 'archived tenants are not migrated')
  const sql = postgres(r.databaseUrl, { max: 1, connection: { client_min_messages: 'warning' } })
  t.teardown(async () => {
    for (const id of ids) await r.admin('DELETE', `/v1/tenants/${id}?purge=true&confirm=${id}`)
    await sql.end()
  })
  const dir = await mkdtemp(join(tmpdir(), 'migrate-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await mkdir(join(dir, 'migrations'))
  await writeFile(join(dir, 'migrations', '0001_messages.sql'), 'create table messages (id bigserial primary key, body text not null);')
  const env = { REGISTRY_URL: r.url, SERVICE_TOKEN: r.serviceToken, DATABASE_URL: r.databaseUrl }

  const first = await cli(env, dir)('--dir', 'migrations', '--concurrency', '2')
  t.equal(first.code, 0)
  t.equal(first.out.replace(/\(\d+\.\d s\)/, '(T)'), '4 tenants: 4 migrated, 0 already up to date, 0 failed (T)\n')
  t.match(first.err, /\[#{30}\] 4\/4 tenants, 0 failed/, 'progress lines without a terminal')
  t.same(await sql.unsafe(`select 1 from pg_tables where schemaname = '${schemaName(tid('gone'))}'`), [], 'the archived tenant was skipped')

  // One tenant cannot take the next migration: exit 1, the others move on, a fix resumes.
  await sql.unsafe(`insert into "${schemaName(tid('c'))}".messages (body) values ('x'), ('x')`)
  await writeFile(join(dir, 'migrations', '0002_unique.sql'), 'create unique index messages_body_idx on messages (body);')
  const tty = await cli(env, dir, true)('--dir', 'migrations', '--json')
  t.equal(tty.code, 1)
  const summary = JSON.parse(tty.out)
  t.match(summary, { migrations: ['0001_messages.sql', '0002_unique.sql'], total: 4, migrated: 3, failed: [{ tenant: tid('c'), code: 'MT_MIGRATION_FAILED' }] })
  t.match(tty.err, /\r\[/, 'a live progress bar on a terminal')
  await sql.unsafe(`delete from "${schemaName(tid('c'))}".messages`)
  const resumed = await cli(env, dir)('--dir', 'migrations', '--tenant', tid('c'), '--tenant', tid('a'))
  t.equal(resumed.code, 0)
  t.match(resumed.out, /^2 tenants: 1 migrated, 1 already up to date, 0 failed/)

  // A tenant on another cluster needs that cluster's connection: without it, that tenant fails.
  t.equal((await r.admin('POST', '/v1/tenants', { id: tid('eu'), name: 'eu', database: 'eu-1' })).status, 201)
  ids.push(tid('eu'))
  const noEu = await cli(env, dir)('--dir', 'migrations')
  t.equal(noEu.code, 1)
  t.match(noEu.out, /1 failed/)
  t.match(noEu.out, new RegExp(`${tid('eu')}: DATABASE_URL_EU_1 is not set`))
  const withEu = await cli({ ...env, DATABASE_URL_EU_1: r.databaseUrl }, dir)('--dir', 'migrations')
  t.match(withEu, { code: 0, out: /^5 tenants: 1 migrated, 4 already up to date/ })

  // With no variables, a dev stack's .data/dev.json is used.
  await mkdir(join(dir, '.data'))
  await writeFile(join(dir, '.data', 'dev.json'), JSON.stringify({ registryUrl: r.url, databaseUrl: r.databaseUrl, tokens: { service: r.serviceToken } }))
  t.match(await cli({ DATABASE_URL_EU_1: r.databaseUrl }, dir)('--dir', 'migrations'), { code: 0, out: /^5 tenants: 0 migrated, 5 already up to date/ })
})

t.test('usage errors', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'migrate-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await mkdir(join(dir, 'empty'))
  await writeFile(join(dir, 'one.sql'), 'select 1;')
  const run = cli({ DATABASE_URL: 'postgres://x@127.0.0.1:1/x' }, dir)
  t.match(await run(), { code: 2, err: /--dir is required/ })
  t.match(await run('--dir', 'nope'), { code: 2, err: /cannot read --dir nope: ENOENT/ })
  t.match(await run('--dir', 'empty'), { code: 2, err: /no \.sql files in empty/ })
  t.match(await run('--dir', '.', '--concurrency', '0'), { code: 2, err: /--concurrency/ })
  t.match(await run('--dir', '.', '--tenant', 'Bad Id'), { code: 2, err: /not a valid tenant id/ })
  t.match(await run('--dir', '.'), { code: 2, err: /REGISTRY_URL and SERVICE_TOKEN are needed/ })
  t.match(await cli({}, dir)('--dir', '.', '--tenant', 'acme'), { code: 2, err: /DATABASE_URL is not set/ })
  t.match(await run('--bogus'), { code: 2, err: /Unknown option/ })
  t.match(await run('--help'), { code: 0, out: /^Usage: tenant-migrate/ })
  t.match(await run('--dir', '.', '--tenant', 'acme'), { code: 1, out: /1 tenants: 0 migrated, 0 already up to date, 1 failed/ }, 'an unreachable database is a failure per tenant')
  const clusters = cli({ DATABASE_URL: 'postgres://x@127.0.0.1:1/x', REGISTRY_URL: 'http://127.0.0.1:1', SERVICE_TOKEN: 't' }, dir)
  t.match(await clusters('--dir', '.'), { code: 1, err: /^error: / }, 'an unreachable registry')
  // Outside tap's coverage (see the registry fixture): a child that loads the sources but runs
  // little of them would skew the merged function coverage.
  const bin = spawnSync('env', ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE', process.execPath, fileURLToPath(new URL('../src/bin/tenant-migrate.ts', import.meta.url)), '--help'], { encoding: 'utf8' })
  t.equal(bin.status, 0)
  t.match(bin.stdout, /^Usage: tenant-migrate/)
})
