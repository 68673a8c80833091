// The `service` commands against a real database, next to a running registry that exchanges the
// credentials they print: add, list, show, update, token (rotation), revoke one credential or all;
// bad usage; the signing key from the environment or the dev stack's `.data/`.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDecoder } from 'fast-jwt'
import t from 'tap'
import { runCli } from '../src/cli.ts'
import { ensureSigningKey } from '../src/keys.ts'
import { bearer, startRegistry, tid } from './fixtures/registry.ts'

interface Run { code: number, out: string, err: string }

function cli (env: NodeJS.ProcessEnv, cwd = tmpdir()) {
  return async (...argv: string[]): Promise<Run> => {
    let out = ''
    let err = ''
    const code = await runCli(argv, { env, cwd, out: (s) => { out += s }, err: (s) => { err += s } })
    return { code, out, err }
  }
}

const decode = createDecoder({ complete: true })
const lastLine = (text: string): string => text.trim().split('\n').at(-1) as string

t.test('service add, list, show, update, token, revoke', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'registry-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const key = await ensureSigningKey(join(dir, '.data'))
  const r = await startRegistry(t, { config: { jwt: { publicKey: key.publicKey, privateKey: key.privateKey } } })
  const run = cli({ DATABASE_URL: r.url, JWT_PRIVATE_KEY: key.privateKeyPath, JWT_PUBLIC_KEY: key.publicKeyPath })
  const acme = tid('cacme')
  t.equal((await r.app.inject({ method: 'POST', url: '/v1/tenants', headers: bearer(r.admin), payload: { id: acme, name: 'Acme' } })).statusCode, 201)
  const exchange = async (token: string): Promise<number> =>
    (await r.app.inject({ method: 'POST', url: '/v1/token', headers: bearer(token), payload: { tenant: acme, audience: 'comm', scope: 'messages:send' } })).statusCode

  t.same(await run('service', 'list'), { code: 0, out: 'no services\n', err: '' })
  const added = await run('service', 'add', 'orders', '--scopes', 'messages:send,messages:read', '--audiences', 'comm')
  t.equal(added.code, 0, added.err)
  t.match(added.out, /^registered orders: scopes messages:read messages:send; audiences comm\ncredential [0-9a-f-]{36} \(expires .+\); shown once, keep it as the service's SERVICE_TOKEN:\n/)
  const first = lastLine(added.out)
  t.match(decode(first), { header: { alg: 'EdDSA' }, payload: { sub: 'svc:orders', roles: ['service'], scope: 'tokens:exchange tenants:read' } })
  t.equal(await exchange(first), 200, 'the printed credential exchanges at the registry')
  t.match(await run('service', 'add', 'orders', '--scopes', 'messages:send', '--audiences', 'comm'), { code: 1, err: /already registered \(CONFLICT\)/ })

  const list = await run('service', 'list')
  t.match(list.out, /^NAME\s+STATUS\s+SCOPES\s+AUDIENCES\s+CREDENTIALS\norders\s+active\s+messages:read messages:send\s+comm\s+1\n$/)
  t.match(JSON.parse((await run('service', 'list', '--json')).out), { items: [{ name: 'orders', status: 'active' }] })
  const show = await run('service', 'show', 'orders')
  t.match(show.out, /name {8}orders \(token subject svc:orders\)\nstatus {6}active\nscopes {6}messages:read messages:send\naudiences {3}comm\ncredential {2}[0-9a-f-]{36} {2}expires /)
  t.match(await run('service', 'show', 'nobody'), { code: 1, err: 'error: Service not found (NOT_FOUND)\n' })
  t.match(await run('service', 'update', 'orders', '--audiences', 'comm notes'), { code: 0, out: /audiences {3}comm notes\n/ })
  t.match(await run('service', 'update', 'orders', '--scopes', 'messages:send'), { code: 0, out: /scopes {6}messages:send\naudiences {3}comm notes\n/ })
  t.match(await run('service', 'update', 'orders', '--scopes', 'messages:send messages:read', '--audiences', 'comm,notes'), { code: 0, out: /scopes {6}messages:read messages:send\naudiences {3}comm notes\n/ })

  const rotated = JSON.parse((await run('service', 'token', 'orders', '--expires', '600', '--json')).out) as { token: string, id: string }
  t.equal(await exchange(rotated.token), 200, 'a new credential')
  const firstId = (decode(first) as { payload: { jti: string } }).payload.jti
  t.match(await run('service', 'revoke', 'orders', '--credential', firstId), { code: 0, out: `revoked credential ${firstId} of orders\n` })
  t.equal(await exchange(first), 401, 'the revoked credential no longer exchanges')
  t.equal(await exchange(rotated.token), 200, 'the other one does')
  t.match(await run('service', 'revoke', 'orders'), { code: 0, out: 'revoked orders: every credential stops working now\n' })
  t.equal(await exchange(rotated.token), 401)
  t.match(await run('service', 'show', 'orders'), { out: /status {6}revoked since .+\n[\s\S]*0 live credential\(s\)/ })
  t.match(await run('service', 'token', 'orders'), { code: 1, err: /revoked; register it again \(CONFLICT\)/ })

  // The dev stack's key pair under .data/ is found from the working directory, without variables.
  const dev = cli({ DATABASE_URL: r.url }, join(dir, 'sub'))
  const again = await dev('service', 'add', 'billing', '--scopes', '', '--audiences', 'comm')
  t.equal(again.code, 0, again.err)
  t.equal(decode(lastLine(again.out)).header.kid, (await r.app.inject({ url: '/.well-known/jwks.json' })).json().keys[0].kid, 'signed with the dev key')
  t.match(decode(lastLine((await dev('token', '--sub', 'ops', '--role', 'platform-admin')).out)), { header: { alg: 'EdDSA' } }, '`token` uses it too')
  t.match(await dev('service', 'update', 'billing', '--audiences', ''), { code: 0, out: /scopes {6}-\naudiences {3}-\n/ }, 'no scopes, no audiences')
  t.match((await dev('service', 'list')).out, /billing\s+active\s+-\s+-\s+1\n/)
})

t.test('service: bad usage and a missing key', async (t) => {
  const run = cli({ DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' })
  const usage: Array<[string[], RegExp]> = [
    [['service'], /usage: tenant-registry service add\|list/],
    [['service', 'fly', 'x'], /usage/],
    [['service', 'list', 'x'], /usage/],
    [['service', 'show'], /usage/],
    [['service', 'show', 'a', 'b'], /usage/],
    [['service', 'show', 'Bad!'], /a service name is/],
    [['service', 'add', 'x', '--scopes', 'tokens:exchange', '--audiences', 'comm'], /--scopes: "tokens:exchange" is not allowed/],
    [['service', 'add', 'x', '--scopes', 'platform-admin', '--audiences', 'comm'], /--scopes: "platform-admin"/],
    [['service', 'add', 'x', '--scopes', 'a:b', '--audiences', 'Comm!'], /--audiences/],
    [['service', 'add', 'x', '--expires', '10'], /at least 60 seconds/],
    [['service', 'token', 'x', '--expires', 'soon'], /--expires must be a whole number/]
  ]
  for (const [argv, err] of usage) t.match(await run(...argv), { code: 2, err }, argv.join(' '))
  const signed = cli({ DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', JWT_SECRET: 's'.repeat(32) })
  t.match(await signed('service', 'add', 'x', '--scopes', 'a:b'), { code: 2, err: /needs --scopes and --audiences/ })
  t.match(await signed('service', 'update', 'x'), { code: 2, err: /needs --scopes or --audiences/ })
  t.match(await run('service', 'add', 'x', '--scopes', 'a:b', '--audiences', 'comm'), { code: 1, err: /JWT_SECRET: is required/ }, 'no key: nothing is written')
})
