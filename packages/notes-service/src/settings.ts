// Per-tenant settings: the registry's `config.notes`, typed, merged with defaults, validated.
import { defineTenantConfig, type TenantConfig } from '@platform/multitenant'

export interface NotesSettings {
  /** Notes a tenant may keep. */
  maxNotes: number
  /** Longest body, in characters (never more than the service's own limit). */
  maxBodyLength: number
}

/** The service's own ceiling on a body, whatever a tenant's settings say. */
export const BODY_LIMIT = 100_000

/** The settings view; `report` hears once per tenant record whose section is not valid. */
export const notesSettings = (report: (tenant: string, problems: string[]) => void): TenantConfig<NotesSettings> => defineTenantConfig<NotesSettings>({
  service: 'notes',
  defaults: { maxNotes: 10_000, maxBodyLength: 20_000 },
  validate: (value) => {
    const problems: string[] = []
    if (!Number.isInteger(value.maxNotes) || value.maxNotes < 0) problems.push('maxNotes must be a whole number, 0 or more')
    if (!Number.isInteger(value.maxBodyLength) || value.maxBodyLength < 0 || value.maxBodyLength > BODY_LIMIT) problems.push(`maxBodyLength must be a whole number from 0 to ${BODY_LIMIT}`)
    return problems.length > 0 ? { problems } : value
  },
  // A bad stored value is a tenant-side mistake: serve the defaults, say so once per record.
  invalid: 'defaults',
  onInvalid: (tenant, problems) => report(tenant.id, problems)
})
