#!/usr/bin/env node
import { runCli } from './cli.ts'

const code = await runCli(process.argv.slice(2), {
  env: process.env,
  cwd: process.cwd(),
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text)
})
process.exitCode = code
