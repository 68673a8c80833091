import t from 'tap'
import { runAsTenant } from '../src/context.ts'
import { defineTenantConfig, mergeConfig } from '../src/tenant-config.ts'
import { makeTenant } from './fixtures/tenants.ts'

const comm = defineTenantConfig({
  service: 'comm',
  defaults: { emailFrom: 'no-reply@platform.example', smsSenderId: 'PLATFORM', retry: { attempts: 5, backoffMs: 1000 }, channels: ['email'] }
})

t.test('defaults merged with the tenant record, read from the context', async (t) => {
  const acme = makeTenant('acme', { config: { comm: { emailFrom: 'no-reply@acme.example.com', retry: { attempts: 2 }, channels: ['sms'] } } })
  const globex = makeTenant('globex')
  t.same(runAsTenant(acme, () => comm.get()), {
    emailFrom: 'no-reply@acme.example.com', smsSenderId: 'PLATFORM', retry: { attempts: 2, backoffMs: 1000 }, channels: ['sms']
  })
  t.same(runAsTenant(globex, () => comm.get()), comm.defaults, 'a tenant without settings gets the defaults')
  t.equal(comm.for(acme), comm.for(acme), 'computed once per record')
  t.ok(Object.isFrozen(comm.for(acme).retry))
  t.throws(() => comm.get(), { code: 'TENANT_REQUIRED' })
  t.throws(() => runAsTenant('acme', () => comm.get()), { code: 'TENANT_REQUIRED' }, 'an id alone has no record')
  t.equal(comm.defaults.retry.attempts, 5, 'defaults are not changed by merging')
})

t.test('merging ignores prototype keys and undefined values', async (t) => {
  const merged = mergeConfig({ a: 1, nested: { b: 2 } } as Record<string, unknown>, JSON.parse('{"__proto__": {"polluted": true}, "constructor": 1, "nested": {"c": 3}}'))
  t.same(merged, { a: 1, nested: { b: 2, c: 3 } })
  t.equal(({} as Record<string, unknown>).polluted, undefined)
  t.same(mergeConfig({ a: 1 }, { a: undefined }), { a: 1 })
  t.same(mergeConfig({ a: 1 }, 'nonsense'), { a: 1 })
})

t.test('validation and option errors', async (t) => {
  const strict = defineTenantConfig({
    service: 'comm',
    defaults: { perMinute: 10 },
    validate: (value, tenant) => {
      if (value.perMinute > 100) throw new Error(`perMinute too high for ${tenant?.id ?? 'a new section'}`)
      return { perMinute: Math.floor(value.perMinute) }
    }
  })
  t.same(strict.for(makeTenant('a', { config: { comm: { perMinute: 9.5 } } })), { perMinute: 9 })
  t.throws(() => strict.for(makeTenant('b', { config: { comm: { perMinute: 1000 } } })), { code: 'TENANT_CONFIG_INVALID', message: /comm settings of tenant b are not valid: perMinute too high for b/ })
  t.throws(() => defineTenantConfig({ service: '', defaults: {} }), { code: 'MT_INVALID_OPTION' })
  t.throws(() => defineTenantConfig({ service: 'x', defaults: null as never }), { code: 'MT_INVALID_OPTION' })
})

// A service's settings as an interface (no index signature), as teams write them.
interface CommSettings {
  emailFrom: string
  smsSenderId: string
  retry: { attempts: number, backoffMs: number }
  providers: Record<string, { kind: 'smtp' | 'log', url?: string }>
}

t.test('interfaces, checks before a write, and bad stored values reported once', async (t) => {
  const reported: Array<[string, string[]]> = []
  const defaults: CommSettings = { emailFrom: 'no-reply@platform.test', smsSenderId: 'PLATFORM', retry: { attempts: 5, backoffMs: 1000 }, providers: {} }
  const settings = defineTenantConfig<CommSettings>({
    service: 'comm',
    defaults,
    validate: (value) => {
      const problems: string[] = []
      if (!/^[^@\s]+@[^@\s]+$/.test(value.emailFrom)) problems.push('emailFrom must be an email address')
      if (!Number.isInteger(value.retry.attempts) || value.retry.attempts < 0 || value.retry.attempts > 20) problems.push('retry.attempts must be a whole number from 0 to 20')
      for (const [name, provider] of Object.entries(value.providers)) if (provider.kind !== 'smtp' && provider.kind !== 'log') problems.push(`providers.${name}.kind must be smtp or log`)
      return problems.length > 0 ? { problems } : value
    },
    onInvalid: (tenant, problems) => reported.push([tenant.id, problems])
  })
  const ok = settings.check({ emailFrom: 'hello@acme.test', providers: { main: { kind: 'smtp', url: 'smtp://mail' } } })
  t.ok(ok.ok)
  if (ok.ok) t.equal(ok.value.retry.attempts, 5, 'typed: the merged settings')
  t.same(settings.check({ emailFrm: 'x@y', retry: { attempts: 99, tries: 1 }, providers: { p: { kind: 'fax' } } }), {
    ok: false,
    problems: ['emailFrm is not a setting', 'retry.tries is not a setting', 'retry.attempts must be a whole number from 0 to 20', 'providers.p.kind must be smtp or log']
  }, 'every problem, each naming its key; map entries (providers) are free-form')
  t.same(settings.check('text'), { ok: false, problems: ['config.comm must be an object'] })
  t.ok(settings.check(undefined).ok, 'no section: the defaults')

  const broken = makeTenant('broken', { config: { comm: { emailFrom: 'not an address' } } })
  for (let i = 0; i < 3; i++) t.throws(() => settings.for(broken), { code: 'TENANT_CONFIG_INVALID', message: /emailFrom must be an email address/ })
  t.same(reported, [['broken', ['emailFrom must be an email address']]], 'reported once per record version, not per call')
  const fixed = makeTenant('broken', { version: 2, config: { comm: { emailFrom: 'ops@broken.test' } } })
  t.equal(settings.for(fixed).emailFrom, 'ops@broken.test', 'a new record version is evaluated afresh')

  const lenient = defineTenantConfig<CommSettings>({ service: 'comm', defaults, invalid: 'defaults', strict: false, validate: (v) => { if (v.smsSenderId.length > 11) throw new Error('smsSenderId is at most 11 characters'); return v }, onInvalid: (tenant, problems) => reported.push([tenant.id, problems]) })
  t.same(lenient.for(makeTenant('long', { config: { comm: { smsSenderId: 'MUCH-TOO-LONG-NAME' } } })), defaults, 'invalid: defaults serves the defaults')
  t.same(reported.at(-1), ['long', ['smsSenderId is at most 11 characters']])
  t.same(lenient.check({ extra: 1 }), { ok: true, value: { ...defaults, extra: 1 } }, 'strict: false lets unknown keys through')
  t.throws(() => defineTenantConfig({ service: 'x', defaults: {}, invalid: 'ignore' as never }), { code: 'MT_INVALID_OPTION' })
})
