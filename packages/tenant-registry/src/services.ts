import { randomUUID } from 'node:crypto'
import { and, asc, eq, getTableColumns, gt, isNull, sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/postgres-js'
import type { Sql } from 'postgres'
import { serviceCredentials as credentialsTable, services as servicesTable } from './db/schema.ts'
import { ConflictError, NotFoundError } from './errors.ts'
import type { RegistryDb } from './tenants.ts'
import type { TokenIssuer } from './tokens.ts'

/** A service's name: its token subject is `svc:<name>` (and, by convention, its database's name). */
export const SERVICE_NAME = /^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$/
/** A scope word such as `messages:send`. */
export const SCOPE_WORD = /^[a-z][a-z0-9-]{0,31}:[a-z][a-z0-9-]{0,31}$/
/** An audience: a service's name or a URL-like identifier. */
export const AUDIENCE = /^[a-z0-9](?:[a-z0-9._:/-]{0,126}[a-z0-9])?$/

/** What a service credential may do: exchange itself for tenant tokens, and look tenants up. */
export const CREDENTIAL_SCOPE = 'tokens:exchange tenants:read'
export const CREDENTIAL_ROLES = ['service'] as const
/** A credential lives a year unless told otherwise; it is revocable at any time. */
export const DEFAULT_CREDENTIAL_TTL = 365 * 24 * 3600
export const MAX_CREDENTIAL_TTL = 5 * 365 * 24 * 3600

export interface CredentialInfo {
  /** The credential token's `jti`. */
  id: string
  createdAt: string
  expiresAt: string
  revokedAt: string | null
}

/** A registered service (DESIGN.md "Tokens"). */
export interface Service {
  name: string
  /** What it may use on a tenant's behalf (the most an exchanged token can carry). */
  scopes: string[]
  /** Which services it may call (the `aud` of its exchanged tokens). */
  audiences: string[]
  status: 'active' | 'revoked'
  credentials: CredentialInfo[]
  createdAt: string
  updatedAt: string
  revokedAt: string | null
  version: number
}

export interface ServiceInput {
  name: string
  scopes: string[]
  audiences: string[]
}

/** A credential as handed out, once: the token is not stored. */
export interface IssuedCredential extends CredentialInfo {
  token: string
}

type ServiceRow = typeof servicesTable.$inferSelect & { credentials: CredentialInfo[] }

const credentialsOf = sql<CredentialInfo[]>`(select coalesce(json_agg(json_build_object('id', c.id, 'createdAt', c.created_at, 'expiresAt', c.expires_at, 'revokedAt', c.revoked_at) order by c.created_at, c.id), '[]')
  from public.service_credentials c where c.service = ${servicesTable.name})`
const serviceColumns = { ...getTableColumns(servicesTable), credentials: credentialsOf }

const iso = (value: string | null): string | null => value === null ? null : new Date(value).toISOString()

function toService (row: ServiceRow): Service {
  return {
    name: row.name,
    scopes: row.scopes,
    audiences: row.audiences,
    status: row.revokedAt === null ? 'active' : 'revoked',
    credentials: row.credentials.map((c) => ({ id: c.id, createdAt: iso(c.createdAt) as string, expiresAt: iso(c.expiresAt) as string, revokedAt: iso(c.revokedAt) })),
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    revokedAt: row.revokedAt?.toISOString() ?? null,
    version: row.version
  }
}

const unique = (words: string[]): string[] => [...new Set(words)].sort()

/** The registry's registered services and their credentials. */
export class ServiceStore {
  readonly #db: RegistryDb

  constructor (sql: Sql) {
    this.#db = drizzle(sql)
  }

  async get (name: string): Promise<Service | null> {
    const [row] = await this.#db.select(serviceColumns).from(servicesTable).where(eq(servicesTable.name, name))
    return row === undefined ? null : toService(row)
  }

  async require (name: string): Promise<Service> {
    const service = await this.get(name)
    if (service === null) throw new NotFoundError('Service')
    return service
  }

  async list (): Promise<Service[]> {
    return (await this.#db.select(serviceColumns).from(servicesTable).orderBy(asc(servicesTable.name))).map(toService)
  }

  /** Registers a service; registering a revoked one again starts it afresh (its old credentials stay revoked). */
  async create (input: ServiceInput): Promise<Service> {
    const values = { name: input.name, scopes: unique(input.scopes), audiences: unique(input.audiences) }
    const rows = await this.#db.insert(servicesTable).values(values).onConflictDoUpdate({
      target: servicesTable.name,
      set: { scopes: values.scopes, audiences: values.audiences, revokedAt: null, updatedAt: sql`now()`, version: sql`${servicesTable.version} + 1` },
      setWhere: sql`${servicesTable.revokedAt} is not null`
    }).returning({ name: servicesTable.name })
    if (rows.length === 0) throw new ConflictError(`service ${input.name} is already registered`)
    return await this.require(input.name)
  }

  async update (name: string, patch: Partial<Omit<ServiceInput, 'name'>>): Promise<Service> {
    const set = {
      ...(patch.scopes === undefined ? {} : { scopes: unique(patch.scopes) }),
      ...(patch.audiences === undefined ? {} : { audiences: unique(patch.audiences) })
    }
    const rows = await this.#db.update(servicesTable).set({ ...set, updatedAt: sql`now()`, version: sql`${servicesTable.version} + 1` })
      .where(and(eq(servicesTable.name, name), isNull(servicesTable.revokedAt))).returning({ name: servicesTable.name })
    if (rows.length === 0) {
      const service = await this.require(name)
      throw new ConflictError(`service ${service.name} is revoked; register it again`)
    }
    return await this.require(name)
  }

  /** Revokes the service and every credential it has; its row stays (name, history). */
  async revoke (name: string): Promise<Service> {
    await this.#db.transaction(async (tx) => {
      const rows = await tx.update(servicesTable).set({ revokedAt: sql`coalesce(${servicesTable.revokedAt}, now())`, updatedAt: sql`now()` })
        .where(eq(servicesTable.name, name)).returning({ name: servicesTable.name })
      if (rows.length === 0) throw new NotFoundError('Service')
      await tx.update(credentialsTable).set({ revokedAt: sql`now()` })
        .where(and(eq(credentialsTable.service, name), isNull(credentialsTable.revokedAt)))
    })
    return await this.require(name)
  }

  /** Records a new credential for an active service and signs it (`jti` = its id). */
  async issueCredential (name: string, issue: TokenIssuer, ttl = DEFAULT_CREDENTIAL_TTL): Promise<IssuedCredential> {
    const id = randomUUID()
    const row = await this.#db.transaction(async (tx) => {
      const [service] = await tx.select({ revokedAt: servicesTable.revokedAt }).from(servicesTable).where(eq(servicesTable.name, name)).for('share')
      if (service === undefined) throw new NotFoundError('Service')
      if (service.revokedAt !== null) throw new ConflictError(`service ${name} is revoked; register it again`)
      const [inserted] = await tx.insert(credentialsTable).values({ id, service: name, expiresAt: new Date(Date.now() + ttl * 1000) }).returning()
      return inserted as typeof credentialsTable.$inferSelect
    })
    const token = issue({ sub: `svc:${name}`, roles: [...CREDENTIAL_ROLES], scope: CREDENTIAL_SCOPE, jti: id }, ttl)
    return { id, token, createdAt: row.createdAt.toISOString(), expiresAt: row.expiresAt.toISOString(), revokedAt: null }
  }

  async revokeCredential (name: string, id: string): Promise<Service> {
    const rows = await this.#db.update(credentialsTable).set({ revokedAt: sql`coalesce(${credentialsTable.revokedAt}, now())` })
      .where(and(eq(credentialsTable.service, name), eq(credentialsTable.id, id))).returning({ id: credentialsTable.id })
    if (rows.length === 0) {
      await this.require(name)
      throw new NotFoundError('Credential')
    }
    return await this.require(name)
  }

  /**
   * The registration behind a credential, when the credential is live: the service is not
   * revoked and the credential is known, not revoked and not expired. `null` otherwise.
   */
  async live (name: string, id: string): Promise<Pick<Service, 'name' | 'scopes' | 'audiences'> | null> {
    const [row] = await this.#db.select({ name: servicesTable.name, scopes: servicesTable.scopes, audiences: servicesTable.audiences })
      .from(credentialsTable).innerJoin(servicesTable, eq(servicesTable.name, credentialsTable.service))
      .where(and(eq(credentialsTable.id, id), eq(credentialsTable.service, name), isNull(credentialsTable.revokedAt), isNull(servicesTable.revokedAt), gt(credentialsTable.expiresAt, sql`now()`)))
    return row ?? null
  }
}
