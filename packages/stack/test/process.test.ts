// `pnpm start` as users run it: a real process, real signals.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { request } from 'undici'
import { createStackDatabase } from './fixtures.ts'

const DEV = fileURLToPath(new URL('../src/dev.ts', import.meta.url))

interface Proc { child: ChildProcessWithoutNullStreams, out: () => string, err: () => string, exited: Promise<number | null> }

function start (env: NodeJS.ProcessEnv, cwd: string): Proc {
  const child = spawn(process.execPath, [DEV], { cwd, env: { ...process.env, DATABASE_URL: '', ...env } })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += String(d) })
  child.stderr.on('data', (d: Buffer) => { err += String(d) })
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  return { child, out: () => out, err: () => err, exited }
}

async function until (what: string, check: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const healthy = async (url: string): Promise<boolean> => {
  try {
    return (await request(url + '/health')).statusCode === 200
  } catch {
    return false
  }
}

t.test('pnpm start (packages/stack/src/dev.ts): prints the stack, serves, and stops cleanly on Ctrl-C', async (t) => {
  const db = await createStackDatabase(t)
  const cwd = await mkdtemp(join(tmpdir(), 'dev-proc-'))
  await chmod(cwd, 0o755)
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  const proc = start({ DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent' }, cwd)
  t.teardown(() => proc.child.kill('SIGKILL'))
  await until('the banner', () => /Notes service {5}http/.test(proc.out()))
  const registry = /Tenant registry {3}(\S+)/.exec(proc.out())?.[1] as string
  const notes = /Notes service {5}(\S+)/.exec(proc.out())?.[1] as string
  t.ok(await healthy(registry), 'the registry answers')
  t.ok(await healthy(notes), 'the notes service answers')
  proc.child.kill('SIGINT')
  t.equal(await proc.exited, 0, 'exit 0 after Ctrl-C', { err: proc.err() })
  t.match(proc.err(), /SIGINT: shutting down/)
  t.notOk(await healthy(registry), 'nothing is left listening')
  t.notOk(await healthy(notes))
})

t.test('pnpm start with a bad variable exits 1 naming it', async (t) => {
  const cwd = await mkdtemp(join(tmpdir(), 'dev-proc-'))
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  const proc = start({ PORT: 'http' }, cwd)
  t.equal(await proc.exited, 1)
  t.match(proc.err(), /\[dev\] PORT: must be a port number/)
  const down = start({ DATABASE_URL: 'postgres://x:y@127.0.0.1:1/none', PORT: '0', NOTES_PORT: '0', COMM_PORT: '0' }, cwd)
  t.equal(await down.exited, 1)
  t.match(down.err(), /\[dev\] could not start: .*ECONNREFUSED/)
})

t.test('a parent killed with -9 leaves nothing running: the stack notices and stops itself', async (t) => {
  const db = await createStackDatabase(t)
  const cwd = await mkdtemp(join(tmpdir(), 'dev-orphan-'))
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  // A stand-in for npm: starts the stack and does nothing else.
  const parent = spawn(process.execPath, ['-e', `require('node:child_process').spawn(process.execPath, [${JSON.stringify(DEV)}], { stdio: 'inherit' }); setInterval(() => {}, 1000)`], {
    cwd,
    env: { ...process.env, DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent' }
  })
  let out = ''
  let err = ''
  parent.stdout.on('data', (d: Buffer) => { out += String(d) })
  parent.stderr.on('data', (d: Buffer) => { err += String(d) })
  t.teardown(() => parent.kill('SIGKILL'))
  await until('the banner', () => /Comm service {6}http/.test(out))
  const registry = /Tenant registry {3}(\S+)/.exec(out)?.[1] as string
  const stackPid = Number(JSON.parse(await (await import('node:fs/promises')).readFile(join(cwd, '.data', 'dev.json'), 'utf8')).pids.stack)
  t.ok(await healthy(registry))
  parent.kill('SIGKILL')
  await until('the orphaned stack to exit', () => {
    try {
      process.kill(stackPid, 0)
      return false
    } catch {
      return true
    }
  }, 10_000)
  t.match(err, /SIGTERM: shutting down/, 'it stopped as on SIGTERM')
  t.notOk(await healthy(registry), 'nothing is left listening')
})
