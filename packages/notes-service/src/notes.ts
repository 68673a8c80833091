// The domain: notes in the current tenant's schema, through the library's TenantDb. Nothing
// here names a tenant or a schema: the unit of work does.
import { and, desc, eq, lt, arrayContains, sql } from 'drizzle-orm'
import { bigint, pgTable, text, timestamp } from 'drizzle-orm/pg-core'
import type { TenantDb } from '@platform/multitenant/pg'

export const notes = pgTable('notes', {
  id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
  title: text('title').notNull(),
  body: text('body').notNull(),
  tags: text('tags').array().notNull().default([]),
  author: text('author').notNull().default(''),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'string' }).notNull().defaultNow()
})

export type Note = typeof notes.$inferSelect
export interface NewNote { title: string, body: string, tags: string[], author: string }
export interface NotePatch { title?: string, body?: string, tags?: string[] }
export interface NotePage { items: Note[], next: string | null }

/** Opaque page cursors: the last id seen, base64url. */
export function encodeCursor (id: number): string {
  return Buffer.from(String(id)).toString('base64url')
}
export function decodeCursor (cursor: string): number | null {
  const text = Buffer.from(cursor, 'base64url').toString()
  return /^[1-9]\d{0,15}$/.test(text) ? Number(text) : null
}

const columns = { id: notes.id, title: notes.title, body: notes.body, tags: notes.tags, author: notes.author, createdAt: notes.createdAt, updatedAt: notes.updatedAt }

export class NoteStore {
  readonly #db: TenantDb<Record<string, unknown>>
  constructor (db: TenantDb<Record<string, unknown>>) {
    this.#db = db
  }

  /** Creates a note unless the tenant already has `limit` notes (then null), in one unit of work. */
  async create (note: NewNote, limit: number): Promise<Note | null> {
    return await this.#db.transaction(async (tx) => {
      // Serialises creations per tenant so that the limit holds under concurrency.
      await tx.execute(sql`lock table notes in share row exclusive mode`)
      const [{ n }] = await tx.select({ n: sql<number>`count(*)::int` }).from(notes) as [{ n: number }]
      if (n >= limit) return null
      const [row] = await tx.insert(notes).values(note).returning(columns)
      return row as Note
    })
  }

  async get (id: number): Promise<Note | undefined> {
    const [row] = await this.#db.scoped.select(columns).from(notes).where(eq(notes.id, id))
    return row
  }

  /** Newest first; `after` is a cursor from the previous page. */
  async list (options: { limit: number, cursor?: number | undefined, tag?: string | undefined }): Promise<NotePage> {
    const conditions = [
      options.cursor === undefined ? undefined : lt(notes.id, options.cursor),
      options.tag === undefined ? undefined : arrayContains(notes.tags, [options.tag])
    ]
    const rows = await this.#db.scoped.select(columns).from(notes).where(and(...conditions)).orderBy(desc(notes.id)).limit(options.limit + 1)
    const items = rows.slice(0, options.limit)
    return { items, next: rows.length > options.limit ? encodeCursor((items.at(-1) as Note).id) : null }
  }

  async update (id: number, patch: NotePatch): Promise<Note | undefined> {
    const [row] = await this.#db.scoped.update(notes).set({ ...patch, updatedAt: sql`now()` }).where(eq(notes.id, id)).returning(columns)
    return row
  }

  async remove (id: number): Promise<boolean> {
    const rows = await this.#db.scoped.delete(notes).where(eq(notes.id, id)).returning({ id: notes.id })
    return rows.length === 1
  }
}
