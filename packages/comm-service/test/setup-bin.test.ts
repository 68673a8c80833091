// The one-time queue setup as a command (what docker-compose's setup step runs): installs the
// schema for the service's login once, says so, and names what is missing.
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { createTestDatabase } from '@platform/testkit'
import postgres from 'postgres'
import t from 'tap'

const BIN = fileURLToPath(new URL('../src/setup-bin.ts', import.meta.url))
const run = (env: Record<string, string>): { status: number | null, stderr: string } => {
  const result = spawnSync(process.execPath, [BIN], { env: { ...process.env, COMM_SETUP_DATABASE_URL: '', ...env }, encoding: 'utf8' })
  return { status: result.status, stderr: result.stderr }
}

t.test('comm setup: installs the queue schema once, for the named login', async (t) => {
  const db = await createTestDatabase(t)
  const user = `comm_${randomBytes(3).toString('hex')}`
  const admin = postgres(db.url, { max: 1, onnotice: () => {} })
  t.teardown(() => admin.end())
  await admin.unsafe(`create role ${user} login password 'x-long-password'`)
  const first = run({ COMM_SETUP_DATABASE_URL: db.url, COMM_DB_USER: user })
  t.equal(first.status, 0, first.stderr)
  t.match(first.stderr, new RegExp(`installed the queue schema pgboss, owned by ${user}`))
  const [owner] = await admin`select nspowner::regrole::text as owner from pg_namespace where nspname = 'pgboss'`
  t.equal(owner?.owner, user)
  const again = run({ COMM_SETUP_DATABASE_URL: db.url, COMM_DB_USER: user })
  t.equal(again.status, 0)
  t.match(again.stderr, /exists/)
  const missing = run({})
  t.equal(missing.status, 2)
  t.match(missing.stderr, /COMM_SETUP_DATABASE_URL is required/)
  const bad = run({ COMM_SETUP_DATABASE_URL: db.url, COMM_DB_USER: 'Bad-Name' })
  t.equal(bad.status, 1)
  t.match(bad.stderr, /could not set up the queue schema: schema and owner must be plain lower-case names/)
})
