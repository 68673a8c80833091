// The root README's library section is a complete, runnable service: this runs it as the README
// says (the stack's .data/dev.env, `node --env-file`), creates a tenant through the registry and
// uses it — no code beyond what the README shows.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ensureSigningKey } from '@platform/tenant-registry/keys'
import { tokenIssuer } from '@platform/tenant-registry/tokens'
import t from 'tap'
import { request } from 'undici'
import { startDevStack } from '../src/dev.ts'
import { createStackDatabase } from './fixtures.ts'

const root = fileURLToPath(new URL('../../../', import.meta.url))

t.test('the README example is examples/quick.ts, and it serves a tenant created after it started', async (t) => {
  const readme = await readFile(join(root, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Using the library'))
  const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
  const file = await readFile(join(root, 'examples', 'quick.ts'), 'utf8')
  t.equal(block, file, 'the README shows the file as it is')

  const db = await createStackDatabase(t)
  const cwd = await mkdtemp(join(tmpdir(), 'readme-'))
  await chmod(cwd, 0o755)
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  const stack = await startDevStack({ env: { DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', LOG_LEVEL: 'silent' }, cwd, print: () => {} })
  t.teardown(stack.close)

  const child = spawn(process.execPath, [`--env-file=${join(cwd, '.data', 'dev.env')}`, join(root, 'examples', 'quick.ts')], {
    cwd: root,
    env: { PATH: process.env.PATH, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += String(d) })
  child.stderr.on('data', (d: Buffer) => { out += String(d) })
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
  t.teardown(() => { child.kill('SIGKILL') })
  const deadline = Date.now() + 30_000
  let url: string | undefined
  while (url === undefined && Date.now() < deadline && child.exitCode === null) {
    url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1]
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.ok(url, `the example listens (${out.slice(-500)})`)

  const admin = stack.info.tokens.platformAdmin
  // Users' tokens, as the registry signs them (its key, kept in .data/); the example verifies
  // them through JWKS_URL and holds no key.
  t.notMatch(await readFile(join(cwd, '.data', 'dev.env'), 'utf8'), /JWT_SECRET|PRIVATE KEY/)
  const key = await ensureSigningKey(join(cwd, '.data'))
  t.notOk(key.created, 'the stack made the key')
  const sign = tokenIssuer({ publicKey: key.publicKey, privateKey: key.privateKey })
  const ids = [`readme-${randomBytes(3).toString('hex')}`, `readme-${randomBytes(3).toString('hex')}`]
  const started = performance.now()
  for (const id of ids) {
    const res = await request(`${stack.info.registryUrl}/v1/tenants`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ id, name: id }) })
    t.equal(res.statusCode, 201, await res.body.text())
  }
  const token = (id: string): string => sign({ sub: `me@${id}`, tenant: id, roles: ['member'], scope: 'todos:read todos:write' })
  const post = await request(`${url as string}/todos`, { method: 'POST', headers: { authorization: `Bearer ${token(ids[0] as string)}`, 'content-type': 'application/json' }, body: JSON.stringify({ title: 'first' }) })
  t.equal(post.statusCode, 201, await post.body.text())
  t.ok(performance.now() - started < 2000, `created → todo stored in ${Math.round(performance.now() - started)} ms`)
  const mine = await request(`${url as string}/todos`, { headers: { authorization: `Bearer ${token(ids[0] as string)}` } })
  t.match(await mine.body.json(), { tenant: ids[0], todos: [{ title: 'first', done: false }] })
  const theirs = await request(`${url as string}/todos`, { headers: { authorization: `Bearer ${token(ids[1] as string)}` } })
  t.match(await theirs.body.json(), { tenant: ids[1], todos: [] }, 'the other tenant has its own, empty table')
  const wrong = await request(`${url as string}/todos`, { headers: { authorization: `Bearer ${token(ids[0] as string)}`, 'x-tenant-id': ids[1] as string } })
  t.equal(wrong.statusCode, 403, 'a header naming another tenant than the token is refused')

  child.kill('SIGTERM')
  t.equal(await exited, 0, 'SIGTERM drains and the process exits by itself')
})
