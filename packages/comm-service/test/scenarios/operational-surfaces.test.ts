// Issue 17, parts 6 and 7: the operational routes need the ops token when one is set, and hostile
// input (deeply nested JSON, a leap second) is a 400 in the platform's shape, never a 500.
import t from 'tap'
import { request } from 'undici'
import { startPlatform, tid } from '../fixtures.ts'
import { startComm } from '../helpers.ts'

const OPS = 'an-ops-token-for-the-scrapers'

t.test('/metrics, /docs and /docs/json need the ops token when one is set', async (t) => {
  const p = await startPlatform(t)
  const guarded = await startComm(t, p, { opsToken: OPS })
  for (const path of ['/metrics', '/docs/json', '/docs']) {
    const none = await request(guarded.url + path)
    t.equal(none.statusCode, 401, `${path} without a token`)
    t.match(await none.body.json(), { statusCode: 401, code: 'UNAUTHORIZED', error: 'Unauthorized', message: String })
    const wrong = await request(guarded.url + path, { headers: { authorization: `Bearer ${OPS.replace(/.$/, 'x')}` } })
    t.equal(wrong.statusCode, 401, `${path} with a wrong token of the same length`)
    await wrong.body.dump()
    const right = await request(guarded.url + path, { headers: { authorization: `Bearer ${OPS}` } })
    t.equal(right.statusCode, 200, `${path} with the token`)
    await right.body.dump()
  }
  const docs = await request(`${guarded.url}/docs/json`, { headers: { authorization: `Bearer ${OPS}` } })
  t.ok(((await docs.body.json()) as { paths: Record<string, unknown> }).paths['/v1/messages'] !== undefined, 'the OpenAPI document, with the token')
  const health = await request(`${guarded.url}/health`)
  t.equal(health.statusCode, 200, 'probes stay open')
  await health.body.dump()

  // Without OPS_TOKEN the routes stay open (an operator who set none).
  const open = await startComm(t, p)
  const metrics = await request(`${open.url}/metrics`)
  t.equal(metrics.statusCode, 200)
  await metrics.body.dump()
})

t.test('deeply nested JSON and a leap second are 400 VALIDATION_FAILED, not 500', async (t) => {
  const p = await startPlatform(t)
  const a = tid('hostile')
  await p.createTenant(a)
  const { call } = await startComm(t, p)
  const admin = { roles: ['admin'], scope: 'messages:send messages:read templates:write config:write' }
  t.equal((await call('POST', '/v1/templates', a, { name: 'hello', channel: 'sms', defaultLocale: 'en', variants: { en: { body: 'Hi {{ who }}' } }, defaults: { who: 'you' } }, admin)).status, 201)
  // 10,000 levels: JSON.parse takes it, a recursive walker (JSON.stringify in the size checks) does not.
  const deep = '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000)
  const shape = { statusCode: 400, code: 'VALIDATION_FAILED', error: 'Bad Request', message: /nests deeper than/ }
  const cases: Array<[string, string, string]> = [
    ['POST /v1/messages (metadata)', '/v1/messages', `{"channel":"sms","to":"+15550100","body":"hi","metadata":${deep}}`],
    ['POST /v1/messages (template data)', '/v1/messages', `{"channel":"sms","to":"+15550100","template":{"name":"hello","data":${deep}}}`],
    ['POST /v1/templates/:name/preview', '/v1/templates/hello/preview', `{"data":${deep}}`],
    ['POST /v1/templates (defaults)', '/v1/templates', `{"name":"deep","channel":"sms","defaultLocale":"en","variants":{"en":{"body":"x"}},"defaults":${deep}}`]
  ]
  for (const [name, path, body] of cases) {
    const res = await call('POST', path, a, body, admin)
    t.equal(res.status, 400, name)
    t.match(res.body, shape, `${name}: the platform's error shape`)
  }
  const config = await call('PATCH', '/v1/config', a, `{"providers":${deep}}`, admin)
  t.match(config, { status: 400, body: shape }, 'PATCH /v1/config')

  // 2016-12-31T23:59:60Z was a real leap second; JSON Schema's date-time admits it, Date does not.
  for (const scheduledAt of ['2016-12-31T23:59:60Z', `${new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)}T23:59:60Z`]) {
    const res = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'hi', scheduledAt })
    t.equal(res.status, 400, `scheduledAt ${scheduledAt}`)
    t.match(res.body, { statusCode: 400, code: 'VALIDATION_FAILED', error: 'Bad Request', message: /scheduledAt/ })
  }
  // Nesting within the limit still works.
  const fine = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'hi', metadata: { a: { b: { c: 1 } } } })
  t.equal(fine.status, 202)
})
