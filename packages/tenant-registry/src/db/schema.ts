import type { Tenant } from '@platform/multitenant'
import { sql } from 'drizzle-orm'
import { bigserial, boolean, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core'

// The registry's public tables as drizzle sees them. The SQL migrations in ./migrations create
// them; a test compares both so they cannot drift apart.

export const tenants = pgTable('tenants', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  status: text('status', { enum: ['provisioning', 'active', 'trial', 'suspended', 'archived'] }).notNull(),
  tier: text('tier', { enum: ['free', 'standard', 'premium'] }).notNull(),
  schemaName: text('schema_name').notNull().unique(),
  database: text('database').notNull().default('default'),
  config: jsonb('config').$type<Tenant['config']>().notNull().default({}),
  limits: jsonb('limits').$type<Tenant['limits']>().notNull().default({}),
  metadata: jsonb('metadata').$type<Tenant['metadata']>().notNull().default({}),
  contactEmail: text('contact_email'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  version: integer('version').notNull().default(1)
}, (table) => [
  index('tenants_status_idx').on(table.status),
  // An SMS sender id is one tenant's, without case (migration 0003).
  uniqueIndex('tenants_sms_sender_id_key').on(sql`lower(${table.config} #>> '{comm,smsSenderId}')`).where(sql`(${table.config} #>> '{comm,smsSenderId}') <> ''`)
])

export const domains = pgTable('domains', {
  domain: text('domain').primaryKey(),
  tenantId: text('tenant_id').notNull().references(() => tenants.id, { onDelete: 'cascade' }),
  isPrimary: boolean('is_primary').notNull().default(false),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow()
}, (table) => [index('domains_tenant_idx').on(table.tenantId)])

export const tenantChanges = pgTable('tenant_changes', {
  seq: bigserial('seq', { mode: 'number' }).primaryKey(),
  tenantId: text('tenant_id').notNull(),
  type: text('type').notNull(),
  at: timestamp('at', { withTimezone: true }).notNull().defaultNow()
})

export const services = pgTable('services', {
  name: text('name').primaryKey(),
  scopes: text('scopes').array().notNull().default([]),
  audiences: text('audiences').array().notNull().default([]),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  revokedAt: timestamp('revoked_at', { withTimezone: true }),
  version: integer('version').notNull().default(1)
})

export const serviceCredentials = pgTable('service_credentials', {
  id: text('id').primaryKey(),
  service: text('service').notNull().references(() => services.name, { onDelete: 'cascade' }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  revokedAt: timestamp('revoked_at', { withTimezone: true })
}, (table) => [index('service_credentials_service_idx').on(table.service)])
