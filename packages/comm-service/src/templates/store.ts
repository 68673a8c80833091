// Templates in the tenant's schema, through TenantDb: every edit is a new immutable version.
// Locale fallback: the exact locale (`en-GB`), then its language (`en`), then the default.
import createError from '@fastify/error'
import type { TenantDb } from '@platform/multitenant/pg'
import type { RenderPool } from './pool.ts'
import { checkTemplate, TemplateError, type Part } from './render.ts'

export const TemplateNotFoundError = createError<'NOT_FOUND', 404, [string]>('NOT_FOUND', '%s', 404, undefined, false)
export const TemplateExistsError = createError<'CONFLICT', 409, [string]>('CONFLICT', '%s', 409, undefined, false)

export type Channel = 'email' | 'sms' | 'webhook'
export type Variant = Partial<Record<Part, string>>

export interface TemplateInput {
  defaultLocale: string
  variants: Record<string, Variant>
  defaults?: Record<string, unknown>
}

export interface TemplateVersion extends Required<Pick<TemplateInput, 'defaultLocale' | 'variants' | 'defaults'>> {
  name: string
  channel: Channel
  version: number
  createdAt: string
}

export interface Rendered {
  name: string
  version: number
  locale: string
  content: Variant
}

export const LOCALE = /^[a-z]{2,3}(-[A-Z]{2})?$/

/** The parts a channel's template has: email a subject and text and/or html, sms and webhook a body. */
function checkInput (channel: Channel, input: TemplateInput): void {
  const locales = Object.keys(input.variants)
  /* c8 ignore next 3: the routes' schema refuses these first (minProperties, propertyNames); kept for direct callers of the store */
  if (locales.length === 0) throw new TemplateError('variants must name at least one locale')
  for (const locale of locales) {
    if (!LOCALE.test(locale)) throw new TemplateError(`variant ${locale}: a locale is a language (en) or a language and region (en-GB)`)
    const variant = input.variants[locale] as Variant
    const parts = Object.keys(variant) as Part[]
    const allowed: Part[] = channel === 'email' ? ['subject', 'text', 'html'] : ['body']
    for (const part of parts) if (!allowed.includes(part)) throw new TemplateError(`variant ${locale}: ${channel} templates take ${allowed.join(', ')}`)
    if (channel === 'email' && (variant.subject === undefined || (variant.text === undefined && variant.html === undefined))) throw new TemplateError(`variant ${locale}: an email template needs a subject and text or html`)
    /* c8 ignore next: an SMS or webhook variant's only part is its body, and a variant is never empty (schema) */
    if (channel !== 'email' && variant.body === undefined) throw new TemplateError(`variant ${locale}: a ${channel} template needs a body`)
    for (const part of parts) checkTemplate(part, variant[part] as string)
  }
  if (!locales.includes(input.defaultLocale)) throw new TemplateError('defaultLocale must be one of the variants')
}

/** The variant for `locale`: exact, then its language, then the template's default. */
export function pickLocale (version: Pick<TemplateVersion, 'variants' | 'defaultLocale'>, locale?: string): string {
  if (locale !== undefined) {
    if (version.variants[locale] !== undefined) return locale
    const language = locale.split('-')[0] as string
    if (version.variants[language] !== undefined) return language
  }
  return version.defaultLocale
}

interface Row { name: string, channel: Channel, version: number, default_locale: string, variants: string, defaults: string, created_at: string }

const toVersion = (row: Row): TemplateVersion => ({
  name: row.name,
  channel: row.channel,
  version: row.version,
  defaultLocale: row.default_locale,
  variants: JSON.parse(row.variants) as Record<string, Variant>,
  defaults: JSON.parse(row.defaults) as Record<string, unknown>,
  createdAt: row.created_at
})

const SELECT = `select t.name, t.channel, v.version, v.default_locale, v.variants::text as variants, v.defaults::text as defaults, to_json(v.created_at) #>> '{}' as created_at
  from templates t join template_versions v on v.name = t.name`

export class TemplateStore {
  readonly #db: TenantDb<Record<string, unknown>>
  readonly #pool: RenderPool

  constructor (db: TenantDb<Record<string, unknown>>, pool: RenderPool) {
    this.#db = db
    this.#pool = pool
  }

  async create (name: string, channel: Channel, input: TemplateInput): Promise<TemplateVersion> {
    checkInput(channel, input)
    return await this.#db.transaction(async (tx) => {
      const made = await tx.sql`insert into templates (name, channel, current_version) values (${name}, ${channel}, 1) on conflict (name) do nothing returning name`
      if (made.length === 0) throw new TemplateExistsError(`a template named ${name} exists: PUT a new version instead`)
      await tx.sql`insert into template_versions (name, version, default_locale, variants, defaults) values (${name}, 1, ${input.defaultLocale}, ${JSON.stringify(input.variants)}::jsonb, ${JSON.stringify(input.defaults ?? {})}::jsonb)`
      const [row] = await tx.sql.unsafe<Row[]>(`${SELECT} where t.name = $1 and v.version = 1`, [name])
      return toVersion(row as Row)
    })
  }

  /** A new version; the earlier ones stay as they were (messages name the version they used). */
  async update (name: string, input: TemplateInput): Promise<TemplateVersion> {
    return await this.#db.transaction(async (tx) => {
      const [current] = await tx.sql<Array<{ channel: Channel, current_version: number }>>`select channel, current_version from templates where name = ${name} for update`
      if (current === undefined) throw new TemplateNotFoundError(`no template named ${name}`)
      checkInput(current.channel, input)
      const version = current.current_version + 1
      await tx.sql`insert into template_versions (name, version, default_locale, variants, defaults) values (${name}, ${version}, ${input.defaultLocale}, ${JSON.stringify(input.variants)}::jsonb, ${JSON.stringify(input.defaults ?? {})}::jsonb)`
      await tx.sql`update templates set current_version = ${version}, updated_at = now() where name = ${name}`
      const [row] = await tx.sql.unsafe<Row[]>(`${SELECT} where t.name = $1 and v.version = $2`, [name, version])
      return toVersion(row as Row)
    })
  }

  /** One version (the current one by default). */
  async get (name: string, version?: number): Promise<TemplateVersion> {
    const rows = version === undefined
      ? await this.#db.query(`${SELECT} where t.name = $1 and v.version = t.current_version`, [name])
      : await this.#db.query(`${SELECT} where t.name = $1 and v.version = $2`, [name, version])
    const row = rows[0] as unknown as Row | undefined
    if (row === undefined) throw new TemplateNotFoundError(version === undefined ? `no template named ${name}` : `template ${name} has no version ${version}`)
    return toVersion(row)
  }

  async history (name: string): Promise<Array<{ version: number, createdAt: string }>> {
    const rows = await this.#db.query('select version, to_json(created_at) #>> \'{}\' as "createdAt" from template_versions where name = $1 order by version', [name])
    return rows as unknown as Array<{ version: number, createdAt: string }>
  }

  async list (): Promise<Array<{ name: string, channel: Channel, currentVersion: number, updatedAt: string }>> {
    const rows = await this.#db.query('select name, channel, current_version as "currentVersion", to_json(updated_at) #>> \'{}\' as "updatedAt" from templates order by name', [])
    return rows as unknown as Array<{ name: string, channel: Channel, currentVersion: number, updatedAt: string }>
  }

  async remove (name: string): Promise<void> {
    const rows = await this.#db.query('delete from templates where name = $1 returning name', [name])
    if (rows.length === 0) throw new TemplateNotFoundError(`no template named ${name}`)
  }

  /**
   * Renders a version for a locale in the render pool (off the event loop, time-limited, at most
   * a few per tenant at once): the one function behind both preview and sending, so a preview is
   * byte-identical to what is sent.
   */
  async render (name: string, options: { tenant: string, locale?: string | undefined, version?: number | undefined, data: Record<string, unknown> }): Promise<Rendered & { channel: Channel }> {
    const template = await this.get(name, options.version)
    const locale = pickLocale(template, options.locale)
    const content = await this.#pool.render(options.tenant, template.variants[locale] as Variant, options.data, template.defaults)
    return { name, version: template.version, locale, channel: template.channel, content }
  }
}
