import { TENANT_ID_PATTERN } from '@platform/multitenant'

export const TENANT_ID = { type: 'string', pattern: TENANT_ID_PATTERN.source, maxLength: 56 } as const
export const DOMAIN = { type: 'string', minLength: 4, maxLength: 253, pattern: '^[A-Za-z0-9.:-]+$' } as const
const JSON_OBJECT = { type: 'object', additionalProperties: true, maxProperties: 100 } as const
const TIER = { type: 'string', enum: ['free', 'standard', 'premium'] } as const
const STATUS = { type: 'string', enum: ['provisioning', 'active', 'trial', 'suspended', 'archived'] } as const
const EMAIL = { type: ['string', 'null'], maxLength: 254, pattern: '^[^\\s@]+@[^\\s@]+\\.[^\\s@]+$' } as const
const LIMITS = { type: 'object', additionalProperties: { type: ['integer', 'null'], minimum: 0 }, maxProperties: 50 } as const

export const tenantSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    status: { type: 'string' },
    tier: { type: 'string' },
    schema: { type: 'string' },
    database: { type: 'string' },
    domains: { type: 'array', items: { type: 'object', properties: { domain: { type: 'string' }, primary: { type: 'boolean' } } } },
    config: { type: 'object', additionalProperties: true },
    limits: { type: 'object', additionalProperties: true },
    metadata: { type: 'object', additionalProperties: true },
    contactEmail: { type: ['string', 'null'] },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
    version: { type: 'integer' }
  }
} as const

export const createBody = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name'],
  examples: [{ id: 'hooli', name: 'Hooli', tier: 'standard', domains: ['mail.hooli.example'], config: { comm: { emailFrom: 'no-reply@mail.hooli.example', smsSenderId: 'HOOLI' } }, limits: { messagesPerMinute: 600 }, contactEmail: 'ops@hooli.example' }],
  properties: {
    id: TENANT_ID,
    name: { type: 'string', minLength: 1, maxLength: 200 },
    tier: TIER,
    status: { type: 'string', enum: ['active', 'trial'] },
    database: { type: 'string', pattern: '^[a-z0-9_-]{1,63}$' },
    domains: { type: 'array', maxItems: 20, items: DOMAIN },
    config: JSON_OBJECT,
    limits: LIMITS,
    metadata: JSON_OBJECT,
    contactEmail: EMAIL
  }
} as const

export const patchBody = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    tier: TIER,
    database: { type: 'string', pattern: '^[a-z0-9_-]{1,63}$' },
    config: JSON_OBJECT,
    limits: LIMITS,
    metadata: JSON_OBJECT,
    contactEmail: EMAIL
  }
} as const

export const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 },
    offset: { type: 'integer', minimum: 0, maximum: 1_000_000, default: 0 },
    status: STATUS,
    tier: TIER,
    q: { type: 'string', maxLength: 100 }
  }
} as const

export const idParams = { type: 'object', required: ['id'], properties: { id: TENANT_ID } } as const
