// The library as an outside team gets it: packed as it would be published (prepack builds
// dist/), installed with npm into a project outside the workspace, type-checked with both module
// resolutions that work (nodenext, bundler) and run.
import { spawnSync } from 'node:child_process'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('..', import.meta.url))
// npm and pnpm read these; tap's coverage variables must not reach the child programs.
const env = { ...process.env, NODE_OPTIONS: '', NODE_V8_COVERAGE: '', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' }

function run (cmd: string, args: string[], cwd: string): { status: number | null, out: string } {
  const result = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 240_000 })
  return { status: result.status, out: `${result.stdout ?? ''}${result.stderr ?? ''}${result.error?.message ?? ''}` }
}

const PROGRAM = `import Fastify from 'fastify'
import { assertClaims, currentTenantId, defineTenantConfig, runAsTenant, type Tenant } from '@platform/multitenant'
import { multitenantOptionsFromEnv, multitenantPlugin, withTenant, type MultitenantPluginOptions } from '@platform/multitenant/fastify'
import { tenantPropagation } from '@platform/multitenant/http'
import { loadMigrations } from '@platform/multitenant/migrations'
import { DEFAULT_GROUP_ROLE, TenantDb, tenantRoleStatements } from '@platform/multitenant/pg'
import { RegistryClient } from '@platform/multitenant/registry'

const acme: Tenant = { id: 'acme', name: 'Acme', status: 'active', tier: 'standard', schema: 'tenant_acme', database: 'default', domains: [], config: { comm: { emailFrom: 'no-reply@acme.test' } }, limits: {}, metadata: {}, createdAt: '', updatedAt: '', version: 1 }
const comm = defineTenantConfig<{ emailFrom: string }>({ service: 'comm', defaults: { emailFrom: 'no-reply@platform.test' } })
const app = Fastify()
await app.register(multitenantPlugin, { provider: { getTenant: (id: string) => id === 'acme' ? acme : null } })
app.get('/whoami', withTenant(async (request) => ({ tenant: currentTenantId(), id: request.tenant.id, from: comm.get().emailFrom })))
const fromEnv: MultitenantPluginOptions = multitenantOptionsFromEnv({ REGISTRY_URL: 'http://registry:4000', SERVICE_TOKEN: 't', JWT_SECRET: 'x'.repeat(32), DATABASE_URL: 'postgres://svc@db/platform' })
const res = await app.inject({ url: '/whoami', headers: { 'x-tenant-id': 'acme' } })
await app.close()
const db = new TenantDb({ url: 'postgres://nobody@127.0.0.1:1/none' })
await db.close()
console.log(JSON.stringify({
  answer: res.json(),
  env: Object.keys(fromEnv).sort(),
  inScope: await runAsTenant('acme', async () => currentTenantId()),
  claims: assertClaims({ sub: 'u', iss: 'i', aud: 'a', exp: 1, roles: ['owner'] }).roles,
  group: DEFAULT_GROUP_ROLE,
  role: tenantRoleStatements('acme')[0],
  kinds: [typeof RegistryClient, typeof tenantPropagation, typeof loadMigrations]
}))
`

t.test('packed, installed outside the workspace, type-checked and run', { timeout: 600_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mt-package-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const packed = run('pnpm', ['pack', '--pack-destination', dir], root)
  t.equal(packed.status, 0, `pnpm pack: ${packed.out.slice(-400)}`)
  const tarball = (await readdir(dir)).find((f) => f.endsWith('.tgz'))
  t.ok(tarball, 'a tarball')
  const listing = run('tar', ['-tzf', join(dir, tarball as string)], dir).out
  t.match(listing, /package\/dist\/index\.js/, 'dist/ is in it (prepack built it)')
  t.match(listing, /package\/dist\/pg\/index\.d\.ts/, 'with declarations')
  t.notMatch(listing, /package\/test\//, 'tests are not')

  const app = join(dir, 'app')
  await rm(app, { recursive: true, force: true })
  spawnSync('mkdir', ['-p', app])
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'outside-app', private: true, type: 'module' }))
  const installed = run('npm', ['install', '--no-save', '--loglevel=error', join(dir, tarball as string),
    'fastify@^5', 'drizzle-orm@~0.45.0', 'postgres@^3.4.7', 'undici@^7', 'typescript@~5.9', '@types/node@^24'], app)
  t.equal(installed.status, 0, `npm install: ${installed.out.slice(-600)}`)

  await writeFile(join(app, 'app.ts'), PROGRAM)
  const common = { strict: true, noEmit: true, skipLibCheck: true, verbatimModuleSyntax: true, allowImportingTsExtensions: true, target: 'es2024', types: ['node'] }
  await writeFile(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...common, module: 'nodenext', moduleResolution: 'nodenext' }, files: ['app.ts'] }))
  await writeFile(join(app, 'tsconfig.bundler.json'), JSON.stringify({ compilerOptions: { ...common, module: 'esnext', moduleResolution: 'bundler' }, files: ['app.ts'] }))
  const tsc = join(app, 'node_modules', 'typescript', 'bin', 'tsc')
  const nodenext = run(process.execPath, [tsc, '-p', 'tsconfig.json'], app)
  t.equal(nodenext.status, 0, `tsc (nodenext): ${nodenext.out}`)
  const bundler = run(process.execPath, [tsc, '-p', 'tsconfig.bundler.json'], app)
  t.equal(bundler.status, 0, `tsc (bundler): ${bundler.out}`)

  const ran = run(process.execPath, ['app.ts'], app)
  t.equal(ran.status, 0, ran.out)
  t.same(JSON.parse(ran.out.trim().split('\n').at(-1) as string), {
    answer: { tenant: 'acme', id: 'acme', from: 'no-reply@acme.test' },
    env: ['auth', 'db', 'registry'],
    inScope: 'acme',
    claims: ['owner'],
    group: 'platform_services',
    role: 'create role "tenant_acme" nologin',
    kinds: ['function', 'function', 'function']
  })
  const bin = run(join(app, 'node_modules', '.bin', 'tenant-migrate'), ['--help'], app)
  t.equal(bin.status, 0, `the tenant-migrate bin runs: ${bin.out.slice(-300)}`)

  // The optional peers are optional: without them, an option that needs one fails at start with
  // an error naming the option and the package, not ERR_MODULE_NOT_FOUND from deep inside.
  const bare = join(dir, 'bare')
  spawnSync('mkdir', ['-p', bare])
  await writeFile(join(bare, 'package.json'), JSON.stringify({ name: 'bare-app', private: true, type: 'module' }))
  // --legacy-peer-deps: npm resolves optional peers it does not install, and since postgres 4 is
  // out it picks postgres@4 for drizzle-orm's `postgres >=3` and then refuses our `^3.4.7` (ERESOLVE).
  // The library needs postgres 3 (README, Install); what is checked here is that nothing optional
  // comes in and that each option without its peer fails clearly.
  const bareInstall = run('npm', ['install', '--no-save', '--loglevel=error', '--legacy-peer-deps', join(dir, tarball as string), 'fastify@^5'], bare)
  t.equal(bareInstall.status, 0, `npm install without the optional peers: ${bareInstall.out.slice(-600)}`)
  for (const peer of ['postgres', 'drizzle-orm', 'undici', '@fastify/jwt', 'get-jwks']) {
    t.equal(run(process.execPath, ['-e', `import('${peer}').then(() => process.exit(1), () => process.exit(0))`], bare).status, 0, `${peer} is not installed`)
  }
  await writeFile(join(bare, 'app.mjs'), `import Fastify from 'fastify'
import { multitenantPlugin } from '@platform/multitenant/fastify'
const provider = { getTenant: () => null }
const cases = {
  db: { provider, db: { url: 'postgres://svc@127.0.0.1:1/x' } },
  registry: { registry: { url: 'http://127.0.0.1:1', token: 't' } },
  auth: { provider, auth: { secret: 'x'.repeat(32), issuer: 'i', audience: 'a' } },
  jwks: { provider, auth: { jwksUrl: 'https://idp.example.com/certs', issuer: 'i', audience: 'a' } }
}
const out = {}
for (const [name, options] of Object.entries(cases)) {
  const app = Fastify()
  app.register(multitenantPlugin, options)
  try { await app.ready(); out[name] = 'started' } catch (err) { out[name] = err.code + ': ' + err.message }
  await app.close().catch(() => {})
}
const plain = Fastify()
await plain.register(multitenantPlugin, { provider: { getTenant: () => null } })
out.plain = 'started'
console.log(JSON.stringify(out))
`)
  const bareRun = run(process.execPath, ['app.mjs'], bare)
  t.equal(bareRun.status, 0, bareRun.out)
  const result = JSON.parse(bareRun.out.trim().split('\n').at(-1) as string) as Record<string, string>
  t.match(result.db, /^MT_INVALID_OPTION: Invalid option: db needs the optional peer dependencies "postgres" and "drizzle-orm".*npm install postgres drizzle-orm/)
  t.match(result.registry, /^MT_INVALID_OPTION: .*registry needs the optional peer dependency "undici".*npm install undici/)
  t.match(result.auth, /^MT_INVALID_OPTION: .*auth needs the optional peer dependency "@fastify\/jwt"/)
  t.match(result.jwks, /^MT_INVALID_OPTION: .*auth needs the optional peer dependency "@fastify\/jwt"/, 'the first missing peer is named')
  t.equal(result.plain, 'started', 'the plugin alone needs none of them')
})
