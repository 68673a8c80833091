#!/usr/bin/env node
// `comm-service`: the environment (README), checked; then serve and deliver until a signal.
import { EnvError, loadConfig } from './config.ts'
import { startCommServer } from './server.ts'

const say = (line: string): void => { process.stderr.write(`[comm-service] ${line}\n`) }
try {
  const running = await startCommServer(loadConfig())
  say(`listening on ${running.url}`)
  let stopping = false
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (stopping) process.exit(130)
      stopping = true
      say(`${signal}: shutting down`)
      running.close().then(() => process.exit(0), (err: unknown) => {
        say(`shutdown failed: ${String(err)}`)
        process.exit(1)
      })
    })
  }
} catch (err) {
  const code = (err as { code?: unknown }).code
  say(err instanceof EnvError || (typeof code === 'string' && code.startsWith('MT_')) ? (err as Error).message : `could not start: ${String(err)}`)
  process.exit(1)
}
