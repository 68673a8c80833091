// What the registry checks in a tenant's `config` before storing it, whoever writes it (a
// platform admin, a tenant's owner straight at the API, a service forwarding its users' change,
// the CLI): the whole document is bounded in size, and the sections the registry knows are checked
// against their JSON schema and against what the tenant owns. Unknown sections are stored as sent
// (a service may add its own), within the size bound.
import { Ajv, type ErrorObject } from 'ajv'
import { ValidationError } from './errors.ts'

/** A tenant's whole `config`, serialized, is at most this many bytes. */
export const MAX_CONFIG_BYTES = 64 * 1024

// The comm-service's section, as its `PATCH /v1/config` writes it (its settings.ts and
// routes/config.ts): every field optional (the service merges its defaults), nothing else allowed.
const SEALED = '^$|^v1\\.[A-Za-z0-9_-]{1,32}\\.[A-Za-z0-9_-]{16}\\.[A-Za-z0-9_-]{22,}$'
const SENDER_EMAIL = '^$|^[^\\s@<>",;]{1,64}@[^\\s@<>",;]{1,255}$'
const TIME = { type: 'string', maxLength: 40 } as const

export const COMM_SECTION_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    emailFrom: { type: 'string', maxLength: 320, pattern: SENDER_EMAIL },
    emailFromName: { type: 'string', maxLength: 100, pattern: '^[^\\r\\n"<>@]*$' },
    replyTo: { type: 'string', maxLength: 320, pattern: SENDER_EMAIL },
    smsSenderId: { type: 'string', pattern: '^$|^[A-Za-z0-9 ]{1,11}$|^\\+[1-9]\\d{6,14}$' },
    providers: {
      type: 'object',
      additionalProperties: false,
      properties: {
        email: { enum: ['', 'log', 'smtp'] },
        sms: { enum: ['', 'log', 'sms-http'] },
        webhook: { enum: ['', 'webhook', 'log'] }
      }
    },
    smtp: {
      type: 'object',
      additionalProperties: false,
      properties: {
        host: { type: 'string', maxLength: 253, pattern: '^$|^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$' },
        port: { type: 'integer', minimum: 0, maximum: 65535 },
        secure: { type: 'boolean' },
        user: { type: 'string', maxLength: 256, pattern: '^[^\\r\\n]*$' },
        password: { type: 'string', maxLength: 4096, pattern: SEALED },
        passwordSetAt: TIME,
        // Credentials without TLS to the tenant's own server (its explicit choice; the platform must allow it too).
        allowPlaintextAuth: { type: 'boolean' }
      }
    },
    smsHttp: {
      type: 'object',
      additionalProperties: false,
      properties: {
        url: { type: 'string', maxLength: 2048, pattern: '^$|^https?://[^/?#]+' },
        token: { type: 'string', maxLength: 8192, pattern: SEALED },
        tokenSetAt: TIME
      }
    },
    webhook: {
      type: 'object',
      additionalProperties: false,
      properties: {
        secrets: {
          type: 'array',
          maxItems: 2,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['secret', 'createdAt', 'expiresAt'],
            properties: { secret: { type: 'string', maxLength: 4096, minLength: 1, pattern: SEALED }, createdAt: TIME, expiresAt: { anyOf: [TIME, { type: 'null' }] } }
          }
        }
      }
    }
  }
} as const

// What a pattern stands for, in words, by the field's path inside the section.
const MEANING: Record<string, string> = {
  '/emailFrom': 'an email address (empty: the platform\'s default sender)',
  '/replyTo': 'an email address (empty: none)',
  '/emailFromName': 'at most 100 characters, without line breaks, quotes, angle brackets or "@" (a name must not read as another address)',
  '/smsSenderId': '1 to 11 letters, digits or spaces, or an E.164 number (empty: the platform\'s default)',
  '/smtp/host': 'a host name or an IPv4 address',
  '/smtp/user': 'one line',
  '/smtp/password': 'set through the comm-service (it stores it encrypted)',
  '/smsHttp/url': 'an http(s) URL',
  '/smsHttp/token': 'set through the comm-service (it stores it encrypted)',
  '/webhook/secrets/secret': 'generated through the comm-service (rotateSecret)'
}

const ajv = new Ajv({ allErrors: true, strict: true })
const validateComm = ajv.compile(COMM_SECTION_SCHEMA)

function describe (error: ErrorObject): string {
  const path = error.instancePath
  const field = `config.comm${path.replaceAll('/', '.')}`
  if (error.keyword === 'additionalProperties') return `${field}.${String(error.params.additionalProperty)} is not a setting`
  // Every field with a pattern has its meaning above; ajv words the other keywords itself.
  if (error.keyword === 'pattern') return `${field} must be ${MEANING[path.replace(/\/\d+\//g, '/')] as string}`
  return `${field} ${error.message as string}`
}

/** Who the section belongs to: the tenant's id, its custom domains, and the platform's base domain. */
export interface ConfigOwner {
  id: string
  domains: readonly string[]
  baseDomain?: string | undefined
}

/** The domains a tenant may send email from: its custom domains and `<id>.<BASE_DOMAIN>`. */
export function senderDomains (owner: ConfigOwner): string[] {
  return [...owner.domains, ...(owner.baseDomain === undefined ? [] : [`${owner.id}.${owner.baseDomain}`])]
}

/**
 * Refuses (400 VALIDATION_FAILED, every problem named) a config over MAX_CONFIG_BYTES, and a
 * `comm` section that does not fit its schema or names an email sender at a domain the tenant
 * does not own. `checkComm: false` skips the section (a write that leaves it as it was).
 */
export function checkConfig (config: unknown, owner: ConfigOwner, checkComm = true): void {
  const bytes = Buffer.byteLength(JSON.stringify(config))
  if (bytes > MAX_CONFIG_BYTES) throw new ValidationError(`config is at most ${MAX_CONFIG_BYTES} bytes of JSON (this one would be ${bytes})`)
  const comm = (config as Record<string, unknown>).comm
  if (!checkComm || comm === undefined) return
  if (!validateComm(comm)) throw new ValidationError((validateComm.errors as ErrorObject[]).slice(0, 10).map(describe).join('; '))
  const senders = comm as { emailFrom?: string, replyTo?: string }
  const own = senderDomains(owner)
  const problems: string[] = []
  for (const field of ['emailFrom', 'replyTo'] as const) {
    const address = senders[field]
    if (address === undefined || address === '') continue
    const domain = address.slice(address.lastIndexOf('@') + 1).toLowerCase()
    if (!own.includes(domain)) {
      problems.push(`config.comm.${field} must be at one of this tenant's domains (${own.length === 0 ? 'it has none: add a custom domain first' : own.join(', ')}), or empty for the platform's default sender; ${domain} is not one`)
    }
  }
  if (problems.length > 0) throw new ValidationError(problems.join('; '))
}
