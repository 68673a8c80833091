// The console's files, served without a token under a strict Content-Security-Policy (the browser
// test in packages/stack drives the page itself in chromium).
import t from 'tap'
import { request } from 'undici'
import { startPlatform } from './fixtures.ts'
import { startComm } from './helpers.ts'

t.test('the console: three files, no token needed, locked down', async (t) => {
  const p = await startPlatform(t)
  const { url } = await startComm(t, p)
  for (const [path, type, marker] of [['/console', 'text/html', 'Communication console'], ['/console/console.js', 'text/javascript', 'textContent'], ['/console/console.css', 'text/css', '[hidden]']] as const) {
    const res = await request(url + path)
    t.equal(res.statusCode, 200, path)
    t.match(res.headers['content-type'], type)
    t.match(res.headers['content-security-policy'], /default-src 'none'; script-src 'self'.*connect-src 'self'.*frame-ancestors 'none'/)
    t.equal(res.headers['x-content-type-options'], 'nosniff')
    t.match(await res.body.text(), marker)
  }
  const missing = await request(`${url}/console/other.js`)
  t.equal(missing.statusCode, 404, 'nothing else is served')
  await missing.body.dump()
})

t.test('a sign-in code works once, within its life, and never names the token in a URL', async (t) => {
  const p = await startPlatform(t)
  const { url, app } = await startComm(t, p)
  const redeem = async (code: unknown): Promise<{ status: number, body: any, cache: unknown }> => {
    const res = await request(`${url}/console/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code }) })
    return { status: res.statusCode, body: await res.body.json(), cache: res.headers['cache-control'] }
  }
  const code = app.consoleCodes.issue('the-token')
  t.match(code, /^[\w-]{32}$/, 'a random code, not the token')
  t.match(await redeem(code), { status: 200, body: { token: 'the-token' }, cache: 'no-store' }, 'traded for the token once')
  t.match(await redeem(code), { status: 401, body: { code: 'UNAUTHORIZED', message: /used already or has expired/ } }, 'then spent')
  t.match(await redeem('made-up'), { status: 401, body: { code: 'UNAUTHORIZED' } }, 'a made-up code signs nobody in')
  t.match(await redeem(''), { status: 400, body: { code: 'VALIDATION_FAILED' } })
  const expired = app.consoleCodes.issue('old-token', -1)
  t.match(await redeem(expired), { status: 401 }, 'an expired code is refused')
  // Bounded: past 100 waiting codes, the oldest is dropped.
  const first = app.consoleCodes.issue('first')
  for (let i = 0; i < 100; i++) app.consoleCodes.issue(`t${i}`)
  t.match(await redeem(first), { status: 401 }, 'the oldest waiting code was dropped')
})
