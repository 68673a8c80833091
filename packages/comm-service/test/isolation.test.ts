// Isolation on every route, under concurrency: 20 tenants, 2,000 mixed requests at once (send,
// read, list with filters, cancel, redrive, and attempts at each other's messages by id, with the
// header alone or with a token for another tenant). Zero cross-tenant results.
import t from 'tap'
import { PermanentError, type Provider } from '../src/delivery/providers/types.ts'
import { startPlatform, tid } from './fixtures.ts'
import { startComm } from './helpers.ts'

t.test('2,000 concurrent mixed requests across 20 tenants: nothing crosses', async (t) => {
  const p = await startPlatform(t)
  const tenants = Array.from({ length: 20 }, (_, i) => tid(`iso${i}`))
  // Each its own sender id (the registry keeps them unique): `T<n><file suffix>`.
  const senderOf = (id: string): string => `T${id.replace(/^comm-iso/, '').replace('-', '')}`.slice(0, 11)
  for (const id of tenants) await p.createTenant(id, { config: { comm: { smsSenderId: senderOf(id) } } })
  // The provider records whose message it sent and with which sender: each must be its own.
  const wrong: string[] = []
  const provider: Provider = {
    name: 'check',
    async send (message, { tenant, settings }) {
      if (message.metadata.tenant !== tenant.id || settings.smsSenderId !== senderOf(tenant.id)) wrong.push(`${tenant.id} sent ${JSON.stringify(message.metadata)} as ${settings.smsSenderId}`)
      // Half of them fail for good, so that redrives have something to act on.
      if (message.body?.endsWith('fail') === true) throw new PermanentError('refused')
      return { providerMessageId: message.id }
    }
  }
  const { call } = await startComm(t, p, { concurrency: { local: 16, perTenant: 4 } }, { provider })
  const sms = (tenant: string, n: number) => ({ channel: 'sms', to: `+1555${String(n).padStart(7, '0')}`, body: n % 2 === 0 ? 'ok' : 'fail', metadata: { tenant } })

  // Seed: 10 messages per tenant.
  const owned = new Map<string, string[]>()
  await Promise.all(tenants.map(async (tenant) => {
    const ids: string[] = []
    for (let i = 0; i < 10; i++) ids.push((await call('POST', '/v1/messages', tenant, sms(tenant, i))).body.id)
    owned.set(tenant, ids)
  }))
  const ownerOf = new Map<string, string>()
  for (const [tenant, ids] of owned) for (const id of ids) ownerOf.set(id, tenant)
  const foreign = (tenant: string, n: number): string => {
    const other = tenants[(tenants.indexOf(tenant) + 1 + (n % 19)) % 20] as string
    return (owned.get(other) as string[])[n % 10] as string
  }

  const problems: string[] = []
  const ops = Array.from({ length: 2000 }, (_, n) => async () => {
    const tenant = tenants[n % 20] as string
    const mine = (owned.get(tenant) as string[])[n % 10] as string
    const theirs = foreign(tenant, n)
    const admin = { roles: ['admin'] }
    switch (n % 10) {
      case 0: case 1: {
        const res = await call('POST', '/v1/messages', tenant, sms(tenant, n))
        if (res.status !== 202) problems.push(`POST ${tenant}: ${res.status}`)
        else ownerOf.set(res.body.id, tenant)
        break
      }
      case 2: {
        const res = await call('GET', `/v1/messages/${mine}`, tenant)
        if (res.status !== 200 || res.body.metadata.tenant !== tenant) problems.push(`GET own ${tenant}: ${res.status} ${JSON.stringify(res.body?.metadata)}`)
        break
      }
      case 3: {
        const res = await call('GET', '/v1/messages?limit=100', tenant)
        for (const item of res.body.items ?? []) if (item.metadata.tenant !== tenant) problems.push(`list ${tenant} shows ${item.id} of ${String(item.metadata.tenant)}`)
        break
      }
      case 4: {
        const res = await call('GET', `/v1/messages?channel=sms&status=${n % 20 < 10 ? 'sent' : 'failed'}&limit=50`, tenant)
        for (const item of res.body.items ?? []) if (item.metadata.tenant !== tenant) problems.push(`filtered list ${tenant} shows ${item.id}`)
        break
      }
      case 5: {
        const res = await call('GET', `/v1/messages/${theirs}`, tenant)
        if (res.status !== 404 || JSON.stringify(res.body).includes(theirs)) problems.push(`GET foreign ${tenant}: ${res.status}`)
        break
      }
      case 6: {
        const res = await call('POST', `/v1/messages/${theirs}/cancel`, tenant)
        if (res.status !== 404) problems.push(`cancel foreign ${tenant}: ${res.status}`)
        break
      }
      case 7: {
        const res = await call('POST', `/v1/messages/${theirs}/retry`, tenant, undefined, admin)
        if (res.status !== 404) problems.push(`retry foreign ${tenant}: ${res.status}`)
        break
      }
      case 8: {
        // The other tenant's header with this tenant's token: refused before anything is read.
        const other = ownerOf.get(theirs) as string
        const res = await call('GET', `/v1/messages/${theirs}`, tenant, undefined, { headers: { 'x-tenant-id': other } })
        if (res.status !== 403 || res.body.code !== 'TENANT_MISMATCH') problems.push(`header swap ${tenant}→${other}: ${res.status}`)
        break
      }
      default: {
        const res = await call('POST', `/v1/messages/${mine}/retry`, tenant, undefined, admin)
        if (![200, 409].includes(res.status) || (res.status === 200 && res.body.metadata.tenant !== tenant)) problems.push(`retry own ${tenant}: ${res.status}`)
      }
    }
  })
  // All 2,000 in flight at once.
  await Promise.all(ops.map(async (op) => await op()))
  t.same(problems, [], 'zero cross-tenant results and every own request answered')
  await new Promise((resolve) => setTimeout(resolve, 1500))
  t.same(wrong, [], 'every message was sent as its own tenant, with its own sender id')
})
