// The console: a static page (console/) that signs in with a token and calls only the public API.
// Served with a strict Content-Security-Policy: its own script and styles, requests to this origin
// only, no framing. No token is needed for the page itself; every call it makes needs one.
import { readFile } from 'node:fs/promises'
import type { FastifyInstance } from 'fastify'

const DIR = new URL('../../console/', import.meta.url)
const FILES = { 'index.html': 'text/html; charset=utf-8', 'console.js': 'text/javascript; charset=utf-8', 'console.css': 'text/css; charset=utf-8' } as const
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

export async function consoleRoutes (app: FastifyInstance): Promise<void> {
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
}
