// Rendering cannot stall anyone (issue 17): hostile templates (a per-element filter over a huge
// range, which LiquidJS's own time limit never interrupts) are refused when saved, refused by the
// element budget, or stopped by the render pool's wall clock, through preview and POST /v1/messages
// alike; while three run, another tenant's requests and /health are answered at once; and a tenant
// has at most two renders in flight. (The per-tenant request limit: rate-limit.test.ts.)
import t, { type Test } from 'tap'
import { SECRET, startPlatform, tid } from './fixtures.ts'
import { sleep, startComm, type Running } from './helpers.ts'

const WRITE = { scope: 'templates:write messages:read messages:send', roles: ['admin'] }

// Each filter over `(1..n)` with `n` from the data: the range's bounds are not literal, so only
// the render can bound it. The range and the filter are in one tag, where LiquidJS's own time
// limit is never checked. On the code before the pool each of these ran on the event loop for
// seconds and then succeeded (has_exp over 700,000: 202 after 9 s).
const HOSTILE: Record<string, string> = {
  has_exp: '{{ (1..n) | has_exp: "i", "i < 0" }}',
  where_exp: '{{ (1..n) | where_exp: "i", "i < 0" | size }}',
  find_exp: '{{ (1..n) | find_exp: "i", "i < 0" }}',
  find_index_exp: '{{ (1..n) | find_index_exp: "i", "i < 0" }}',
  group_by_exp: '{{ (1..n) | group_by_exp: "i", "i < 0" | size }}',
  reject_exp: '{{ (1..n) | reject_exp: "i", "i > 0" | size }}',
  // Small ranges, nested: 1,000 × 1,000 expression evaluations.
  nested: '{{ (1..m) | where_exp: "i", "(1..m) | has_exp: \'j\', \'j < 0\'" | size }}'
}
const DATA = { n: 700_000, m: 1000 }
/** Enough for seconds of work on the old code, quick to refuse on the new. */
const SMALLER = { n: 100_000, m: 1000 }

async function save (t: Test, call: Running['call'], tenant: string, name: string, body: string): Promise<void> {
  const made = await call('POST', '/v1/templates', tenant, { name, channel: 'sms', defaultLocale: 'en', variants: { en: { body } } }, WRITE)
  t.equal(made.status, 201, `${name} saved`)
}

t.test('hostile templates: refused when saved, or by the element budget, via preview and POST /v1/messages', async (t) => {
  const p = await startPlatform(t)
  const a = tid('ra')
  await p.createTenant(a)
  // A generous wall clock: here the element budget alone refuses.
  const { call } = await startComm(t, p, { render: { timeoutMs: 30_000 } })

  // A literal range above the limit is refused when saved, also inside a *_exp expression.
  for (const [what, body] of [
    ['has_exp over (1..700000)', '{% assign r = (1..700000) %}{{ r | has_exp: "i", "i < 0" }}'],
    ['a for loop over (1..100000000)', '{% for i in (1..100000000) %}{{ i }}{% endfor %}'],
    ['a range inside the expression', '{{ items | where_exp: "i", "(1..700000) contains i" | size }}']
  ] as const) {
    t.match(await call('POST', '/v1/templates', a, { name: 'lit', channel: 'sms', defaultLocale: 'en', variants: { en: { body } } }, WRITE),
      { status: 400, body: { code: 'TEMPLATE_INVALID', message: /range .* more than 50000 elements/ } }, `${what}: refused when saved`)
  }
  t.match(await call('PUT', '/v1/templates/lit', a, { defaultLocale: 'en', variants: { en: { body: '{{ (1..10001) | size }}' } } }, WRITE), { status: 404 }, 'never created')

  for (const [name, body] of Object.entries(HOSTILE)) {
    await save(t, call, a, name.replaceAll('_', '-'), body)
    for (const [how, send] of [
      ['preview', async () => await call('POST', `/v1/templates/${name.replaceAll('_', '-')}/preview`, a, { data: SMALLER })],
      ['POST /v1/messages', async () => await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', template: { name: name.replaceAll('_', '-'), data: SMALLER } })]
    ] as const) {
      const started = performance.now()
      const answer = await send()
      const ms = Math.round(performance.now() - started)
      t.match(answer, { status: 400, body: { code: 'TEMPLATE_RENDER_FAILED', message: /may visit at most 20000 in one render/ } }, `${name} via ${how}: refused by the element budget (${ms} ms)`)
    }
  }
  t.same((await call('GET', '/v1/messages', a)).body.items, [], 'no hostile message was accepted')

  // Legitimate uses of the same filters render as before.
  await save(t, call, a, 'fine', '{% assign r = (1..n) %}{{ r | where_exp: "i", "i > 95" | join: "," }} {{ r | has_exp: "i", "i == 3" }} {{ r | group_by_exp: "i", "i | modulo: 2" | size }}')
  t.match(await call('POST', '/v1/templates/fine/preview', a, { data: { n: 100 } }), { status: 200, body: { content: { body: '96,97,98,99,100 true 2' } } })
})

t.test('the wall clock stops what the budget lets through; a tenant has at most two renders in flight', async (t) => {
  const p = await startPlatform(t)
  const a = tid('wa')
  const b = tid('wb')
  await p.createTenant(a)
  await p.createTenant(b)
  // No element budget: only the pool's hard limit stands between these renders and the CPU.
  const { call } = await startComm(t, p, { render: { elements: Infinity, timeoutMs: 700, perTenant: 2, waitMs: 100 } })
  for (const [name, body] of Object.entries(HOSTILE)) {
    await save(t, call, a, name.replaceAll('_', '-'), body)
    t.match(await call('POST', `/v1/templates/${name.replaceAll('_', '-')}/preview`, a, { data: DATA }),
      { status: 400, body: { code: 'TEMPLATE_RENDER_FAILED', message: 'the render took longer than 700 ms and was stopped' } }, `${name} via preview: stopped`)
    t.match(await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', template: { name: name.replaceAll('_', '-'), data: DATA } }),
      { status: 400, body: { code: 'TEMPLATE_RENDER_FAILED', message: /took longer than 700 ms/ } }, `${name} via POST /v1/messages: stopped`)
  }
  t.same((await call('GET', '/v1/messages', a)).body.items, [], 'nothing was accepted')

  // Three at once from one tenant: two run (and are stopped), the third waits 100 ms for a slot
  // and is refused; another tenant's render is not held by A's.
  const three = await Promise.all([1, 2, 3].map(async () => await call('POST', '/v1/templates/has-exp/preview', a, { data: DATA })))
  t.same(three.map((r) => r.status).sort(), [400, 400, 429], 'two renders in flight, the third refused')
  t.match(three.find((r) => r.status === 429), { body: { code: 'RATE_LIMITED', message: /already has 2 renders in flight/ } })
  await save(t, call, b, 'hello', 'Hello {{ who }}')
  t.match(await call('POST', '/v1/templates/hello/preview', b, { data: { who: 'B' } }), { status: 200, body: { content: { body: 'Hello B' } } }, 'the pool renders again after its threads were stopped')
  t.match(await call('POST', '/v1/messages', b, { channel: 'sms', to: '+15550100', template: { name: 'hello', data: { who: 'B' } } }), { status: 202 })
})

t.test('while three hostile renders run, another tenant\'s requests and /health are answered within 100 ms (p99)', async (t) => {
  const p = await startPlatform(t)
  const [a, b, c] = [tid('pa'), tid('pb'), tid('pc')]
  for (const id of [a, b, c]) await p.createTenant(id)
  // The tenant cache keeps its entries (the fixtures' 200 ms would add registry round trips).
  const { call } = await startComm(t, p, {
    render: { elements: Infinity, timeoutMs: 3000 },
    multitenant: { registry: { url: p.registryUrl, token: p.serviceToken, ttl: 60_000 }, db: { url: p.serviceDatabaseUrl, max: 8 }, auth: { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' } }
  })
  for (const id of [a, b]) await save(t, call, id, 'spin', HOSTILE.has_exp as string)
  for (let i = 0; i < 5; i++) await call('GET', '/v1/messages', c) // warm: tenant lookup, schema
  const N = 100
  const sample = async (): Promise<{ list: number[], health: number[] }> => {
    const list: number[] = []
    const health: number[] = []
    for (let i = 0; i < N; i++) {
      let started = performance.now()
      const listed = await call('GET', '/v1/messages?limit=5', c)
      list.push(performance.now() - started)
      started = performance.now()
      const ok = await call('GET', '/health', c)
      health.push(performance.now() - started)
      if (listed.status !== 200 || ok.status !== 200) t.fail(`an answer was not 200: ${listed.status} ${ok.status}`)
    }
    return { list, health }
  }
  const p99 = (ms: number[]): number => Math.round([...ms].sort((x, y) => x - y)[Math.ceil(ms.length * 0.99) - 1] as number)
  const idle = await sample()

  const state = { running: true }
  const answers: Array<{ status: number, message: string }> = []
  const hostile = async (tenant: string): Promise<void> => {
    while (state.running) {
      const r = await call('POST', '/v1/templates/spin/preview', tenant, { data: DATA })
      answers.push({ status: r.status, message: r.body?.message })
    }
  }
  const loops = [hostile(a), hostile(a), hostile(b)]
  await sleep(200)
  const busy = await sample()
  state.running = false
  await Promise.all(loops)
  t.comment(`p99 of ${N} requests each, with no render running: GET /v1/messages ${p99(idle.list)} ms, GET /health ${p99(idle.health)} ms`)
  t.comment(`p99 of ${N} requests each, while three hostile renders run: GET /v1/messages ${p99(busy.list)} ms, GET /health ${p99(busy.health)} ms`)
  t.ok(answers.length >= 3, `the hostile renders ran throughout (${answers.length} answered)`)
  t.ok(answers.every((r) => r.status === 400 && r.message === 'the render took longer than 3000 ms and was stopped'), 'each was stopped by the wall clock')
  t.ok(p99(busy.list) < 100, `GET /v1/messages p99 ${p99(busy.list)} ms < 100 ms`)
  t.ok(p99(busy.health) < 100, `GET /health p99 ${p99(busy.health)} ms < 100 ms`)
})
