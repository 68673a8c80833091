import { randomBytes } from 'node:crypto'
import postgres from 'postgres'
import { startEmbeddedPostgres, type RunningPostgres } from './embedded-postgres.ts'

/** The subset of a tap `Test` the helpers need, so the kit does not depend on tap. */
export interface Teardownable {
  teardown (fn: () => unknown): void
}

export interface TestDatabase {
  /** Connection string of a database created for this caller only. */
  readonly url: string
  /** Connection string of the maintenance database on the same server (superuser). */
  readonly adminUrl: string
  readonly name: string
  drop (): Promise<void>
}

let ownServer: Promise<RunningPostgres> | undefined

/**
 * The server URL: `DATABASE_URL` when set (the `with-pg` wrapper sets it once per run), otherwise
 * an embedded server started for this process and stopped when the last database is dropped.
 */
async function serverUrl (): Promise<{ url: string, own: boolean }> {
  const url = process.env.DATABASE_URL ?? ''
  if (url !== '') return { url, own: false }
  ownServer ??= startEmbeddedPostgres()
  return { url: (await ownServer).url, own: true }
}

function withDatabase (url: string, database: string): string {
  const u = new URL(url)
  u.pathname = '/' + database
  return u.toString()
}

let live = 0

/**
 * Creates a fresh, empty database for one test file, so files can run in parallel against one
 * server. With a tap test as `t`, it is dropped at the test's teardown (whether it passed or not).
 */
export async function createTestDatabase (t?: Teardownable): Promise<TestDatabase> {
  const { url: adminUrl, own } = await serverUrl()
  const name = `test_${process.pid}_${randomBytes(4).toString('hex')}`
  const admin = postgres(adminUrl, { max: 1 })
  try {
    await admin.unsafe(`create database "${name}"`)
  } finally {
    await admin.end()
  }
  live++
  let dropped: Promise<void> | undefined
  const db: TestDatabase = {
    url: withDatabase(adminUrl, name),
    adminUrl,
    name,
    drop () {
      dropped ??= (async () => {
        const sql = postgres(adminUrl, { max: 1 })
        try {
          await sql.unsafe(`drop database if exists "${name}" with (force)`)
        } finally {
          await sql.end()
        }
        live--
        if (own && live === 0 && ownServer !== undefined) {
          const server = await ownServer
          ownServer = undefined
          await server.stop()
        }
      })()
      return dropped
    }
  }
  t?.teardown(() => db.drop())
  return db
}
