import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import t from 'tap'
import { Agent, request } from 'undici'
import { runAsSystem, runAsTenant } from '../src/context.ts'
import { tenantPropagation } from '../src/propagation.ts'

async function echoServer (t: { teardown (fn: () => unknown): void }): Promise<{ origin: string, seen: IncomingHttpHeaders[] }> {
  const seen: IncomingHttpHeaders[] = []
  const server: Server = createServer((req, res) => {
    seen.push(req.headers)
    res.end('ok')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return { origin: `http://127.0.0.1:${(server.address() as { port: number }).port}`, seen }
}

t.test('adds X-Tenant-ID to internal origins only', async (t) => {
  const internal = await echoServer(t)
  const external = await echoServer(t)
  const agent = new Agent().compose(tenantPropagation({ origins: [internal.origin + '/ignored-path'] }))
  t.teardown(() => agent.close())
  const get = async (url: string, headers?: Record<string, string> | string[]) => {
    const res = await request(url, { dispatcher: agent, headers })
    await res.body.text()
  }
  await runAsTenant('acme', () => get(internal.origin + '/a'))
  await runAsTenant('acme', () => get(external.origin + '/b'))
  await get(internal.origin + '/c')
  await runAsSystem(() => get(internal.origin + '/d'))
  await runAsTenant('acme', () => get(internal.origin + '/e', { 'x-trace': '1' }))
  await runAsTenant('acme', () => get(internal.origin + '/f', ['x-trace', '2']))
  await runAsTenant('acme', () => get(internal.origin + '/g', { 'X-Tenant-ID': 'acme' }))
  await runAsTenant('acme', () => get(internal.origin + '/h', ['X-Tenant-ID', 'acme']))
  t.same(internal.seen.map((h) => h['x-tenant-id']), ['acme', undefined, undefined, 'acme', 'acme', 'acme', 'acme'])
  t.same(internal.seen.map((h) => h['x-trace']), [undefined, undefined, undefined, '1', '2', undefined, undefined])
  t.equal(external.seen[0]?.['x-tenant-id'], undefined, 'never sent to other origins')
  await t.rejects(runAsTenant('acme', () => get(internal.origin + '/i', { 'x-tenant-id': 'globex' })), { code: 'TENANT_MISMATCH' })
  await t.rejects(runAsTenant('acme', () => get(internal.origin + '/j', ['x-tenant-id', 'globex'])), { code: 'TENANT_MISMATCH' })
  t.equal(internal.seen.length, 7, 'the mismatched requests were never sent')
})

t.test('iterable headers and options', async (t) => {
  const internal = await echoServer(t)
  const agent = new Agent().compose(tenantPropagation({ origins: [new URL(internal.origin)], header: 'X-Org' }))
  t.teardown(() => agent.close())
  await runAsTenant('globex', async () => {
    const res = await request(internal.origin, { dispatcher: agent, headers: new Map([['x-a', 'b']]) as unknown as Record<string, string> })
    await res.body.text()
  })
  t.equal(internal.seen[0]?.['x-org'], 'globex')
  t.equal(internal.seen[0]?.['x-a'], 'b')
  t.throws(() => tenantPropagation({ origins: ['not a url'] }), { code: 'MT_INVALID_OPTION' })
  t.throws(() => tenantPropagation({} as never), { code: 'MT_INVALID_OPTION' })
})
