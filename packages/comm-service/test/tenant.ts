import type { Tenant } from '@platform/multitenant'

export function makeTenant (id: string): Tenant {
  return { id, name: id, status: 'active', tier: 'standard', schema: `tenant_${id}`, database: 'default', domains: [], config: {}, limits: {}, metadata: {}, contactEmail: null, createdAt: '', updatedAt: '', version: 1 }
}
