#!/usr/bin/env node
// `notes-service`: the environment (README), checked; then listen until a signal.
import { closeOnSignals } from '@platform/multitenant'
import { EnvError, loadConfig } from './config.ts'
import { startNotesServer } from './server.ts'

const say = (line: string): void => { process.stderr.write(`[notes-service] ${line}\n`) }
try {
  const running = await startNotesServer(loadConfig())
  say(`listening on ${running.url}`)
  closeOnSignals(running.close, say)
} catch (err) {
  // Configuration mistakes name their variable or option; nothing else is printed for them.
  const code = (err as { code?: unknown }).code
  say(err instanceof EnvError || (typeof code === 'string' && code.startsWith('MT_')) ? (err as Error).message : `could not start: ${String(err)}`)
  process.exit(1)
}
