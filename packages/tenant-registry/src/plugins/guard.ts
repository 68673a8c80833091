import { timingSafeEqual } from 'node:crypto'
import { Ajv } from 'ajv'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { UnauthorizedError, ValidationError } from '../errors.ts'

/** Nesting deeper than this in a request body is refused (config and metadata are small documents). */
export const MAX_BODY_DEPTH = 32

/**
 * What JSON Schema cannot say about a body: how deep it nests, NUL characters (PostgreSQL's text
 * and jsonb refuse them, which would surface as a 500), and numbers beyond what JavaScript and
 * PostgreSQL's integers hold exactly. Iterative, so a hostile depth cannot exhaust the stack.
 */
export function checkBody (body: unknown): void {
  const stack: Array<[unknown, number]> = [[body, 0]]
  while (stack.length > 0) {
    const [value, depth] = stack.pop() as [unknown, number]
    if (typeof value === 'string') {
      if (value.includes('\u0000')) throw new ValidationError('strings must not contain NUL characters')
    } else if (typeof value === 'number') {
      if (!Number.isFinite(value) || Math.abs(value) > Number.MAX_SAFE_INTEGER) throw new ValidationError('numbers must be finite and at most 2^53 - 1 in size')
    } else if (typeof value === 'object' && value !== null) {
      if (depth >= MAX_BODY_DEPTH) throw new ValidationError(`the body nests deeper than ${MAX_BODY_DEPTH} levels`)
      for (const [key, item] of Object.entries(value)) {
        if (key.includes('\u0000')) throw new ValidationError('keys must not contain NUL characters')
        stack.push([item, depth + 1])
      }
    }
  }
}

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
  app.addHook('preValidation', async (request: FastifyRequest) => {
    if (request.body !== undefined && request.body !== null) checkBody(request.body)
  })
}

/** A bearer-token check for operational routes (`/metrics`, `/docs`) when `OPS_TOKEN` is set. */
export function opsGuard (token: string | undefined): (request: FastifyRequest) => Promise<void> {
  const expected = token === undefined ? undefined : Buffer.from(`Bearer ${token}`)
  return async (request) => {
    if (expected === undefined) return
    const given = Buffer.from(request.headers.authorization ?? '')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new UnauthorizedError()
  }
}
