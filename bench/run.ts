// `pnpm bench` runs every benchmark; `pnpm bench <name> [<name>…]` runs the named ones.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('.', import.meta.url))
const all = readdirSync(dir).filter((f) => f.endsWith('.ts') && f !== 'run.ts').map((f) => f.slice(0, -3)).sort()
const wanted = process.argv.slice(2)
const unknown = wanted.filter((name) => !all.includes(name))
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(', ')}; available: ${all.join(', ')}`)
  process.exit(2)
}
let failed = 0
for (const name of wanted.length > 0 ? wanted : all) {
  process.stderr.write(`bench ${name}\n`)
  const result = spawnSync(process.execPath, [`${dir}${name}.ts`], { stdio: 'inherit' })
  if (result.status !== 0) {
    console.error(`${name} failed (exit ${result.status})`)
    failed++
  }
}
process.exit(failed === 0 ? 0 : 1)
