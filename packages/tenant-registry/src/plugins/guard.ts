import { Ajv } from 'ajv'
import type { FastifyInstance } from 'fastify'
import { checkBodyHook } from '@platform/multitenant/fastify'

// The body checks and the operational routes' token check are the library's (one copy for every service).
export { checkBody, MAX_BODY_DEPTH, opsGuard } from '@platform/multitenant/fastify'

/**
 * Validation at the edge without type coercion for bodies: `{"id": 12}` is not the tenant "12",
 * and `{"id": ["a"]}` is not "a". Query strings and path parameters are text by nature, so they
 * are coerced (`?limit=10`).
 */
export function strictValidation (app: FastifyInstance): void {
  const common = { removeAdditional: false, allErrors: false, useDefaults: true, strict: false } as const
  const bodies = new Ajv({ ...common, coerceTypes: false })
  const text = new Ajv({ ...common, coerceTypes: 'array' })
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodies : text).compile(schema))
  app.addHook('preValidation', checkBodyHook)
}
