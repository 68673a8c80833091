// A tenant sends only as itself. An email sender (From, Reply-To) is at a domain the tenant owns
// in the registry, exactly: one of its custom domains (unique across tenants) or
// `<id>.<BASE_DOMAIN>`; or, for From only, it is the platform's default sender. A subdomain is not
// implied: another tenant may own `mail.acme.example` while acme owns `acme.example`. SMS sender
// ids are reserved by the registry (a unique index: one tenant per id, without case), so a stored
// id is always the tenant's own.
// Checked when the configuration is written (PATCH /v1/config) and again before every email is
// handed to a provider, since configuration can reach the registry without this service and a
// domain can be removed after the sender was set.
import type { Tenant } from '@platform/multitenant'
import type { CommSettings } from './settings.ts'

export interface SenderPolicy {
  /** BASE_DOMAIN: `<id>.<BASE_DOMAIN>` is each tenant's own; unset, only custom domains are. */
  baseDomain?: string | undefined
  /** The platform's default sender (COMM_EMAIL_FROM), which any tenant may use; '' when none. */
  emailFrom: string
  /** The platform's default SMS sender id (COMM_SMS_SENDER_ID); '' when none. */
  smsSenderId: string
}

/** The domains `tenant` may send email from, lower case. */
export function senderDomains (tenant: Pick<Tenant, 'id' | 'domains'>, baseDomain: string | undefined): string[] {
  const own = tenant.domains.map((d) => d.domain.toLowerCase())
  if (baseDomain !== undefined) own.push(`${tenant.id}.${baseDomain.toLowerCase()}`)
  return own
}

const same = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase()

/** Why the email senders in `settings` are not `tenant`'s own, one line per field; empty when they are. */
export function senderProblems (settings: Pick<CommSettings, 'emailFrom' | 'replyTo'>, tenant: Pick<Tenant, 'id' | 'domains'>, policy: SenderPolicy): string[] {
  const problems: string[] = []
  const own = senderDomains(tenant, policy.baseDomain)
  for (const field of ['emailFrom', 'replyTo'] as const) {
    const address = settings[field]
    if (address === '' || (field === 'emailFrom' && policy.emailFrom !== '' && same(address, policy.emailFrom))) continue
    const domain = address.slice(address.lastIndexOf('@') + 1).toLowerCase()
    if (own.includes(domain)) continue
    problems.push(`${field} ${address} is not at one of this tenant's domains (${own.length === 0 ? 'it has none' : own.join(', ')})${field === 'emailFrom' ? ' nor the platform\'s default sender' : ''}`)
  }
  return problems
}

/**
 * The settings as they are stored: the platform's own default sender or sender id, written
 * explicitly as From or SMS sender, is stored empty (which means that default), so the registry
 * (which does not know the platform's defaults) keeps it, and no tenant reserves it.
 */
export function storedSenders (settings: CommSettings, policy: SenderPolicy): CommSettings {
  return {
    ...settings,
    emailFrom: policy.emailFrom !== '' && same(settings.emailFrom, policy.emailFrom) ? '' : settings.emailFrom,
    smsSenderId: policy.smsSenderId !== '' && same(settings.smsSenderId, policy.smsSenderId) ? '' : settings.smsSenderId
  }
}
