import { EventEmitter, once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import {
  bindToScope, captureScope, currentScope, currentTenant, currentTenantId, enterScope, forEachTenant,
  isSystemScope, requireTenant, requireTenantId, runAsSystem, runAsTenant, runInCapturedScope, runInScope, tenantScope
} from '../src/context.ts'
import { makeTenant } from './fixtures/tenants.ts'

t.test('outside any scope there is no tenant', async (t) => {
  t.equal(currentScope(), undefined)
  t.equal(currentTenantId(), undefined)
  t.equal(currentTenant(), undefined)
  t.equal(isSystemScope(), false)
  t.throws(() => requireTenantId(), { code: 'TENANT_REQUIRED', statusCode: 400 })
  t.throws(() => requireTenant(), { code: 'TENANT_REQUIRED' })
})

t.test('runAsTenant with an id or a record', async (t) => {
  t.equal(runAsTenant('acme', () => requireTenantId()), 'acme')
  t.equal(runAsTenant('acme', () => currentTenant()), undefined, 'an id alone carries no record')
  t.throws(() => runAsTenant('acme', () => requireTenant()), { code: 'TENANT_REQUIRED' })
  const acme = makeTenant('acme')
  t.equal(runAsTenant(acme, () => requireTenant()), acme)
  t.equal(runAsTenant(acme, () => currentTenantId()), 'acme')
  t.throws(() => runAsTenant('Bad Id', () => 1), { code: 'TENANT_INVALID' })
  t.throws(() => runAsTenant('admin', () => 1), { code: 'TENANT_INVALID' })
  t.equal(await runAsTenant('acme', async () => {
    await sleep(1)
    return currentTenantId()
  }), 'acme', 'survives awaits')
})

t.test('nested scopes: inner wins, outer restored', async (t) => {
  await runAsTenant('outer', async () => {
    t.equal(currentTenantId(), 'outer')
    await runAsTenant('inner', async () => {
      await sleep(1)
      t.equal(currentTenantId(), 'inner')
    })
    t.equal(currentTenantId(), 'outer')
    runAsSystem(() => {
      t.equal(isSystemScope(), true)
      t.equal(currentTenantId(), undefined)
      t.throws(() => requireTenantId(), { code: 'TENANT_REQUIRED' })
    })
    t.equal(currentTenantId(), 'outer')
  })
  t.equal(currentTenantId(), undefined)
})

t.test('scopes are frozen', async (t) => {
  const scope = tenantScope('acme')
  t.ok(Object.isFrozen(scope))
  runInScope(scope, () => t.equal(currentScope(), scope))
  runInScope(undefined, () => t.equal(currentScope(), undefined))
})

t.test('enterScope sets the scope for the rest of an async function', async (t) => {
  await runAsTenant('a', async () => {
    await (async () => {
      await null // after an await, enterWith no longer reaches the caller's synchronous code
      enterScope(tenantScope('b'))
      await sleep(1)
      t.equal(currentTenantId(), 'b')
    })()
    t.equal(currentTenantId(), 'a', 'the caller keeps its own scope')
  })
})

t.test('bindToScope: listeners and timers registered elsewhere keep their tenant', async (t) => {
  const emitter = new EventEmitter()
  const seen: Array<string | undefined> = []
  runAsTenant('acme', () => {
    emitter.on('event', bindToScope(() => seen.push(currentTenantId())))
    emitter.on('event', () => seen.push(currentTenantId())) // unbound: runs as the emitter's caller
  })
  runAsTenant('globex', () => emitter.emit('event'))
  t.same(seen, ['acme', 'globex'])

  // A timer created at start-up (no scope) and one bound inside a scope.
  const bound = runAsTenant('initech', () => bindToScope(function (this: unknown, x: number) { return [currentTenantId(), x, this] }))
  t.same(runAsTenant('other', () => bound.call('self', 7)), ['initech', 7, 'self'])
  const fromTimer = await new Promise((resolve) => {
    runAsTenant('acme', () => setTimeout(bindToScope(() => resolve(currentTenantId())), 1))
  })
  t.equal(fromTimer, 'acme')
  const unboundStartup = bindToScope(() => currentTenantId())
  t.equal(runAsTenant('acme', unboundStartup), undefined, 'bound outside any scope stays outside')
})

t.test('capture and restore, through JSON', async (t) => {
  t.equal(captureScope(), null)
  const captured = runAsTenant('acme', () => JSON.parse(JSON.stringify(captureScope())))
  t.same(captured, { tenantId: 'acme' })
  t.equal(runInCapturedScope(captured, () => currentTenantId()), 'acme')
  const system = runAsSystem(() => captureScope())
  t.same(system, { system: true })
  t.equal(runInCapturedScope(system, () => isSystemScope()), true)
  t.equal(runAsTenant('acme', () => runInCapturedScope(null, () => currentTenantId())), undefined)
  t.throws(() => runInCapturedScope({ tenantId: 'x; drop table' }, () => 1), { code: 'TENANT_INVALID' })
  t.throws(() => runInCapturedScope({ tenantId: 42 } as never, () => 1), { code: 'TENANT_INVALID' })
  t.throws(() => runInCapturedScope('acme' as never, () => 1), { code: 'TENANT_INVALID' })
  t.throws(() => runInCapturedScope({ system: 'yes' } as never, () => 1), { code: 'TENANT_INVALID' })
})

t.test('forEachTenant runs each tenant in its scope with bounded concurrency', async (t) => {
  const ids = Array.from({ length: 40 }, (_, i) => `t${i}`)
  let running = 0
  let peak = 0
  const progress: number[] = []
  const results = await forEachTenant(ids, async (id) => {
    running++
    peak = Math.max(peak, running)
    await sleep(Math.random() * 5)
    running--
    if (id === 't7') throw new Error('boom')
    t.equal(currentTenantId(), id)
    return id.toUpperCase()
  }, { concurrency: 3, onSettled: (_r, done) => progress.push(done) })
  t.equal(peak, 3)
  t.equal(results.length, 40)
  t.same(results.map((r) => r.tenantId), ids, 'results in input order')
  t.same(results.filter((r) => !r.ok).map((r) => r.tenantId), ['t7'])
  t.match(results[7], { ok: false, error: { message: 'boom' } })
  t.match(results[8], { ok: true, value: 'T8' })
  t.same(progress, Array.from({ length: 40 }, (_, i) => i + 1))

  const records = await forEachTenant([makeTenant('acme')], () => currentTenant()?.name)
  t.match(records, [{ ok: true, value: 'Tenant acme' }])
  t.same(await forEachTenant([], () => 1), [])
  await t.rejects(forEachTenant(['a'], () => 1, { concurrency: 0 }), RangeError)
  await t.rejects(forEachTenant(['Bad'], () => 1), { code: 'TENANT_INVALID' })

  const controller = new AbortController()
  const partial = await forEachTenant(ids, async (id) => {
    if (id === 't1') controller.abort()
    await sleep(1)
  }, { concurrency: 1, signal: controller.signal })
  t.equal(partial.length, 2, 'stops starting tenants once aborted')
})

t.test('many concurrent scopes never mix', async (t) => {
  let mismatches = 0
  await Promise.all(Array.from({ length: 2000 }, (_, i) => {
    const id = `tenant-${i % 97}`
    return runAsTenant(id, async () => {
      const emitter = new EventEmitter()
      const got = once(emitter, 'go')
      setTimeout(() => emitter.emit('go'), Math.random() * 3)
      await got
      await sleep(Math.random() * 2)
      if (currentTenantId() !== id) mismatches++
    })
  }))
  t.equal(mismatches, 0)
})
