#!/usr/bin/env node
import { runMigrateCli } from '../cli/migrate.ts'

/* c8 ignore start: the bin only wires the process to runMigrateCli, which the tests cover */

process.exitCode = await runMigrateCli(process.argv.slice(2), {
  env: process.env,
  cwd: process.cwd(),
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  tty: process.stderr.isTTY
})
/* c8 ignore stop */
