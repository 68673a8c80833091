import t from 'tap'
import { request } from 'undici'
import { loadConfig } from '../src/config.ts'
import { startCommServer } from '../src/server.ts'
import { SECRET, startPlatform } from './fixtures.ts'

t.test('listens from the environment; a port in use fails the start and closes what it opened', async (t) => {
  const p = await startPlatform(t)
  const env = { REGISTRY_URL: p.registryUrl, SERVICE_TOKEN: p.serviceToken, DATABASE_URL: p.serviceDatabaseUrl, JWT_SECRET: SECRET, PORT: '0', LOG_LEVEL: 'silent', COMM_ROLE: 'api' }
  const running = await startCommServer(loadConfig(env))
  t.teardown(() => running.close())
  t.equal((await request(`${running.url}/health`)).statusCode, 200)
  const port = new URL(running.url).port
  await t.rejects(startCommServer(loadConfig({ ...env, PORT: port })), { code: 'EADDRINUSE' })
  await running.close()
  await running.close()
  t.pass('close() twice is fine')
})
