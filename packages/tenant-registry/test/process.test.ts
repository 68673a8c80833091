// The entry points as users run them: real processes, real signals.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { tmpdir } from 'node:os'
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
