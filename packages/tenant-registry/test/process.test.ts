// The entry points as users run them: real processes, real signals.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '@platform/testkit'
import t from 'tap'
import { request } from 'undici'
import { createRegistryDatabase, SECRET } from './fixtures/registry.ts'

const src = (file: string): string => fileURLToPath(new URL(`../src/${file}`, import.meta.url))

interface Proc { child: ChildProcessWithoutNullStreams, out: () => string, err: () => string, exited: Promise<number | null> }

function start (args: string[], env: NodeJS.ProcessEnv, cwd: string): Proc {
  const child = spawn(process.execPath, args, { cwd, env: { ...process.env, DATABASE_URL: '', ...env } })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += String(d) })
  child.stderr.on('data', (d: Buffer) => { err += String(d) })
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  return { child, out: () => out, err: () => err, exited }
}

async function until (what: string, check: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const healthy = (url: string) => async (): Promise<boolean> => {
  try {
    return (await request(url + '/health')).statusCode === 200
  } catch {
    return false
  }
}

t.test('pnpm start (src/dev.ts): prints the stack, serves, and stops cleanly on Ctrl-C', async (t) => {
  const db = await createRegistryDatabase(t)
  const cwd = await mkdtemp(join(tmpdir(), 'dev-proc-'))
  await chmod(cwd, 0o755)
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  const proc = start([src('dev.ts')], { DATABASE_URL: db.url, PORT: '0', LOG_LEVEL: 'silent' }, cwd)
  t.teardown(() => proc.child.kill('SIGKILL'))
  await until('the banner', () => /Tenant registry {3}http/.test(proc.out()))
  const url = /Tenant registry {3}(\S+)/.exec(proc.out())?.[1] as string
  t.ok(await healthy(url)(), 'the registry answers')
  t.match(proc.out(), /curl -s/)
  proc.child.kill('SIGINT')
  t.equal(await proc.exited, 0, 'exit 0 after Ctrl-C', { err: proc.err() })
  t.match(proc.err(), /SIGINT: shutting down/)
  t.notOk(await healthy(url)(), 'nothing is left listening')
})

t.test('pnpm start with a bad variable exits 1 naming it', async (t) => {
  const cwd = await mkdtemp(join(tmpdir(), 'dev-proc-'))
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  const proc = start([src('dev.ts')], { PORT: 'http' }, cwd)
  t.equal(await proc.exited, 1)
  t.match(proc.err(), /\[dev\] PORT: must be a port number/)
  const down = start([src('dev.ts')], { DATABASE_URL: 'postgres://x:y@127.0.0.1:1/none', PORT: '0' }, cwd)
  t.equal(await down.exited, 1)
  t.match(down.err(), /\[dev\] could not start: .*ECONNREFUSED/)
})

t.test('tenant-registry serve: runs until SIGTERM, then drains and exits 0', async (t) => {
  const db = await createRegistryDatabase(t)
  const port = await freePort()
  const proc = start([src('bin.ts'), 'serve'], { DATABASE_URL: db.url, JWT_SECRET: SECRET, PORT: String(port), LOG_LEVEL: 'silent' }, tmpdir())
  t.teardown(() => proc.child.kill('SIGKILL'))
  const url = `http://127.0.0.1:${port}`
  await until('the server', healthy(url))
  t.equal((await request(url + '/v1/tenants')).statusCode, 401)
  proc.child.kill('SIGTERM')
  t.equal(await proc.exited, 0)
  t.match(proc.err(), /SIGTERM: shutting down/)
})
