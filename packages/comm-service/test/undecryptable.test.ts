// A tenant's webhook signing secret that cannot be decrypted (sealed with a key the service no
// longer has, or altered) is a failure no retry fixes: the message fails at once, after one
// attempt, with a lastError that says why and holds no secret material; nothing is sent unsigned.
import t from 'tap'
import { KeyRing, secretContext } from '../src/secrets.ts'
import { startPlatform, tid } from './fixtures.ts'
import { settled, startComm } from './helpers.ts'
import { httpPeer } from './peers.ts'

const K1 = KeyRing.generate('k1')
const OLD = KeyRing.generate('old')
const OWNER = { roles: ['owner'], scope: 'config:write messages:read messages:send' }

t.test('an undecryptable webhook secret fails the message at once, permanently, with a clear lastError', async (t) => {
  const p = await startPlatform(t)
  const receiver = await httpPeer(t, '/hook')
  const lost = tid('whs-lost')
  const altered = tid('whs-altered')
  const secret = 'whsec_' + Buffer.alloc(32, 7).toString('base64')
  // Sealed with a key that has since left COMM_ENCRYPTION_KEYS.
  const lostBox = KeyRing.parse(OLD).seal(secret, secretContext(lost, 'webhook.secret'))
  // Sealed with the current key, then altered (still the shape of a box).
  const good = KeyRing.parse(K1).seal(secret, secretContext(altered, 'webhook.secret'))
  const alteredBox = good.slice(0, -2) + (good.at(-2) === 'A' ? 'B' : 'A') + (good.at(-1) as string)
  const at = new Date().toISOString()
  await p.createTenant(lost, { config: { comm: { webhook: { secrets: [{ secret: lostBox, createdAt: at, expiresAt: null }] } } } })
  await p.createTenant(altered, { config: { comm: { webhook: { secrets: [{ secret: alteredBox, createdAt: at, expiresAt: null }] } } } })
  // Retries would come fast: a message that were retried would show more than one attempt.
  const { call } = await startComm(t, p, { keys: KeyRing.parse(K1), allowWebhookHosts: ['127.0.0.1'], retry: { attempts: 5, baseMs: 20, maxMs: 50 } })

  for (const [tenant, box, reason] of [[lost, lostBox, /^webhook\.secret cannot be decrypted: sealed with key old, which COMM_ENCRYPTION_KEYS lacks$/], [altered, alteredBox, /^webhook\.secret cannot be decrypted: the secret does not open with its key/]] as const) {
    const accepted = await call('POST', '/v1/messages', tenant, { channel: 'webhook', to: receiver.url, body: '{"event":"x"}' }, OWNER)
    t.equal(accepted.status, 202)
    const failed = await settled(call, tenant, accepted.body.id, ['failed', 'sent'])
    t.equal(failed.status, 'failed', `${tenant}: failed`)
    t.equal(failed.attempts, 1, `${tenant}: after one attempt, no retry`)
    t.match(failed.lastError, reason, `${tenant}: lastError says why`)
    const text = JSON.stringify(failed)
    t.notOk(text.includes(box) || text.includes(box.split('.').at(-1) as string) || text.includes(secret.slice(6)), `${tenant}: no secret material in the message`)
  }
  t.equal(receiver.received.length, 0, 'nothing was sent, signed or not')
})
