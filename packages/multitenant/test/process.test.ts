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
