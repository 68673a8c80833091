/**
 * Runs `close` on SIGINT, SIGTERM or SIGHUP and exits 0 when it is done (1 if it failed); a
 * second signal while closing exits at once. For a service's entry point: drain, then exit.
 */
export function closeOnSignals (close: () => Promise<void>, log: (line: string) => void): void {
  let stopping = false
  const onSignal = (signal: NodeJS.Signals): void => {
    /* c8 ignore next 4: an impatient second Ctrl-C; racy to provoke in a test */
    if (stopping) {
      log(`${signal} again: exiting now`)
      process.exit(130)
    }
    stopping = true
    log(`${signal}: shutting down`)
    close().then(() => process.exit(0), failed)
  }
  const failed = (err: unknown): void => {
    log(`shutdown failed: ${String(err)}`)
    process.exit(1)
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal)
}

/** A service that listens: where, and how to stop it (idempotent). */
export interface RunningService {
  url: string
  close: () => Promise<void>
}

/**
 * A service's entry point: starts it, says where it listens, and closes it on a signal
 * (`closeOnSignals`). A start that fails prints one line and exits 1: a configuration mistake (the
 * library's `MT_…` codes, `EnvError` among them, name the variable or option) as its own message,
 * anything else as "could not start: …".
 */
export async function runService (name: string, start: () => Promise<RunningService>): Promise<void> {
  const say = (line: string): void => { process.stderr.write(`[${name}] ${line}\n`) }
  try {
    const running = await start()
    say(`listening on ${running.url}`)
    closeOnSignals(running.close, say)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    say(typeof code === 'string' && code.startsWith('MT_') ? (err as Error).message : `could not start: ${String(err)}`)
    process.exit(1)
  }
}
