// closeOnSignals in a real process: a signal drains (close) and exits 0; a failing close exits 1.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const MODULE = fileURLToPath(new URL('../src/process.ts', import.meta.url))

async function run (fails: boolean, signal: NodeJS.Signals): Promise<{ code: number | null, out: string }> {
  const program = `import { closeOnSignals } from ${JSON.stringify(MODULE)}
closeOnSignals(async () => { console.log('closing'); if (${String(fails)}) throw new Error('pool stuck') }, (line) => console.log(line))
setInterval(() => {}, 1000)
console.log('ready')`
  const child = spawn(process.execPath, ['--input-type=module', '-e', program], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => {
    out += String(d)
    if (out.includes('ready') && !out.includes('shutting')) child.kill(signal)
  })
  const [code] = await once(child, 'exit') as [number | null]
  return { code, out }
}

t.test('a signal drains, then exits; a failed drain exits 1', async (t) => {
  t.match(await run(false, 'SIGTERM'), { code: 0, out: /SIGTERM: shutting down\nclosing\n/ })
  t.match(await run(false, 'SIGHUP'), { code: 0, out: /SIGHUP: shutting down/ })
  t.match(await run(true, 'SIGINT'), { code: 1, out: /shutdown failed: Error: pool stuck/ })
})

// runService: a service's whole entry point.
async function service (start: string): Promise<{ code: number | null, err: string }> {
  const program = `import { runService } from ${JSON.stringify(MODULE)}
await runService('demo', async () => { ${start} })
setInterval(() => {}, 1000)`
  const child = spawn(process.execPath, ['--input-type=module', '-e', program], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (d: Buffer) => {
    err += String(d)
    if (err.includes('listening on') && !err.includes('shutting')) child.kill('SIGTERM')
  })
  const [code] = await once(child, 'exit') as [number | null]
  return { code, err }
}

t.test('runService: says where it listens and drains on a signal; a failed start says why and exits 1', async (t) => {
  t.match(await service("return { url: 'http://127.0.0.1:1', close: async () => { process.stderr.write('drained') } }"), { code: 0, err: /\[demo\] listening on http:\/\/127\.0\.0\.1:1\n\[demo\] SIGTERM: shutting down\ndrained/ })
  t.match(await service("throw Object.assign(new Error('Invalid environment: PORT must be a port'), { code: 'MT_INVALID_ENV' })"), { code: 1, err: /^\[demo\] Invalid environment: PORT must be a port\n$/ })
  t.match(await service("throw Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' })"), { code: 1, err: /^\[demo\] could not start: Error: listen EADDRINUSE\n$/ })
})
