// The console: a static page (console/) that signs in with a token and calls only the public API.
// Served with a strict Content-Security-Policy: its own script and styles, requests to this origin
// only, no framing. No token is needed for the page itself; every call it makes needs one.
//
// A sign-in link never carries the token: it carries a one-time code (`/console#code=…`) that the
// page trades once for the token (POST /console/session) and then removes from the address bar.
// The link a browser keeps in its history is spent by then, so it signs nobody in.
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import createError from '@fastify/error'
import type { FastifyInstance } from 'fastify'

const DIR = new URL('../../console/', import.meta.url)
const FILES = { 'index.html': 'text/html; charset=utf-8', 'console.js': 'text/javascript; charset=utf-8', 'console.css': 'text/css; charset=utf-8' } as const
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

const SpentCodeError = createError<'UNAUTHORIZED', 401, []>('UNAUTHORIZED', 'This sign-in link was used already or has expired: sign in with a token', 401, undefined, false)

/** Default life of a sign-in code, in ms. */
export const DEFAULT_CODE_TTL = 15 * 60_000
/** Codes waiting to be used at once; past it the oldest is dropped. */
const MAX_CODES = 100

/** One-time sign-in codes, in this process's memory (a code is used on the instance that issued it). */
export class ConsoleCodes {
  readonly #codes = new Map<string, { token: string, expires: number }>()

  /** A code that signs in as `token` once, within `ttl` ms. */
  issue (token: string, ttl = DEFAULT_CODE_TTL): string {
    const code = randomBytes(24).toString('base64url')
    if (this.#codes.size >= MAX_CODES) this.#codes.delete(this.#codes.keys().next().value as string)
    this.#codes.set(code, { token, expires: Date.now() + ttl })
    return code
  }

  /** The token behind `code`, once; `undefined` for an unknown, used or expired code. */
  redeem (code: string): string | undefined {
    const entry = this.#codes.get(code)
    this.#codes.delete(code)
    return entry === undefined || entry.expires < Date.now() ? undefined : entry.token
  }
}

export async function consoleRoutes (app: FastifyInstance, options: { codes: ConsoleCodes }): Promise<void> {
  const files = new Map<string, string>()
  for (const name of Object.keys(FILES)) files.set(name, await readFile(new URL(name, DIR), 'utf8'))
  const OPEN = { tenant: false, auth: false } as const
  for (const [path, name] of [['/console', 'index.html'], ['/console/console.js', 'console.js'], ['/console/console.css', 'console.css']] as const) {
    app.get(path, { config: OPEN, schema: { hide: true } }, async (_request, reply) => await reply
      .type(FILES[name])
      .header('content-security-policy', CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
      .send(files.get(name)))
  }
  app.post<{ Body: { code: string } }>('/console/session', {
    config: OPEN,
    schema: { hide: true, body: { type: 'object', additionalProperties: false, required: ['code'], properties: { code: { type: 'string', minLength: 1, maxLength: 64 } } } }
  }, async (request, reply) => {
    const token = options.codes.redeem(request.body.code)
    if (token === undefined) throw new SpentCodeError()
    return await reply.header('cache-control', 'no-store').send({ token })
  })
}
