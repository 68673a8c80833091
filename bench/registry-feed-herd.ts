// registry-feed-herd: 5,000 change-feed long polls wait on the registry; a change is published;
// meanwhile GET /v1/tenants/:id runs without pause. Reports the GET's p99 while the herd wakes,
// next to its p99 with the same polls waiting and nothing published (same run, same server).
// Server on core 0, polls and GETs on core 1.
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'
import { tokenIssuer } from '../packages/tenant-registry/src/tokens.ts'
import { fmt, percentile, progress, startServer } from './lib/harness.ts'
import { platformDatabase } from './lib/platform.ts'

const WAITERS = Number(process.env.BENCH_WAITERS ?? 5000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const SECRET = randomBytes(32).toString('hex')
spawnSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' })

const { db, registryUrl } = await platformDatabase()
const server = await startServer(fileURLToPath(new URL('./servers/registry-server.ts', import.meta.url)), [], 0, { DATABASE_URL: registryUrl, JWT_SECRET: SECRET })
const issue = tokenIssuer({ secret: SECRET })
const admin = { authorization: `Bearer ${issue({ sub: 'bench', roles: ['platform-admin'], scope: 'tenants:read tenants:write' }, 3600)}` }
const service = { authorization: `Bearer ${issue({ sub: 'bench', scope: 'tenants:read' }, 3600)}` }
// One socket per poll, and a separate agent for the GETs so they never queue behind a poll.
const polls = new Agent({ connections: WAITERS + 10, pipelining: 0, headersTimeout: 120_000, bodyTimeout: 120_000 })
const gets = new Agent({ connections: 4 })
const tag = randomBytes(2).toString('hex')

async function post (id: string): Promise<void> {
  const res = await request(`${server.url}/v1/tenants`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ id, name: id }), dispatcher: gets })
  await res.body.dump()
  if (res.statusCode !== 201) throw new Error(`create ${id}: ${res.statusCode}`)
}

async function head (): Promise<number> {
  const res = await request(`${server.url}/v1/changes?after=0&limit=1`, { headers: service, dispatcher: gets })
  return (await res.body.json() as { head: number }).head
}

async function waiting (): Promise<number> {
  const text = await (await request(`${server.url}/metrics`, { dispatcher: gets })).body.text()
  return Number(/^registry_change_feed_waiters (\d+)/m.exec(text)?.[1] ?? 0)
}

/** GETs back to back (4 at a time) for `ms`; their latencies. */
async function getFor (ms: number, id: string): Promise<number[]> {
  const times: number[] = []
  const until = performance.now() + ms
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (performance.now() < until) {
      const started = performance.now()
      const res = await request(`${server.url}/v1/tenants/${id}`, { headers: service, dispatcher: gets })
      await res.body.dump()
      if (res.statusCode !== 200) throw new Error(`GET: ${res.statusCode}`)
      times.push(performance.now() - started)
    }
  }))
  return times
}

try {
  const probe = `herd-probe-${tag}`
  await post(probe)
  await getFor(500, probe) // warm up
  const herd: number[] = []
  const idle: number[] = []
  let woken = 0
  for (let round = 0; round < ROUNDS; round++) {
    const after = await head()
    const answers = Array.from({ length: WAITERS }, async () => {
      const res = await request(`${server.url}/v1/changes?after=${after}&wait=60`, { headers: service, dispatcher: polls })
      const body = await res.body.json() as { items: unknown[] }
      if (body.items.length > 0) woken++
    })
    while (await waiting() < WAITERS) await new Promise((resolve) => setTimeout(resolve, 100))
    idle.push(...await getFor(1000, probe))
    // Publish while GETs run: the herd wakes in the middle of them.
    const during = getFor(1500, probe)
    await new Promise((resolve) => setTimeout(resolve, 200))
    await post(`herd-${tag}-${round}`)
    herd.push(...await during)
    await Promise.all(answers)
    progress(`registry-feed-herd round ${round + 1}/${ROUNDS}: p99 ${fmt(percentile(herd, 99))} ms (idle ${fmt(percentile(idle, 99))} ms)`)
  }
  console.log(`registry-feed-herd waiters=${WAITERS} get_p99_ms=${fmt(percentile(herd, 99))} (idle_waiting_p99_ms=${fmt(percentile(idle, 99))} get_p50_ms=${fmt(percentile(herd, 50))} woken=${woken}/${WAITERS * ROUNDS} rounds=${ROUNDS})`)
} finally {
  await polls.close()
  await gets.close()
  await server.stop()
  await db.drop()
}
