import { readFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import postgres, { type Sql } from 'postgres'
import { clusterEnvName } from '../clusters.ts'
import { loadMigrations, migrateAll, migratableTenants, type MigrateAllSummary } from '../migrations.ts'
import { RegistryClient } from '../registry-client.ts'
import { isValidTenantId } from '../tenant-id.ts'
import type { Tenant } from '../types.ts'

export interface MigrateCliIo {
  env: NodeJS.ProcessEnv
  cwd: string
  out: (text: string) => void
  err: (text: string) => void
  /** Whether stderr is a terminal (a live progress bar) or not (a line every 10%). */
  tty: boolean
}

const USAGE = `Usage: tenant-migrate --dir <folder> [--tenant <id>]… [--concurrency <n>] [--json]

Applies the *.sql files in <folder> (name order) to every tenant's schema, as the owner role
(platform_owner; the tenant's role gets DML only), recording them in the schema's
${'_tenant_migrations'} table. One tenant's failure does not stop the
others; the exit status is 1 when any failed, and a re-run resumes.

Tenants: every tenant of the registry that is not archived or provisioning, or the --tenant ids.
Environment: REGISTRY_URL and SERVICE_TOKEN (tenants:read), DATABASE_URL (cluster "default"),
DATABASE_URL_<NAME> for cluster <name> (e.g. DATABASE_URL_EU_1 for "eu-1"). Without them, a
running dev stack's .data/dev.json is used.
`

class UsageError extends Error {
  readonly code = 'MT_USAGE'
}

interface Dev { registryUrl?: string, databaseUrl?: string, serviceDatabaseUrl?: string, tokens?: { service?: string } }

async function devInfo (cwd: string): Promise<Dev> {
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const text = await readFile(join(dir, '.data', 'dev.json'), 'utf8').catch(() => undefined)
    if (text !== undefined) return JSON.parse(text) as Dev
    if (dirname(dir) === dir) return {}
  }
}

function bar (done: number, total: number, failed: number, ms: number): string {
  const width = 30
  const filled = Math.min(width, Math.round(width * done / Math.max(total, done)))
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${Math.max(total, done)} tenants, ${failed} failed, ${(ms / 1000).toFixed(1)} s`
}

/** The `tenant-migrate` command; returns the exit status (0 all migrated, 1 failures, 2 usage). */
export async function runMigrateCli (argv: string[], io: MigrateCliIo): Promise<number> {
  let values
  try {
    values = parseArgs({
      args: argv,
      options: { dir: { type: 'string' }, tenant: { type: 'string', multiple: true }, concurrency: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true
    }).values
  } catch (err) {
    io.err(`error: ${(err as Error).message}\n\n${USAGE}`)
    return 2
  }
  if (values.help === true) {
    io.out(USAGE)
    return 0
  }
  const pools = new Map<string, Sql>()
  let client: RegistryClient | undefined
  try {
    if (values.dir === undefined) throw new UsageError('--dir is required')
    const concurrency = values.concurrency === undefined ? 8 : Number(values.concurrency)
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new UsageError('--concurrency must be a whole number from 1 to 64')
    for (const id of values.tenant ?? []) if (!isValidTenantId(id)) throw new UsageError(`--tenant ${id} is not a valid tenant id`)
    const migrations = await loadMigrations(resolve(io.cwd, values.dir)).catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`cannot read --dir ${values.dir}: ${String(err.code)}`)
    })
    if (migrations.length === 0) throw new UsageError(`no .sql files in ${values.dir}`)

    const dev = await devInfo(io.cwd)
    const urlFor = (cluster: string): string => {
      const name = clusterEnvName(cluster)
      const url = io.env[name] ?? (cluster === 'default' ? dev.serviceDatabaseUrl ?? dev.databaseUrl : undefined)
      if (url === undefined || url === '') throw new UsageError(`${name} is not set (the connection for cluster "${cluster}"): a service login, NOSUPERUSER and a member of platform_services (\`tenant-registry service-login <user>\`); inside the platform's repository a running \`pnpm start\` provides it`)
      return url
    }
    urlFor('default')
    const pool = (cluster: string): Sql => {
      let sql = pools.get(cluster)
      if (sql === undefined) {
        sql = postgres(urlFor(cluster), { max: concurrency, connection: { application_name: 'tenant-migrate', client_min_messages: 'warning' } })
        pools.set(cluster, sql)
      }
      return sql
    }

    let tenants: Iterable<string | Tenant> | AsyncIterable<string | Tenant>
    let total: number
    if (values.tenant !== undefined) {
      tenants = values.tenant
      total = values.tenant.length
    } else {
      const url = io.env.REGISTRY_URL ?? dev.registryUrl
      const token = io.env.SERVICE_TOKEN ?? dev.tokens?.service
      if (url === undefined || token === undefined) throw new UsageError('REGISTRY_URL and SERVICE_TOKEN are needed to list the tenants (a registry token with tenants:read: `tenant-registry token --sub migrations --scope tenants:read`), or name the tenants with --tenant')
      client = new RegistryClient({ url, token, follow: false, timeout: 10_000 })
      total = 0
      for (const status of ['active', 'trial', 'suspended'] as const) total += (await client.listTenants({ status, limit: 1 })).total
      tenants = migratableTenants(client)
    }

    const started = performance.now()
    let failed = 0
    let lastDecile = 0
    const summary: MigrateAllSummary = await migrateAll({
      migrations,
      tenants,
      pool,
      concurrency,
      onProgress: (done, _result, error) => {
        if (error !== undefined) failed++
        const ms = performance.now() - started
        if (io.tty) io.err(`\r${bar(done, total, failed, ms)}`)
        else if (Math.floor(10 * done / Math.max(total, done)) > lastDecile) {
          lastDecile = Math.floor(10 * done / Math.max(total, done))
          io.err(`${bar(done, total, failed, ms)}\n`)
        }
      }
    })
    if (io.tty) io.err('\n')
    if (values.json === true) {
      io.out(JSON.stringify({ migrations: migrations.map((m) => m.name), ...summary }, null, 2) + '\n')
    } else {
      io.out(`${summary.total} tenants: ${summary.migrated} migrated, ${summary.upToDate} already up to date, ${summary.failed.length} failed (${(summary.ms / 1000).toFixed(1)} s)\n`)
      for (const f of summary.failed) io.out(`  ${f.tenant}: ${f.error}\n`)
    }
    return summary.failed.length === 0 ? 0 : 1
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`error: ${err.message}\n`)
      return 2
    }
    io.err(`error: ${(err as Error).message}\n`)
    return 1
  /* c8 ignore next: V8 reports a branch on `finally` after an awaited return */
  } finally {
    await client?.close()
    await Promise.all([...pools.values()].map(async (sql) => await sql.end({ timeout: 5 })))
  }
}
