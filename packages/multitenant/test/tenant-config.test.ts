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
      if (value.perMinute > 100) throw new Error(`perMinute too high for ${tenant.id}`)
      return { perMinute: Math.floor(value.perMinute) }
    }
  })
  t.same(strict.for(makeTenant('a', { config: { comm: { perMinute: 9.5 } } })), { perMinute: 9 })
  t.throws(() => strict.for(makeTenant('b', { config: { comm: { perMinute: 1000 } } })), /too high for b/)
  t.throws(() => defineTenantConfig({ service: '', defaults: {} }), { code: 'MT_INVALID_OPTION' })
  t.throws(() => defineTenantConfig({ service: 'x', defaults: null as never }), { code: 'MT_INVALID_OPTION' })
})
