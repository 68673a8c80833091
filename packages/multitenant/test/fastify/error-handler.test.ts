// The shared error handler: DESIGN's shape for library, validation, body and database errors, 503
// with Retry-After when the database is gone, and nothing internal in answers or logs.
import { Writable } from 'node:stream'
import { freePort } from '@platform/testkit'
import { pgTable, text } from 'drizzle-orm/pg-core'
import Fastify, { type InjectOptions } from 'fastify'
import pino from 'pino'
import postgres from 'postgres'
import t from 'tap'
import { InvalidOptionError, TenantNotFoundError, TenantUnavailableError } from '../../src/errors.ts'
import { platformErrorHandler } from '../../src/fastify/plugin.ts'
import { TenantDb } from '../../src/pg/index.ts'
import { createPlatformDatabase } from '../pg/fixtures.ts'

const notes = pgTable('notes', { body: text('body') })

t.test('every failure answers in DESIGN\'s shape, without internals', async (t) => {
  const db = await createPlatformDatabase(t)
  const tdb = new TenantDb({ url: db.serviceUrl, max: 2 })
  const raw = postgres(db.serviceUrl, { max: 1, onnotice: () => {} })
  const down = new TenantDb({ url: `postgres://nobody:x@127.0.0.1:${await freePort()}/none`, max: 2 })
  t.teardown(async () => { await tdb.close(); await raw.end(); await down.close() })
  const lines: string[] = []
  const app = Fastify({ loggerInstance: pino({ level: 'warn' }, new Writable({ write (chunk, _e, done) { lines.push(String(chunk)); done() } })), bodyLimit: 100 })
  t.teardown(() => app.close())
  app.setErrorHandler(platformErrorHandler({ retryAfterSeconds: 7 }))
  app.post('/validated', { schema: { body: { type: 'object', required: ['a'], properties: { a: { type: 'string' } } } } }, async () => ({ ok: true }))
  // drizzle outside any tenant scope: the library's TENANT_REQUIRED, wrapped in drizzle's error with the SQL.
  app.get('/unscoped', async () => await tdb.scoped.select().from(notes))
  app.get('/not-found', async () => { throw new TenantNotFoundError() })
  app.get('/bad-value', async () => await raw`select ${'not a number'}::int as n`)
  app.get('/down', async () => await down.query('select 1', [], { tenant: 'acme' }))
  app.get('/bug', async () => await raw.unsafe('select secret_column from no_such_table where token = $1', ['hunter2']))
  app.get('/plain', async () => { throw new Error('something broke') })
  app.get('/option', async () => { throw new InvalidOptionError('a misconfigured part') })
  app.get('/registry-down', async () => { throw new TenantUnavailableError() })
  app.get('/fastify-500', async () => { throw Object.assign(new Error('reply broke'), { code: 'FST_ERR_SOMETHING', statusCode: 500 }) })
  // The driver's own connection loss (the session ends under the query).
  // (A pool of its own: postgres.js hands a dead connection's error to whatever comes next, end() included.)
  const victim = postgres(db.serviceUrl, { max: 1, onnotice: () => {} })
  t.teardown(async () => { await victim.end({ timeout: 0 }).catch(() => {}) })
  app.get('/terminated', async () => await victim`select pg_terminate_backend(pg_backend_pid())`)

  const cases: Array<[string, InjectOptions, number, string]> = [
    ['schema validation', { method: 'POST', url: '/validated', payload: { a: [] } }, 400, 'VALIDATION_FAILED'],
    ['malformed JSON', { method: 'POST', url: '/validated', headers: { 'content-type': 'application/json' }, payload: '{"a":' }, 400, 'VALIDATION_FAILED'],
    ['a body too large', { method: 'POST', url: '/validated', payload: { a: 'x'.repeat(200) } }, 413, 'PAYLOAD_TOO_LARGE'],
    ['an unsupported media type', { method: 'POST', url: '/validated', headers: { 'content-type': 'text/xml' }, payload: '<a/>' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['TENANT_REQUIRED wrapped by drizzle', { url: '/unscoped' }, 400, 'TENANT_REQUIRED'],
    ['a library error', { url: '/not-found' }, 404, 'TENANT_NOT_FOUND'],
    ['a value PostgreSQL refuses', { url: '/bad-value' }, 400, 'VALIDATION_FAILED'],
    ['the database unreachable', { url: '/down' }, 503, 'SERVICE_UNAVAILABLE'],
    ['a failing query', { url: '/bug' }, 500, 'INTERNAL'],
    ['a plain error', { url: '/plain' }, 500, 'INTERNAL'],
    ['a library error that is a server fault', { url: '/option' }, 500, 'INTERNAL'],
    ['the registry unreachable', { url: '/registry-down' }, 503, 'TENANT_UNAVAILABLE'],
    ['a Fastify error of its own', { url: '/fastify-500' }, 500, 'INTERNAL'],
    ['a connection ended by the server', { url: '/terminated' }, 503, 'SERVICE_UNAVAILABLE']
  ]
  for (const [what, request, status, code] of cases) {
    const res = await app.inject(request)
    t.equal(res.statusCode, status, `${what}: ${status}`)
    t.same(Object.keys(res.json()).sort(), ['code', 'error', 'message', 'statusCode'], `${what}: the error shape`)
    t.equal(res.json().code, code, `${what}: ${code}`)
    t.notMatch(res.body, /select|no_such_table|hunter2|postgres:\/\/|at .*\.ts:\d+/i, `${what}: no internals`)
    if (status === 503) t.equal(res.headers['retry-after'], '7', `${what}: Retry-After`)
  }
  // Default Retry-After.
  const plain = Fastify()
  t.teardown(() => plain.close())
  plain.setErrorHandler(platformErrorHandler())
  plain.get('/', async () => { throw new TenantUnavailableError() })
  t.equal((await plain.inject({ url: '/' })).headers['retry-after'], '5')
  const logged = lines.join('')
  t.match(logged, /42P01/, 'the driver\'s code is logged')
  t.match(logged, /something broke/, 'a plain error is logged by its message')
  t.notMatch(logged, /hunter2/, 'never a parameter')
})
