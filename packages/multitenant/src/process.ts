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
