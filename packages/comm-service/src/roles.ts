// Who may do what, from the token's roles; each route also names its scope. The README's role
// table is this file: owner and admin change configuration and templates, manager sends and edits
// templates, member sends and reads; redrive of a dead-lettered message needs admin or owner. A
// service calling for a tenant (a tenant-bound token from the registry's token exchange, role
// `service`) sends, reads and cancels messages, within the scopes its token carries.
import type { RouteAuth } from '@platform/multitenant/fastify'

export const TENANT_ROLES = ['owner', 'admin', 'manager', 'member'] as const
export type TenantRole = typeof TENANT_ROLES[number]

const EVERYONE: TenantRole[] = ['owner', 'admin', 'manager', 'member']
const EDITORS: TenantRole[] = ['owner', 'admin', 'manager']
const ADMINS: TenantRole[] = ['owner', 'admin']
/** Tenant users and services acting for the tenant (the token's tenant claim binds both). */
const SENDERS: string[] = [...EVERYONE, 'service']

/** Each kind of route's rule (`config.auth`). */
export const ACCESS: Record<'send' | 'read' | 'readTemplates' | 'redrive' | 'editTemplates' | 'readConfig' | 'writeConfig' | 'platformAdmin', RouteAuth> = {
  send: { scope: 'messages:send', roles: SENDERS },
  read: { scope: 'messages:read', roles: SENDERS },
  readTemplates: { scope: 'messages:read', roles: EVERYONE },
  redrive: { scope: 'messages:send', roles: ADMINS },
  editTemplates: { scope: 'templates:write', roles: EDITORS },
  readConfig: { scope: 'messages:read', roles: EVERYONE },
  writeConfig: { scope: 'config:write', roles: ADMINS },
  platformAdmin: { admin: true }
}
