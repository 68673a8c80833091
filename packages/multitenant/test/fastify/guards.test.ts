// The body checks and the operational routes' token, as every service uses them.
import Fastify from 'fastify'
import t from 'tap'
import { checkBody, checkBodyHook, MAX_BODY_DEPTH, opsGuard, platformErrorHandler } from '../../src/fastify/plugin.ts'

const nested = (levels: number): string => '{"a":'.repeat(levels) + '1' + '}'.repeat(levels)

t.test('checkBody refuses what JSON Schema cannot say, without recursion', async (t) => {
  t.doesNotThrow(() => checkBody(JSON.parse(nested(MAX_BODY_DEPTH - 1))), 'nesting within the limit')
  t.throws(() => checkBody(JSON.parse(nested(100_000))), { code: 'VALIDATION_FAILED', statusCode: 400, message: /nests deeper than 32 levels/ }, '100,000 levels: a 400, not a stack overflow')
  t.throws(() => checkBody([[['x']]], 2), { code: 'VALIDATION_FAILED' }, 'a depth of the caller\'s choosing')
  t.throws(() => checkBody({ a: 'x\u0000y' }), { code: 'VALIDATION_FAILED', message: /NUL/ })
  t.throws(() => checkBody({ 'a\u0000': 1 }), { code: 'VALIDATION_FAILED', message: /keys/ })
  t.throws(() => checkBody({ a: 2 ** 60 }), { code: 'VALIDATION_FAILED', message: /2\^53/ })
  t.throws(() => checkBody([Number.NaN]), { code: 'VALIDATION_FAILED' })
  t.doesNotThrow(() => checkBody({ a: [1, 'two', null, true, { b: -3.5 }] }))
})

t.test('checkBodyHook and opsGuard on an app', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.setErrorHandler(platformErrorHandler())
  app.addHook('preValidation', checkBodyHook)
  app.post('/echo', async (request) => ({ body: request.body }))
  app.get('/metrics', { onRequest: opsGuard('an-ops-token-long-enough') }, async () => 'ok')
  app.get('/open', { onRequest: opsGuard(undefined) }, async () => 'ok')
  const deep = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json' }, payload: nested(10_000) })
  t.equal(deep.statusCode, 400)
  t.match(deep.json(), { statusCode: 400, code: 'VALIDATION_FAILED', error: 'Bad Request' })
  t.equal((await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json' }, payload: '{"a":1}' })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/echo' })).statusCode, 200, 'no body: nothing to check')
  t.match((await app.inject({ url: '/metrics' })).json(), { statusCode: 401, code: 'UNAUTHORIZED' })
  t.equal((await app.inject({ url: '/metrics', headers: { authorization: 'Bearer an-ops-token-long-enougH' } })).statusCode, 401, 'a wrong token of the same length')
  t.equal((await app.inject({ url: '/metrics', headers: { authorization: 'Bearer an-ops-token-long-enough' } })).statusCode, 200)
  t.equal((await app.inject({ url: '/open' })).statusCode, 200, 'no token configured: open')
})
