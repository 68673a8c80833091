import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { databaseError, isConnectionError } from '../errors.ts'

export interface ErrorHandlerOptions {
  /** Seconds in `Retry-After` on 503 answers. Default: 5. */
  retryAfterSeconds?: number
}

/** DESIGN's error shape: Fastify's, plus a stable `code`. */
export interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
}

const CODE = /^[A-Z][A-Z0-9_]*$/

/**
 * The first error in the `cause` chain that carries its own answer (a `statusCode` and a code):
 * a library error wrapped by drizzle's `DrizzleQueryError` (whose message is the SQL text) is
 * answered as itself, never as a 500.
 */
function answerable (err: unknown): (Error & { statusCode: number, code: string }) | undefined {
  for (let e = err; typeof e === 'object' && e !== null; e = (e as { cause?: unknown }).cause) {
    const { statusCode, code } = e as { statusCode?: unknown, code?: unknown }
    if (typeof statusCode === 'number' && typeof code === 'string' && CODE.test(code) && !code.startsWith('FST_')) {
      return e as Error & { statusCode: number, code: string }
    }
  }
  return undefined
}

/**
 * A Fastify error handler that answers in DESIGN's shape and never leaks internals:
 * - schema validation → 400 `VALIDATION_FAILED`; Fastify's own body errors → 415
 *   `UNSUPPORTED_MEDIA_TYPE`, 413 `PAYLOAD_TOO_LARGE`, else 400 `VALIDATION_FAILED`;
 * - a library or service error anywhere in the cause chain → its own status, code and message;
 * - a value PostgreSQL refuses (SQLSTATE class 22) → 400 `VALIDATION_FAILED`;
 * - a lost database connection, `SERVICE_UNAVAILABLE` or `TENANT_UNAVAILABLE` → 503 with
 *   `Retry-After`;
 * - anything else → 500 `INTERNAL` with a generic message. The log gets the driver's code and
 *   message, never SQL text or parameters.
 */
export function platformErrorHandler (options: ErrorHandlerOptions = {}): (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => FastifyReply {
  const retryAfter = String(options.retryAfterSeconds ?? 5)
  const send = (reply: FastifyReply, statusCode: number, code: string, message: string): FastifyReply =>
    reply.code(statusCode).send({ statusCode, code, error: STATUS_CODES[statusCode] as string, message } satisfies ErrorBody)
  return function platformErrors (error, request, reply) {
    if (error.validation !== undefined) return send(reply, 400, 'VALIDATION_FAILED', error.message)
    const status = error.statusCode ?? 500
    if (error.code?.startsWith('FST_') === true && status < 500) {
      return send(reply, status, status === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : status === 413 ? 'PAYLOAD_TOO_LARGE' : 'VALIDATION_FAILED', error.message)
    }
    const own = answerable(error)
    const database = databaseError(error)
    if (own !== undefined && own.statusCode < 500) return send(reply, own.statusCode, own.code, own.message)
    if (database?.code.startsWith('22') === true) return send(reply, 400, 'VALIDATION_FAILED', 'A value is out of range or not valid')
    if (own?.code === 'TENANT_UNAVAILABLE' || isConnectionError(error)) {
      request.log.warn({ err: database ?? { code: own?.code ?? error.code, message: own?.message ?? error.message } }, 'dependency unavailable')
      reply.header('retry-after', retryAfter)
      return send(reply, 503, own?.code ?? 'SERVICE_UNAVAILABLE', own?.message ?? 'The database is unavailable, try again later')
    }
    request.log.error({ err: database ?? { type: error.name, code: error.code, message: error.message } }, 'request failed')
    return send(reply, 500, 'INTERNAL', 'Internal error')
  }
}
