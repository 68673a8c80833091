// Both services' OpenAPI documents, taken from the running services, pass `redocly lint` with no
// errors, and follow the platform's conventions: every operation has an operationId, a tag, a
// success answer and error answers with the shared error schema; public routes say so.
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { request } from 'undici'
import { startDevStack } from '../src/dev.ts'
import { createStackDatabase, purgeDemoTenants } from './fixtures.ts'

const ROOT = fileURLToPath(new URL('../../..', import.meta.url))
const REDOCLY = join(ROOT, 'node_modules', '.bin', 'redocly')

interface Operation { operationId?: string, tags?: string[], summary?: string, security?: unknown[], responses?: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }> }

t.test('the registry\'s and the communication service\'s OpenAPI documents lint clean', async (t) => {
  const db = await createStackDatabase(t)
  const cwd = await mkdtemp(join(tmpdir(), 'openapi-'))
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  const stack = await startDevStack({ env: { DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent' }, cwd, print: () => {} })
  t.teardown(stack.close)
  t.teardown(async () => await purgeDemoTenants(stack.info))
  const files: string[] = []
  for (const [name, base] of [['registry', stack.info.registryUrl], ['comm', stack.info.commUrl]] as const) {
    const res = await request(`${base}/docs/json`)
    t.equal(res.statusCode, 200)
    const doc = await res.body.json() as { paths: Record<string, Record<string, Operation>>, components?: { schemas?: Record<string, unknown> } }
    t.ok(doc.components?.schemas?.PlatformError !== undefined, `${name}: the error schema is a shared component`)
    const ids = new Set<string>()
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        const where = `${name}: ${method.toUpperCase()} ${path}`
        t.ok(op.operationId !== undefined && !ids.has(op.operationId), `${where} has a unique operationId (${String(op.operationId)})`)
        ids.add(op.operationId as string)
        t.ok((op.tags?.length ?? 0) > 0, `${where} has a tag`)
        const statuses = Object.keys(op.responses ?? {})
        t.ok(statuses.some((s) => /^[23]/.test(s)), `${where} declares its success answer`)
        const errors = statuses.filter((s) => /^[45]/.test(s))
        if (!['/health', '/ready', '/metrics'].includes(path)) {
          t.ok(errors.length > 0, `${where} declares its error answers`)
          t.ok(errors.every((s) => op.responses?.[s]?.content?.['application/json']?.schema?.$ref === '#/components/schemas/PlatformError'), `${where}: errors use the shared schema`)
        }
      }
    }
    const file = join(cwd, `${name}.json`)
    await writeFile(file, JSON.stringify(doc, null, 2))
    files.push(file)
  }
  const lint = spawnSync(REDOCLY, ['lint', '--config', join(ROOT, 'redocly.yaml'), '--format', 'summary', ...files], { encoding: 'utf8', env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' } })
  const said = `${lint.stdout}${lint.stderr}`
  t.equal(lint.status, 0, said)
  t.notMatch(said, /^error/m, 'redocly: no errors')
  t.comment(said.split('\n').filter((line) => /^(error|warning) /.test(line)).join('; ') || 'redocly: no errors, no warnings')
})
