// Graceful close: the server stops taking requests and lets a send under way finish (its message
// ends `sent`, recorded before close() resolves).
import t from 'tap'
import type { Provider } from '../src/delivery/providers/types.ts'
import { startPlatform, tid } from './fixtures.ts'
import { sleep, startComm, until } from './helpers.ts'

t.test('close() lets an in-flight send finish and record its outcome', async (t) => {
  const p = await startPlatform(t)
  const a = tid('close')
  await p.createTenant(a)
  let started = 0
  let finished = 0
  const provider: Provider = {
    name: 'slow',
    async send (message) {
      started++
      await sleep(1500)
      finished++
      return { providerMessageId: message.id }
    }
  }
  const { app, url, call } = await startComm(t, p, {}, { provider })
  const res = await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', body: 'slow' })
  t.equal(res.status, 202)
  await until(() => started === 1, 5000, 'the send to start')
  await app.close()
  t.equal(finished, 1, 'the send under way finished before close() resolved')
  await t.rejects(fetch(`${url}/health`), 'no longer taking requests')
  // Read it back through another instance: sent, not left in `sending`.
  const other = await startComm(t, p, { role: 'api' })
  t.match((await other.call('GET', `/v1/messages/${res.body.id}`, a)).body, { status: 'sent', attempts: 1 })
})
