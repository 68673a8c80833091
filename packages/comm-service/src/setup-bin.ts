#!/usr/bin/env node
// The communication service's one-time database step, run as a superuser after the platform's
// own setup (`tenant-registry setup-database`, `service-login platform_comm`): the queue schema,
// owned by the service's login, with pg-boss installed in it.
//   COMM_SETUP_DATABASE_URL=postgres://<superuser>@host/platform COMM_DB_USER=platform_comm node src/setup-bin.ts
import postgres from 'postgres'
import { setupQueueSchema } from './queue/setup.ts'

const say = (line: string): void => { process.stderr.write(`[comm-setup] ${line}\n`) }
const url = process.env.COMM_SETUP_DATABASE_URL?.trim()
const owner = process.env.COMM_DB_USER?.trim() || 'platform_comm'
if (!url) {
  say('COMM_SETUP_DATABASE_URL is required: a superuser\'s URL of the platform database')
  process.exit(2)
}
// PostgreSQL's notices ("schema exists, skipping") are not news here.
/* c8 ignore next */
const admin = postgres(url, { max: 1, onnotice: () => {} })
try {
  const made = await setupQueueSchema(admin, owner)
  say(made ? `installed the queue schema pgboss, owned by ${owner}` : `the queue schema pgboss exists (${owner} may notify)`)
} catch (err) {
  say(`could not set up the queue schema: ${(err as Error).message}`)
  process.exitCode = 1
} finally {
  await admin.end()
}
