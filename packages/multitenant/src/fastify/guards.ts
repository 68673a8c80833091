// Checks every service puts in front of its routes: what JSON Schema cannot say about a body, and
// the bearer token of operational routes (`/metrics`, `/docs`).
import { timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { UnauthorizedError } from '../claims.ts'
import { ValidationFailedError } from '../errors.ts'

/** Nesting deeper than this in a request body is refused (bodies are small documents). */
export const MAX_BODY_DEPTH = 32

/**
 * What JSON Schema cannot say about a body: how deep it nests (`JSON.stringify` and other
 * recursive walkers overflow the stack on a hostile depth, which would surface as a 500), NUL
 * characters (PostgreSQL's text and jsonb refuse them) and numbers beyond what JavaScript and
 * PostgreSQL's integers hold exactly. Iterative, so the check itself cannot exhaust the stack.
 * Throws `VALIDATION_FAILED`.
 */
export function checkBody (body: unknown, maxDepth: number = MAX_BODY_DEPTH): void {
  const stack: Array<[unknown, number]> = [[body, 0]]
  while (stack.length > 0) {
    const [value, depth] = stack.pop() as [unknown, number]
    if (typeof value === 'string') {
      if (value.includes('\u0000')) throw new ValidationFailedError('strings must not contain NUL characters')
    } else if (typeof value === 'number') {
      if (!Number.isFinite(value) || Math.abs(value) > Number.MAX_SAFE_INTEGER) throw new ValidationFailedError('numbers must be finite and at most 2^53 - 1 in size')
    } else if (typeof value === 'object' && value !== null) {
      if (depth >= maxDepth) throw new ValidationFailedError(`the body nests deeper than ${maxDepth} levels`)
      for (const [key, item] of Object.entries(value)) {
        if (key.includes('\u0000')) throw new ValidationFailedError('keys must not contain NUL characters')
        stack.push([item, depth + 1])
      }
    }
  }
}

/** A `preValidation` hook running `checkBody` on every request that has a parsed body. */
export async function checkBodyHook (request: FastifyRequest): Promise<void> {
  if (request.body !== undefined && request.body !== null) checkBody(request.body)
}

/**
 * A bearer-token check for operational routes (`/metrics`, `/docs`), compared in constant time:
 * `UNAUTHORIZED` without `Authorization: Bearer <token>`. Lets everything through when `token`
 * is undefined (an operator who did not set one keeps those routes open).
 */
export function opsGuard (token: string | undefined): (request: FastifyRequest) => Promise<void> {
  const expected = token === undefined ? undefined : Buffer.from(`Bearer ${token}`)
  return async (request) => {
    if (expected === undefined) return
    const given = Buffer.from(request.headers.authorization ?? '')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new UnauthorizedError()
  }
}
