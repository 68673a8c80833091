// The `notes-service` command as an operator runs it: a wrong variable is one line naming it;
// a good environment listens until SIGTERM, then exits 0.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { request } from 'undici'
import { notesEnv, startPlatform } from './fixtures.ts'

const BIN = fileURLToPath(new URL('../src/bin.ts', import.meta.url))

function run (env: NodeJS.ProcessEnv): { child: ReturnType<typeof spawn>, err: () => string } {
  // Without tap's coverage hooks: the command is measured by what it prints, not by lines.
  const child = spawn('env', ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE', process.execPath, BIN], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr?.on('data', (chunk: Buffer) => { err += chunk.toString() })
  return { child, err: () => err }
}

t.test('bad environment: exit 1 and one line naming the variable', async (t) => {
  const { child, err } = run({ SERVICE_TOKEN: 'x' })
  const [code] = await once(child, 'exit')
  t.equal(code, 1)
  t.match(err(), /^\[notes-service\] REGISTRY_URL is required/)
  t.notMatch(err(), /\n\s+at /, 'no stack trace')
})

t.test('a registry that refuses the token: exit 1 naming SERVICE_TOKEN', async (t) => {
  const p = await startPlatform(t)
  const { child, err } = run(notesEnv(p, { SERVICE_TOKEN: 'wrong' }))
  const [code] = await once(child, 'exit')
  t.equal(code, 1)
  t.match(err(), /refused the service token.*SERVICE_TOKEN/)
})

t.test('serves, then drains on SIGTERM', async (t) => {
  const p = await startPlatform(t)
  const { child, err } = run(notesEnv(p, { LOG_LEVEL: 'warn' }))
  const deadline = Date.now() + 20_000
  let url: string | undefined
  while (url === undefined && Date.now() < deadline && child.exitCode === null) {
    url = /listening on (\S+)/.exec(err())?.[1]
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.ok(url, err())
  t.equal((await request(`${url as string}/health`)).statusCode, 200)
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0)
  t.match(err(), /SIGTERM: shutting down/)
})
