import { createPublicKey } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { isValidTenantId, type Tenant, type TenantStatus, type TenantTier } from '@platform/multitenant'
import { createServiceLogin, setupDatabase } from '@platform/multitenant/pg'
import { DrizzleQueryError } from 'drizzle-orm'
import postgres, { type Sql } from 'postgres'
import { checkDatabaseUrl, ConfigError, loadConfig, nonEmpty } from './config.ts'
import { migrateRegistry } from './db/migrate.ts'
import { closeOnSignals, createLogger, startRegistryServer } from './server.ts'
import { AUDIENCE, MAX_CREDENTIAL_TTL, SCOPE_WORD, SERVICE_NAME, ServiceStore, type IssuedCredential, type Service } from './services.ts'
import { TenantStore, type CreateTenantInput } from './tenants.ts'
import { PLATFORM_ROLES, TENANT_ROLES, tokenIssuer, type TokenIssuer } from './tokens.ts'

export interface CliIo {
  env: NodeJS.ProcessEnv
  cwd: string
  out: (text: string) => void
  err: (text: string) => void
}

const USAGE = `Usage: tenant-registry <command> [options]      (from the repository root: pnpm registry …)

Tenants
  create <id> --name <name> [--tier free|standard|premium] [--trial] [--domain <host>]…
              [--database <cluster>] [--contact-email <email>]
  list [--status <s>] [--tier <t>] [--q <text>] [--limit <n>] [--offset <n>]
  show <id>
  suspend <id>
  activate <id>
  delete <id> [--purge --yes]       archive; --purge also drops the schema, its data and the role
  domain add <id> <host> [--primary]
  domain remove <id> <host>
  config <id> [<key>=<value>]…      show, or set, a tenant's configuration: dotted keys, values as
                                    JSON (else text); <key>=null removes a key
                                    e.g. config acme notes.maxNotes=500 comm.emailFrom=hi@acme.test
  limits <id> [<key>=<value>]…      the same for limits (messagesPerMinute, requestsPerMinute …)

Services (what each may do on a tenant's behalf; its credential is its SERVICE_TOKEN)
  service add <name> --scopes <s,s> --audiences <a,a> [--expires <seconds>]
                                    register a service and print its first credential (once)
  service list
  service show <name>
  service update <name> [--scopes <s,s>] [--audiences <a,a>]
  service token <name> [--expires <seconds>]
                                    a new credential (rotation; the old ones work until revoked)
  service revoke <name> [--credential <id>]
                                    revoke the service (every credential), or one credential

Operations
  token --sub <subject> [--tenant <id>] [--role <role>]… [--scope "<s> <s>"] [--expires <seconds>]
  migrate                           apply the registry's migrations to DATABASE_URL
  service-login <user>              create a service's database login (NOSUPERUSER, in the
              [--password <p>]      services' group): its password from --password or SERVICE_DB_PASSWORD
  setup-database --registry-user <user> [--password <p>]
                                    the one-time setup, run with a superuser's DATABASE_URL: the
                                    registry's login (password from --password or REGISTRY_DB_PASSWORD),
                                    the group and owner roles, revokes from PUBLIC; run again (it is
                                    idempotent) to move tenants whose role owns its schema
  serve                             run the registry (PORT, HOST, BASE_DOMAIN, LOG_LEVEL)

Options
  --json      machine-readable output on stdout
  --help      this text

Environment: DATABASE_URL (default: the database of a running \`pnpm start\`, from .data/dev.json),
JWT_PRIVATE_KEY/JWT_PUBLIC_KEY (or, in development only, JWT_SECRET) for \`token\` and \`service\`
(default: the dev stack's, .data/jwt-private.pem and jwt-public.pem, else .data/jwt-secret).
`

const OPTIONS = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  name: { type: 'string' },
  tier: { type: 'string' },
  trial: { type: 'boolean' },
  domain: { type: 'string', multiple: true },
  database: { type: 'string' },
  'contact-email': { type: 'string' },
  status: { type: 'string' },
  q: { type: 'string' },
  limit: { type: 'string' },
  offset: { type: 'string' },
  purge: { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
  primary: { type: 'boolean' },
  sub: { type: 'string' },
  tenant: { type: 'string' },
  role: { type: 'string', multiple: true },
  scope: { type: 'string' },
  expires: { type: 'string' },
  password: { type: 'string' },
  'registry-user': { type: 'string' },
  scopes: { type: 'string' },
  audiences: { type: 'string' },
  credential: { type: 'string' }
} as const

class UsageError extends Error {
  readonly code = 'MT_USAGE'
}

/** `a.b=1 c=text d=null` → the JSON merge patch `{ a: { b: 1 }, c: 'text', d: null }`. */
function mergePatchOf (assignments: string[]): Record<string, unknown> {
  const patch: Record<string, unknown> = {}
  for (const assignment of assignments) {
    const eq = assignment.indexOf('=')
    const key = eq === -1 ? '' : assignment.slice(0, eq)
    const path = key.split('.')
    if (eq === -1 || path.some((part) => !/^[A-Za-z_][A-Za-z0-9_-]{0,63}$/.test(part) || part === '__proto__' || part === 'constructor' || part === 'prototype')) {
      throw new UsageError(`"${assignment}" is not <key>=<value> with a dotted key of letters, digits, _ and -`)
    }
    const raw = assignment.slice(eq + 1)
    let value: unknown
    try {
      value = JSON.parse(raw)
    } catch {
      value = raw // plain text needs no quotes
    }
    let node = patch
    for (const part of path.slice(0, -1)) {
      const next = node[part]
      node = (node[part] = typeof next === 'object' && next !== null && !Array.isArray(next) ? next : {}) as Record<string, unknown>
    }
    node[path.at(-1) as string] = value
  }
  return patch
}

const TIERS = ['free', 'standard', 'premium']
const STATUSES = ['provisioning', 'active', 'trial', 'suspended', 'archived']

/** Looks for .data/<file> from `cwd` upwards (the dev stack writes it at the repository root). */
async function devFile (cwd: string, file: string): Promise<string | undefined> {
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const text = await readFile(join(dir, '.data', file), 'utf8').catch(() => undefined)
    if (text !== undefined) return text
    if (dirname(dir) === dir) return undefined
  }
}

async function databaseUrl (io: CliIo): Promise<string> {
  const fromEnv = io.env.DATABASE_URL?.trim()
  if (fromEnv !== undefined && fromEnv !== '') return checkDatabaseUrl(fromEnv)
  const dev = await devFile(io.cwd, 'dev.json')
  const url = dev === undefined ? undefined : (JSON.parse(dev) as { databaseUrl?: string }).databaseUrl
  if (url === undefined) throw new ConfigError('DATABASE_URL', 'is not set and no .data/dev.json was found (start the dev stack with `pnpm start`, or set DATABASE_URL)')
  return url
}

function int (name: string, value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback
  if (!/^\d+$/.test(value) || Number(value) > max) throw new UsageError(`--${name} must be a whole number up to ${max}`)
  return Number(value)
}

function oneOf<T extends string> (name: string, value: string | undefined, allowed: readonly string[]): T | undefined {
  if (value !== undefined && !allowed.includes(value)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}`)
  return value as T | undefined
}

function describe (t: Tenant): string {
  const domains = t.domains.map((d) => d.domain + (d.primary ? ' (primary)' : '')).join(', ')
  return [
    `id          ${t.id}`,
    `name        ${t.name}`,
    `status      ${t.status}`,
    `tier        ${t.tier}`,
    `schema      ${t.schema} on ${t.database}`,
    `domains     ${domains === '' ? '-' : domains}`,
    `contact     ${t.contactEmail ?? '-'}`,
    `config      ${JSON.stringify(t.config)}`,
    `limits      ${JSON.stringify(t.limits)}`,
    `version     ${t.version}   created ${t.createdAt}   updated ${t.updatedAt}`
  ].join('\n') + '\n'
}

function table (header: string[], rows: string[][]): string {
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)))
  return all.map((r) => r.map((cell, i) => i === r.length - 1 ? cell : cell.padEnd(Number(widths[i]))).join('  ')).join('\n') + '\n'
}

/** The signer for `token` and `service`: JWT variables, else the dev stack's key pair, else its secret. */
async function issuerOf (io: CliIo): Promise<TokenIssuer> {
  const env: NodeJS.ProcessEnv = { ...io.env, DATABASE_URL: '' }
  const configured = ['JWT_SECRET', 'JWT_PRIVATE_KEY', 'JWT_PUBLIC_KEY'].some((name) => nonEmptyVar(env, name))
  let fallbackSecret: string | undefined
  if (!configured) {
    const privateKey = await devFile(io.cwd, 'jwt-private.pem')
    // The public half is derived: ensureSigningKey keeps the pair, the private file is the truth.
    if (privateKey !== undefined) Object.assign(env, { JWT_PRIVATE_KEY: privateKey, JWT_PUBLIC_KEY: createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }) })
    else fallbackSecret = (await devFile(io.cwd, 'jwt-secret'))?.trim()
  }
  const config = loadConfig(env, fallbackSecret === undefined ? {} : { fallbackSecret })
  return tokenIssuer(config.jwt)
}

const nonEmptyVar = (env: NodeJS.ProcessEnv, name: string): boolean => (env[name]?.trim() ?? '') !== ''

/** `--scopes a,b` or `--scopes "a b"` → the words, each checked. */
function words (flag: string, value: string | undefined, pattern: RegExp, example: string): string[] | undefined {
  if (value === undefined) return undefined
  const list = value.split(/[\s,]+/).filter(Boolean)
  const bad = list.find((word) => !pattern.test(word) || word === 'tokens:exchange')
  if (bad !== undefined) throw new UsageError(`--${flag}: "${bad}" is not allowed (a list such as ${example})`)
  return list
}

const listed = (words: string[]): string => words.join(' ') || '-'

function describeService (s: Service): string {
  const live = s.credentials.filter((c) => c.revokedAt === null)
  return [
    `name        ${s.name} (token subject svc:${s.name})`,
    `status      ${s.status}${s.revokedAt === null ? '' : ` since ${s.revokedAt}`}`,
    `scopes      ${listed(s.scopes)}`,
    `audiences   ${listed(s.audiences)}`,
    ...s.credentials.map((c) => `credential  ${c.id}  expires ${c.expiresAt}${c.revokedAt === null ? '' : `  revoked ${c.revokedAt}`}`),
    `            ${live.length} live credential(s); version ${s.version}, updated ${s.updatedAt}`
  ].join('\n') + '\n'
}

const shownOnce = (c: IssuedCredential): string =>
  `credential ${c.id} (expires ${c.expiresAt}); shown once, keep it as the service's SERVICE_TOKEN:\n${c.token}\n`

/** Runs one CLI command; returns the exit code (0 ok, 1 failed, 2 usage). */
export async function runCli (argv: string[], io: CliIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (err) {
    io.err(`error: ${(err as Error).message}\n\n${USAGE}`)
    return 2
  }
  const { values: o, positionals } = parsed
  const [command, ...args] = positionals
  if (o.help === true || command === 'help') {
    io.out(USAGE)
    return 0
  }
  if (command === undefined) {
    io.err(USAGE)
    return 2
  }
  const json = o.json === true
  const print = (value: unknown, human: string): void => io.out(json ? JSON.stringify(value, null, 2) + '\n' : human)
  const need = (count: number, usage: string): string[] => {
    if (args.length !== count) throw new UsageError(`usage: tenant-registry ${usage}`)
    return args
  }

  let sql: Sql | undefined
  const store = async (): Promise<TenantStore> => {
    sql = postgres(await databaseUrl(io), { max: 2, connect_timeout: 10, connection: { application_name: 'tenant-registry-cli', client_min_messages: 'warning' } })
    // BASE_DOMAIN as the server has it: a tenant's `<id>.<BASE_DOMAIN>` is one of its sender domains.
    return new TenantStore(sql, { baseDomain: nonEmpty(io.env, 'BASE_DOMAIN')?.toLowerCase() })
  }
  try {
    switch (command) {
      case 'create': {
        const [id] = need(1, 'create <id> --name <name> [options]')
        if (o.name === undefined || o.name.trim() === '' || o.name.length > 200) throw new UsageError('--name is required (1 to 200 characters)')
        const input: CreateTenantInput = { id: id as string, name: o.name.trim() }
        const tier = oneOf<TenantTier>('tier', o.tier, TIERS)
        if (tier !== undefined) input.tier = tier
        if (o.trial === true) input.status = 'trial'
        if (o.domain !== undefined) input.domains = o.domain
        if (o.database !== undefined) {
          if (!/^[a-z0-9_-]{1,63}$/.test(o.database)) throw new UsageError('--database must be a cluster name of a-z, 0-9, _ and -')
          input.database = o.database
        }
        if (o['contact-email'] !== undefined) {
          if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(o['contact-email'])) throw new UsageError('--contact-email must be an email address')
          input.contactEmail = o['contact-email']
        }
        const tenant = await (await store()).create(input)
        print(tenant, `created ${tenant.id}: schema ${tenant.schema}, status ${tenant.status}\n`)
        return 0
      }
      case 'list': {
        need(0, 'list [--status <s>] [--tier <t>] [--q <text>] [--limit <n>] [--offset <n>]')
        const query = {
          limit: int('limit', o.limit, 50, 1000),
          offset: int('offset', o.offset, 0, 1_000_000),
          status: oneOf<TenantStatus>('status', o.status, STATUSES),
          tier: oneOf<TenantTier>('tier', o.tier, TIERS),
          q: o.q
        }
        const page = await (await store()).list(query)
        const rows = page.items.map((t) => [t.id, t.status, t.tier, t.schema, t.name])
        const more = page.total > query.offset + page.items.length ? ` (use --offset ${query.offset + page.items.length} for more)` : ''
        print({ ...page, limit: query.limit, offset: query.offset }, page.items.length === 0 ? 'no tenants\n' : table(['ID', 'STATUS', 'TIER', 'SCHEMA', 'NAME'], rows) + `${page.items.length} of ${page.total}${more}\n`)
        return 0
      }
      case 'show': {
        const [id] = need(1, 'show <id>')
        const tenant = await (await store()).require(id as string)
        print(tenant, describe(tenant))
        return 0
      }
      case 'suspend':
      case 'activate': {
        const [id] = need(1, `${command} <id>`)
        const status = command === 'suspend' ? 'suspended' : 'active'
        const tenant = await (await store()).setStatus(id as string, status, `tenant.${status}`)
        print(tenant, `${tenant.id} is ${tenant.status}\n`)
        return 0
      }
      case 'delete': {
        const [id] = need(1, 'delete <id> [--purge --yes]')
        if (o.purge === true && o.yes !== true) throw new UsageError(`--purge drops schema ${'tenant_' + (id as string).replaceAll('-', '_')} with all its data and its role; add --yes to confirm`)
        const s = await store()
        const tenant = await s.remove(id as string, o.purge === true)
        print(tenant ?? { id, purged: true }, tenant === null ? `purged ${id as string}: row, schema and role dropped\n` : `archived ${tenant.id}\n`)
        return 0
      }
      case 'domain': {
        const [action, id, host] = args
        if (args.length !== 3 || (action !== 'add' && action !== 'remove')) throw new UsageError('usage: tenant-registry domain add|remove <id> <host> [--primary]')
        const s = await store()
        const tenant = action === 'add' ? await s.addDomain(id as string, host as string, o.primary === true) : await s.removeDomain(id as string, host as string)
        print(tenant, `${tenant.id} domains: ${tenant.domains.map((d) => d.domain + (d.primary ? ' (primary)' : '')).join(', ') || '-'}\n`)
        return 0
      }
      case 'config':
      case 'limits': {
        const [id, ...assignments] = args
        if (id === undefined) throw new UsageError(`usage: tenant-registry ${command} <id> [<key>=<value>]…`)
        const s = await store()
        const tenant = assignments.length === 0 ? await s.require(id) : await s.update(id, { [command]: mergePatchOf(assignments) })
        const section = tenant[command]
        print(section, assignments.length === 0 ? JSON.stringify(section, null, 2) + '\n' : `${tenant.id} ${command} (version ${tenant.version}):\n${JSON.stringify(section, null, 2)}\n`)
        return 0
      }
      case 'service': {
        const [action, name, ...rest] = args
        const actions = ['add', 'list', 'show', 'update', 'token', 'revoke']
        if (action === undefined || !actions.includes(action) || rest.length > 0 || (action === 'list') !== (name === undefined)) {
          throw new UsageError(`usage: tenant-registry service ${actions.join('|')} [<name>] (see --help)`)
        }
        if (name !== undefined && !SERVICE_NAME.test(name)) throw new UsageError('a service name is 1 to 40 of a-z, 0-9 and -, starting with a letter')
        const scopes = words('scopes', o.scopes, SCOPE_WORD, 'messages:send,messages:read')
        const audiences = words('audiences', o.audiences, AUDIENCE, 'comm,notes')
        const expires = o.expires === undefined ? undefined : int('expires', o.expires, 0, MAX_CREDENTIAL_TTL)
        if (expires !== undefined && expires < 60) throw new UsageError('--expires must be at least 60 seconds')
        // Sign first: a missing key fails before anything is written.
        const issue = action === 'add' || action === 'token' ? await issuerOf(io) : undefined
        sql = postgres(await databaseUrl(io), { max: 2, connect_timeout: 10, connection: { application_name: 'tenant-registry-cli', client_min_messages: 'warning' } })
        const services = new ServiceStore(sql)
        switch (action) {
          case 'add': {
            if (scopes === undefined || audiences === undefined) throw new UsageError('service add needs --scopes and --audiences (what it may do on a tenant\'s behalf, whom it may call)')
            const service = await services.create({ name: name as string, scopes, audiences })
            const credential = await services.issueCredential(service.name, issue as TokenIssuer, expires)
            print({ ...service, credential }, `registered ${service.name}: scopes ${listed(service.scopes)}; audiences ${listed(service.audiences)}\n${shownOnce(credential)}`)
            return 0
          }
          case 'list': {
            const items = await services.list()
            const rows = items.map((s) => [s.name, s.status, listed(s.scopes), listed(s.audiences), String(s.credentials.filter((c) => c.revokedAt === null).length)])
            print({ items }, items.length === 0 ? 'no services\n' : table(['NAME', 'STATUS', 'SCOPES', 'AUDIENCES', 'CREDENTIALS'], rows))
            return 0
          }
          case 'show': {
            const service = await services.require(name as string)
            print(service, describeService(service))
            return 0
          }
          case 'update': {
            if (scopes === undefined && audiences === undefined) throw new UsageError('service update needs --scopes or --audiences')
            const service = await services.update(name as string, { ...(scopes === undefined ? {} : { scopes }), ...(audiences === undefined ? {} : { audiences }) })
            print(service, describeService(service))
            return 0
          }
          case 'token': {
            const credential = await services.issueCredential(name as string, issue as TokenIssuer, expires)
            print(credential, shownOnce(credential))
            return 0
          }
          default: {
            const service = o.credential === undefined ? await services.revoke(name as string) : await services.revokeCredential(name as string, o.credential)
            print(service, o.credential === undefined ? `revoked ${service.name}: every credential stops working now\n` : `revoked credential ${o.credential} of ${service.name}\n`)
            return 0
          }
        }
      }
      case 'token': {
        need(0, 'token --sub <subject> [--tenant <id>] [--role <role>]… [--scope "<s> <s>"] [--expires <seconds>]')
        if (o.sub === undefined || o.sub === '') throw new UsageError('--sub is required (who the token is for)')
        const roles = o.role ?? []
        const allowed: readonly string[] = o.tenant === undefined ? PLATFORM_ROLES : TENANT_ROLES
        for (const role of roles) {
          if (!allowed.includes(role)) throw new UsageError(`--role ${role} is not allowed on a ${o.tenant === undefined ? 'platform' : 'tenant'} token (one of ${allowed.join(', ')})`)
        }
        if (o.tenant !== undefined && !isValidTenantId(o.tenant)) throw new UsageError('--tenant must be a tenant id')
        const scope = (o.scope ?? '').split(/\s+/).filter(Boolean)
        if (scope.some((s) => !/^[a-z]+:[a-z]+$/.test(s))) throw new UsageError('--scope is a space-separated list such as "tenants:read messages:send"')
        const expires = int('expires', o.expires, 3600, 366 * 24 * 3600)
        if (expires === 0) throw new UsageError('--expires must be at least 1 second')
        const claims = { sub: o.sub, roles, scope: scope.join(' '), ...(o.tenant === undefined ? {} : { tenant: o.tenant }) }
        const token = (await issuerOf(io))(claims, expires)
        print({ token, claims, expiresIn: expires }, token + '\n')
        return 0
      }
      case 'migrate': {
        need(0, 'migrate')
        sql = postgres(await databaseUrl(io), { max: 1, connection: { client_min_messages: 'warning' } })
        const result = await migrateRegistry(sql)
        print(result, result.applied.length === 0 ? `up to date (${result.skipped.length} applied before)\n` : `applied ${result.applied.join(', ')}\n`)
        return 0
      }
      case 'service-login': {
        const [user] = need(1, 'service-login <user> [--password <password>]')
        const password = o.password ?? io.env.SERVICE_DB_PASSWORD
        if (password === undefined || password.length < 12) throw new UsageError('a password of at least 12 characters is required (--password or SERVICE_DB_PASSWORD)')
        sql = postgres(await databaseUrl(io), { max: 1, connection: { client_min_messages: 'warning' } })
        await createServiceLogin(sql, { user: user as string, password })
        print({ user }, `service login ${String(user)} is ready: it reaches a tenant's tables only inside that tenant's units of work\n`)
        return 0
      }
      case 'setup-database': {
        need(0, 'setup-database --registry-user <user> [--password <password>]')
        const user = o['registry-user']
        const password = o.password ?? io.env.REGISTRY_DB_PASSWORD
        if (user === undefined) throw new UsageError('--registry-user is required')
        if (password === undefined || password.length < 12) throw new UsageError('a password of at least 12 characters is required (--password or REGISTRY_DB_PASSWORD)')
        sql = postgres(await databaseUrl(io), { max: 1, connection: { client_min_messages: 'warning' } })
        const report = await setupDatabase(sql, { registry: { user, password } })
        const moved = report.moved.length === 0 ? '' : `moved ${report.moved.length} tenant(s) whose role owned its schema; dropped what they had made: ${report.dropped.length === 0 ? 'nothing' : report.dropped.join('; ')}\n`
        print({ user, ...report }, `${moved}the database is set up; run the registry as ${user}\n`)
        return 0
      }
      case 'serve': {
        need(0, 'serve')
        const config = loadConfig(io.env)
        if (config.databaseUrl === undefined) throw new ConfigError('DATABASE_URL', 'is required to serve (`pnpm start` runs a development stack with an embedded PostgreSQL)')
        const running = await startRegistryServer({ config: { ...config, databaseUrl: config.databaseUrl }, logger: createLogger(config.logLevel) })
        closeOnSignals(running.close, (line) => io.err(line + '\n'))
        return await new Promise<number>(() => {})
      }
      default:
        throw new UsageError(`unknown command "${command}"; run with --help`)
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`error: ${err.message}\n`)
      return 2
    }
    io.err(`error: ${message(err)}\n`)
    return 1
  /* c8 ignore start: `serve` never reaches this; it runs until a signal ends the process */
  } finally {
    await sql?.end({ timeout: 2 })
  }
  /* c8 ignore stop */
}

function message (err: unknown): string {
  if (err instanceof ConfigError) return err.message
  // drizzle wraps driver errors in one whose message is the SQL text: report the cause.
  while (err instanceof DrizzleQueryError && err.cause !== undefined) err = err.cause
  const e = err as { code?: string, message?: string, statusCode?: number }
  if (typeof e.statusCode === 'number' && typeof e.code === 'string') return `${String(e.message)} (${e.code})`
  if (e.code === 'ECONNREFUSED') return 'cannot reach the database (is `pnpm start` running, or is DATABASE_URL right?)'
  if (e.code === '28P01' || e.code === '3D000') return `the database refused the connection: ${String(e.message)}`
  return String(e.message)
}
