// listenService: listen, or close what the app opened; close() once however often it is called.
import Fastify from 'fastify'
import t from 'tap'
import { listenService } from '../../src/fastify/plugin.ts'

t.test('listens; a port in use closes the app; close() is idempotent', async (t) => {
  let closed = 0
  const first = Fastify()
  first.addHook('onClose', async () => { closed++ })
  const running = await listenService(first, { port: 0, host: '127.0.0.1' })
  t.match(running.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.equal((await fetch(`${running.url}/`)).status, 404, 'it answers')
  const second = Fastify()
  second.addHook('onClose', async () => { closed++ })
  await t.rejects(listenService(second, { port: Number(new URL(running.url).port), host: '127.0.0.1' }), { code: 'EADDRINUSE' })
  t.equal(closed, 1, 'the app that could not listen was closed')
  const a = running.close()
  t.equal(running.close(), a, 'the same promise')
  await a
  t.equal(closed, 2)
})
