// The platform as a newcomer meets it: `npm start` in the repository, the banner's walkthrough
// followed with our own HTTP client (an email, an SMS and a webhook, each `sent`, each caught by
// the dev inbox), then Ctrl-C as a terminal sends it (SIGINT to the whole process group): every
// port is free and every process gone within 10 seconds. A second start keeps the data, its
// banner works again, and SIGTERM to the parent alone stops everything as well.
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '@platform/testkit'
import t, { type Test } from 'tap'
import { request } from 'undici'
import type { DevInfo } from '../src/dev.ts'

const ROOT = fileURLToPath(new URL('../../..', import.meta.url))

interface Started { child: ChildProcess, out: () => string, err: () => string, info: DevInfo, banner: string }

async function waitFor<T> (what: string, check: () => Promise<T | undefined> | T | undefined, ms: number): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** `npm start`, leading a process group of its own as a terminal's foreground job does. */
async function npmStart (t: Test, dataDir: string, pgPort: number): Promise<Started> {
  const env: NodeJS.ProcessEnv = { ...process.env, DEV_DATA_DIR: dataDir, DEV_PG_PORT: String(pgPort), PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'warn', DATABASE_URL: '' }
  delete env.NODE_OPTIONS
  delete env.NODE_V8_COVERAGE
  const child = spawn('npm', ['start'], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => { out += String(d) })
  child.stderr?.on('data', (d: Buffer) => { err += String(d) })
  t.teardown(() => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} })
  const banner = await waitFor('the banner', () => /Ctrl-C stops the services[^\n]*\n/.test(out) ? out : undefined, 180_000).catch((e: Error) => { throw new Error(`${e.message}\n${err.slice(-2000)}`) })
  const info = JSON.parse(await readFile(join(dataDir, 'dev.json'), 'utf8')) as DevInfo
  return { child, out: () => out, err: () => err, info, banner }
}

/** Every process below `pid`, from /proc. */
async function descendants (pid: number): Promise<number[]> {
  const parents = new Map<number, number>()
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8')
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {}
  }
  const out: number[] = []
  const walk = (p: number): void => {
    for (const [child, parent] of parents) {
      if (parent === p) {
        out.push(child)
        walk(child)
      }
    }
  }
  walk(pid)
  return out
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const listening = async (port: number): Promise<boolean> => await new Promise((resolve) => {
  const socket = connect(port, '127.0.0.1')
  socket.once('connect', () => { socket.destroy(); resolve(true) })
  socket.once('error', () => resolve(false))
})

function portsOf (info: DevInfo): number[] {
  return [info.registryUrl, info.notesUrl, info.commUrl, info.inboxUrl, info.smtpUrl, info.databaseUrl].map((u) => Number(new URL(u).port))
}

/** The walkthrough as the banner prints it: each `-d '…'` of its POST lines, sent with our client. */
async function walkthrough (t: Test, s: Started): Promise<void> {
  const { info } = s
  const posts = s.banner.split('\n').filter((line) => line.includes(`curl -s -X POST ${info.commUrl}/v1/messages`))
  t.equal(posts.length, 3, 'the walkthrough sends three messages')
  const ids: string[] = []
  for (const line of posts) {
    const body = /-d '(.*)'$/.exec(line.trim())?.[1] as string
    const res = await request(`${info.commUrl}/v1/messages`, { method: 'POST', headers: { authorization: `Bearer ${info.tokens.acmeOwner}`, 'content-type': 'application/json' }, body })
    t.equal(res.statusCode, 202, `accepted: ${body.slice(0, 40)}…`)
    ids.push((await res.body.json() as { id: string }).id)
  }
  const statuses = await waitFor('every message to be sent', async () => {
    const res = await request(`${info.commUrl}/v1/messages?limit=10`, { headers: { authorization: `Bearer ${info.tokens.acmeOwner}` } })
    const items = (await res.body.json() as { items: Array<{ id: string, status: string, channel: string }> }).items.filter((m) => ids.includes(m.id))
    return items.length === 3 && items.every((m) => m.status === 'sent') ? items.map((m) => `${m.channel}:${m.status}`).sort() : undefined
  }, 30_000)
  t.same(statuses, ['email:sent', 'sms:sent', 'webhook:sent'])
  const inbox = async (kind: string): Promise<any[]> => (await (await request(`${info.inboxUrl}/api/${kind}`)).body.json() as { items: any[] }).items
  t.match((await inbox('mail'))[0], { subject: 'Hello from acme', from: 'no-reply@acme.test', to: ['ann@example.com'] }, 'the email is in the SMTP sink')
  t.match((await inbox('sms'))[0], { to: '+15550100', from: 'ACME', body: /acme code/ }, 'the SMS reached the SMS API')
  t.match((await inbox('hooks'))[0], { name: 'acme', headers: { 'webhook-signature': /^v1,/ } }, 'the webhook reached the receiver, signed')
  const page = await request(info.inboxUrl)
  t.match(await page.body.text(), /Hello from acme/, 'the inbox page shows the email')
}

async function allGone (t: Test, pids: number[], ports: number[], what: string): Promise<void> {
  const started = Date.now()
  await waitFor(`${what}: every process to exit and every port to close`, async () => {
    if (pids.some(alive)) return undefined
    for (const port of ports) if (await listening(port)) return undefined
    return true
  }, 10_000).catch((err: Error) => {
    throw new Error(`${err.message} (left: ${pids.filter(alive).join(', ')})`)
  })
  t.pass(`${what}: all ${pids.length} processes gone and ${ports.length} ports free in ${Date.now() - started} ms`)
}

t.test('npm start: the walkthrough, then Ctrl-C (group SIGINT) and SIGTERM to the parent leave nothing behind', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'platform-'))
  await chmod(dir, 0o755) // as root, PostgreSQL runs as user postgres, which must enter it
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const dataDir = join(dir, '.data')
  const pgPort = await freePort()

  const first = await npmStart(t, dataDir, pgPort)
  await walkthrough(t, first)
  const pids = [first.child.pid as number, ...await descendants(first.child.pid as number)]
  t.ok(first.info.pids.postgres !== null && pids.includes(first.info.pids.postgres), 'PostgreSQL runs under the stack')
  process.kill(-(first.child.pid as number), 'SIGINT')
  await allGone(t, pids, portsOf(first.info), 'after Ctrl-C')
  t.match(first.err(), /SIGINT: shutting down/)

  const second = await npmStart(t, dataDir, pgPort)
  t.notMatch(second.err(), /created demo tenants/, 'the data was kept: no demo tenants made again')
  const before = await request(`${second.info.commUrl}/v1/messages?limit=10`, { headers: { authorization: `Bearer ${second.info.tokens.acmeOwner}` } })
  t.equal((await before.body.json() as { items: unknown[] }).items.length, 3, 'the first run\'s messages are still there')
  await walkthrough(t, second)
  const pids2 = [second.child.pid as number, ...await descendants(second.child.pid as number)]
  process.kill(second.child.pid as number, 'SIGTERM')
  await allGone(t, pids2, portsOf(second.info), 'after SIGTERM to npm alone')
})
