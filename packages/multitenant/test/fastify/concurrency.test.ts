// Thousands of concurrent requests for many tenants through a real listening server: every hook,
// handler, error path and the async work the handler starts must see its own tenant.
import { EventEmitter, once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import t from 'tap'
import { Agent, request } from 'undici'
import { bindToScope, currentTenantId } from '../../src/context.ts'
import { multitenantPlugin } from '../../src/fastify/plugin.ts'
import { MemoryProvider, makeTenant } from '../fixtures/tenants.ts'

const TENANTS = 50
const REQUESTS = 3000
const ids = Array.from({ length: TENANTS }, (_, i) => `tenant-${i}`)

t.test('every hook and handler sees exactly its own tenant', async (t) => {
  const app = Fastify({ logger: false })
  const mismatches: string[] = []
  const check = (where: string, expected: unknown) => {
    const actual = currentTenantId()
    if (actual !== expected) mismatches.push(`${where}: expected ${String(expected)} got ${String(actual)}`)
  }
  const expectedOf = (headers: Record<string, unknown>) => headers['x-tenant-id']

  // Async lookups with random latency, so requests interleave while they are being resolved.
  const provider = new MemoryProvider(ids.map((id) => makeTenant(id)), true)
  await app.register(multitenantPlugin, { provider })

  // An emitter and a timer made at start-up, outside any request: the classic leak.
  const bus = new EventEmitter()
  bus.setMaxListeners(0)
  const startupTick = setInterval(() => bus.emit('tick'), 1)
  t.teardown(() => clearInterval(startupTick))

  app.addHook('preParsing', async (request) => check('preParsing', expectedOf(request.headers)))
  app.addHook('preValidation', async (request) => check('preValidation', expectedOf(request.headers)))
  app.addHook('preHandler', async (request) => {
    await sleep(Math.random() * 3)
    check('preHandler', expectedOf(request.headers))
  })
  app.addHook('preSerialization', async (request, _reply, payload) => {
    check('preSerialization', expectedOf(request.headers))
    return payload
  })
  app.addHook('onSend', async (request, _reply, payload) => {
    check('onSend', expectedOf(request.headers))
    return payload
  })
  app.addHook('onResponse', async (request) => check('onResponse', expectedOf(request.headers)))
  app.addHook('onError', async (request) => check('onError', expectedOf(request.headers)))
  app.setErrorHandler(async (error, request, reply) => {
    check('errorHandler', expectedOf(request.headers))
    return reply.code(418).send({ tenant: currentTenantId(), message: (error as Error).message })
  })

  app.post('/work', {
    schema: { body: { type: 'object', required: ['tenant', 'fail'], properties: { tenant: { type: 'string' }, fail: { type: 'boolean' }, pad: { type: 'string' } } } }
  }, async (request) => {
    const body = request.body as { tenant: string, fail: boolean }
    const expected = expectedOf(request.headers)
    check('handler', expected)
    if (body.tenant !== expected) mismatches.push('body belongs to another request')
    // A request-local emitter, a listener on the start-up emitter (bound) and a timer.
    const local = new EventEmitter()
    const emitted = once(local, 'done')
    setTimeout(() => {
      check('timer', expected)
      local.emit('done')
    }, Math.random() * 3)
    await emitted
    check('after emitter', expected)
    const tick = new Promise<void>((resolve) => {
      bus.once('tick', bindToScope(() => {
        check('bound start-up listener', expected)
        resolve()
      }))
    })
    await tick
    await sleep(Math.random() * 3)
    check('after sleep', expected)
    // Work the handler starts but does not wait for.
    sleep(Math.random() * 2).then(() => check('detached work', expected), () => {})
    if (body.fail) throw new Error('requested failure')
    return { tenant: currentTenantId() }
  })

  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const origin = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const agent = new Agent({ connections: 64, pipelining: 1 })
  t.teardown(() => agent.close())

  let ok = 0
  let failed = 0
  let wrongAnswer = 0
  await Promise.all(Array.from({ length: REQUESTS }, async (_, i) => {
    const tenant = ids[i % TENANTS] as string
    const fail = i % 7 === 0
    // Some bodies large enough to arrive in several chunks.
    const pad = i % 5 === 0 ? 'x'.repeat(200_000) : ''
    const res = await request(`${origin}/work`, {
      dispatcher: agent,
      method: 'POST',
      headers: { 'x-tenant-id': tenant, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant, fail, pad })
    })
    const json = await res.body.json() as { tenant?: string }
    if (json.tenant !== tenant) wrongAnswer++
    if (res.statusCode === 200) ok++
    else if (res.statusCode === 418) failed++
  }))
  await sleep(20) // let detached work finish

  t.equal(ok + failed, REQUESTS, 'every request answered')
  t.equal(failed, Math.ceil(REQUESTS / 7), 'error paths exercised')
  t.equal(wrongAnswer, 0, 'every answer names its own tenant')
  t.same(mismatches.slice(0, 10), [], 'zero mismatches in hooks, handlers, timers and listeners')
  t.equal(mismatches.length, 0)
})
