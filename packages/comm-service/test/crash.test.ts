// Crash tests with real processes. (1) The service, as its own process, is killed with SIGKILL
// while it accepts and delivers 5,000 messages to a slow webhook receiver; restarted, it delivers
// every accepted message (duplicates reported). (2) PostgreSQL is stopped and started during a
// stream of POSTs: every 202 is delivered, and the outage gets 503s with a code, never a 500.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { schemaName } from '@platform/multitenant'
import { freePort, startEmbeddedPostgres } from '@platform/testkit'
import postgres from 'postgres'
import t from 'tap'
import { client, settled, sleep, startComm, until } from './helpers.ts'
import { SECRET, startPlatform, tid, type Platform } from './fixtures.ts'
import { httpPeer } from './peers.ts'

const BIN = fileURLToPath(new URL('../src/bin.ts', import.meta.url))

function startProcess (t: { teardown: (fn: () => unknown) => void }, env: Record<string, string>): { child: ChildProcess, ready: Promise<string> } {
  const child = spawn('env', ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE', process.execPath, BIN], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  const ready = new Promise<string>((resolve, reject) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      err += chunk.toString()
      const url = /listening on (\S+)/.exec(err)?.[1]
      if (url !== undefined) resolve(url)
    })
    child.once('exit', (code) => reject(new Error(`comm-service exited (${String(code)}): ${err}`)))
  })
  ready.catch(() => {})
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, ready }
}

function serviceEnv (p: Platform, port: number): Record<string, string> {
  return {
    REGISTRY_URL: p.registryUrl,
    SERVICE_TOKEN: p.serviceToken,
    DATABASE_URL: p.serviceDatabaseUrl,
    JWT_SECRET: SECRET,
    PORT: String(port),
    LOG_LEVEL: 'silent',
    COMM_WEBHOOK_ALLOW_HOSTS: '127.0.0.1',
    COMM_CONCURRENCY: '16',
    COMM_TENANT_CONCURRENCY: '4'
  }
}

t.test('SIGKILL while delivering 5,000 messages: after a restart every accepted message is sent', async (t) => {
  const p = await startPlatform(t)
  const receiver = await httpPeer(t, '/hook')
  receiver.answer = { status: 204, delayMs: 15 }
  const tenants = Array.from({ length: 5 }, (_, i) => tid(`k${i}`))
  for (const id of tenants) await p.createTenant(id)
  const port = await freePort()
  const env = serviceEnv(p, port)
  let run = startProcess(t, env)
  const url = await run.ready
  const call = client(url, p)

  // 5,000 POSTs, 16 at a time, each with its own Idempotency-Key: a POST cut off by the kill is
  // sent again once the service is back, and gets the same message (or the first one now).
  const TOTAL = 5000
  const accepted = new Map<string, { tenant: string, id: string }>()
  let next = 0
  let killedAt = -1
  const poster = async (): Promise<void> => {
    while (next < TOTAL) {
      const n = next++
      const tenant = tenants[n % tenants.length] as string
      const key = `crash-${n}`
      for (;;) {
        const res = await call('POST', '/v1/messages', tenant, { channel: 'webhook', to: receiver.url, body: JSON.stringify({ n }) }, { headers: { 'idempotency-key': key } }).catch(() => null)
        if (res?.status === 202) {
          accepted.set(key, { tenant, id: res.body.id })
          break
        }
        await sleep(100)
      }
    }
  }
  const posting = Promise.all(Array.from({ length: 16 }, poster))
  await until(() => receiver.received.length >= 1000, 120_000, '1,000 deliveries')
  run.child.kill('SIGKILL')
  killedAt = receiver.received.length
  await new Promise((resolve) => run.child.once('exit', resolve))
  const down = Date.now()
  run = startProcess(t, env)
  await run.ready
  t.comment(`killed after ${killedAt} deliveries with ${accepted.size} accepted; restarted in ${Date.now() - down} ms`)
  await posting
  t.equal(accepted.size, TOTAL, 'every message was accepted (some after the restart)')

  const admin = postgres(p.superUrl, { max: 2, onnotice: () => {} })
  t.teardown(() => admin.end())
  const started = Date.now()
  const sentCount = async (): Promise<number> => {
    let total = 0
    for (const id of tenants) total += (await admin.unsafe(`select count(*)::int as n from "${schemaName(id)}".messages where status = 'sent'`))[0]?.n as number
    return total
  }
  await until(async () => await sentCount() === TOTAL, 180_000, 'every accepted message to be sent')
  const seen = new Map<string, number>()
  for (const r of receiver.received) seen.set(r.headers['webhook-id'] as string, (seen.get(r.headers['webhook-id'] as string) ?? 0) + 1)
  const missing = [...accepted.values()].filter((m) => !seen.has(`msg_${m.id}`))
  t.same(missing, [], 'the receiver saw every accepted message at least once')
  const duplicates = receiver.received.length - seen.size
  t.comment(`crash-kill accepted=${TOTAL} delivered=${seen.size} duplicates=${duplicates} recovered_in_ms=${Date.now() - started}`)
  t.ok(duplicates <= 16 * 2, `duplicates only from sends cut off by the kill (${duplicates})`)
  const extra = (await admin.unsafe(`select count(*)::int as n from (${tenants.map((id) => `select id from "${schemaName(id)}".messages`).join(' union all ')}) m`))[0]?.n as number
  t.equal(extra, TOTAL, 'a POST repeated after the kill made no second message')
})

t.test('PostgreSQL stopped and started during a stream of POSTs: no lost 202, 503s with a code', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'comm-restart-'))
  const { chmod } = await import('node:fs/promises')
  await chmod(dataDir, 0o777)
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const port = await freePort()
  let pg = await startEmbeddedPostgres({ dataDir: join(dataDir, 'data'), port })
  t.teardown(() => pg.stop())
  const p = await startPlatform(t, { server: pg.url })
  const tenants = [tid('pg1'), tid('pg2')]
  for (const id of tenants) await p.createTenant(id)
  // The registry's answers are cached for 60 s, as a service would run.
  const { call } = await startComm(t, p, { multitenant: { registry: { url: p.registryUrl, token: p.serviceToken, ttl: 60_000 }, db: { url: p.serviceDatabaseUrl, max: 8 }, auth: { secret: SECRET, issuer: 'tenant-registry', audience: 'platform' } } })

  const answers: Array<{ status: number, code?: string, id?: string, tenant: string }> = []
  const flow = { streaming: true }
  const stream = async (tenant: string): Promise<void> => {
    while (flow.streaming) {
      const res = await call('POST', '/v1/messages', tenant, { channel: 'sms', to: '+15550100', body: 'hi' }).catch((err: Error) => ({ status: 0, body: { code: err.message } }))
      answers.push({ status: res.status, code: res.body?.code, id: res.body?.id, tenant })
      await sleep(5)
    }
  }
  const running = Promise.all([...tenants, ...tenants].map(stream))
  await sleep(1500)
  await pg.stop()
  const stoppedAt = answers.length
  await sleep(2000)
  pg = await startEmbeddedPostgres({ dataDir: join(dataDir, 'data'), port })
  const restartedAt = answers.length
  await sleep(4000)
  flow.streaming = false
  await running

  const byStatus = new Map<number, number>()
  for (const a of answers) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1)
  t.comment(`pg-restart answers=${answers.length} ${[...byStatus].map(([s, n]) => `${s}=${n}`).join(' ')} (stopped after ${stoppedAt}, back after ${restartedAt})`)
  t.ok(answers.slice(stoppedAt, restartedAt).some((a) => a.status === 503), 'the outage was seen')
  t.same(answers.filter((a) => a.status !== 202 && a.status !== 503), [], 'nothing but 202 and 503: no 500, no dropped connection')
  t.same([...new Set(answers.filter((a) => a.status === 503).map((a) => a.code))].filter((c) => c !== 'SERVICE_UNAVAILABLE' && c !== 'TENANT_UNAVAILABLE'), [], '503s carry SERVICE_UNAVAILABLE or TENANT_UNAVAILABLE')
  t.ok(answers.slice(-20).every((a) => a.status === 202), 'accepting again after the restart')
  const ok = answers.filter((a) => a.status === 202)
  for (const a of ok) {
    const message = await settled(call, a.tenant, a.id as string, ['sent'], 60_000)
    if (message.status !== 'sent') t.fail(`${a.id} was not sent`)
  }
  t.pass(`every one of the ${ok.length} accepted messages was sent`)
})
