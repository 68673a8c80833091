#!/usr/bin/env node
import { runMigrateCli } from '../cli/migrate.ts'

process.exitCode = await runMigrateCli(process.argv.slice(2), {
  env: process.env,
  cwd: process.cwd(),
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  tty: process.stderr.isTTY
})
