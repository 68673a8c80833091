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
