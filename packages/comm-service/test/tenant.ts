import type { Tenant } from '@platform/multitenant'
import type { SendContext } from '../src/delivery/providers/types.ts'
import type { CommSettings } from '../src/settings.ts'

export function makeTenant (id: string): Tenant {
  return { id, name: id, status: 'active', tier: 'standard', schema: `tenant_${id}`, database: 'default', domains: [], config: {}, limits: {}, metadata: {}, contactEmail: null, createdAt: '', updatedAt: '', version: 1 }
}

export function makeSettings (overrides: Partial<CommSettings> = {}): CommSettings {
  return { emailFrom: 'no-reply@acme.example.com', emailFromName: '', replyTo: '', smsSenderId: 'ACME', providers: { email: '', sms: '', webhook: '' }, smtp: { host: '', port: 0, secure: false, user: '', password: '', passwordSetAt: '' }, smsHttp: { url: '', token: '', tokenSetAt: '' }, webhook: { secrets: [] }, ...overrides }
}

/** A send context for a tenant id, with settings (an acme-like identity by default). */
export function makeContext (id: string, overrides: Partial<CommSettings> = {}): SendContext {
  return { tenant: makeTenant(id), settings: makeSettings(overrides) }
}
