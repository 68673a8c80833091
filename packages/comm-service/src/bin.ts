#!/usr/bin/env node
// `comm-service`: the environment (README), checked; then serve and deliver until a signal.
import { closeOnSignals } from '@platform/multitenant'
import { EnvError, loadConfig } from './config.ts'
import { startCommServer } from './server.ts'

const say = (line: string): void => { process.stderr.write(`[comm-service] ${line}\n`) }
try {
  const running = await startCommServer(loadConfig())
  say(`listening on ${running.url}`)
  closeOnSignals(running.close, say)
} catch (err) {
  const code = (err as { code?: unknown }).code
  say(err instanceof EnvError || (typeof code === 'string' && code.startsWith('MT_')) ? (err as Error).message : `could not start: ${String(err)}`)
  process.exit(1)
}
