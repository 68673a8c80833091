import t from 'tap'
import { retryAfterMs } from '../src/index.ts'

t.test('Retry-After as seconds or an HTTP date', async (t) => {
  const now = Date.parse('2026-11-24T00:00:00Z')
  t.equal(retryAfterMs('7', now), 7000)
  t.equal(retryAfterMs(['2', '9'], now), 2000, 'the first of a list')
  t.equal(retryAfterMs('Tue, 24 Nov 2026 00:00:10 GMT', now), 10_000)
  t.equal(retryAfterMs('Mon, 23 Nov 2026 00:00:00 GMT', now), 0, 'a time already past')
  t.equal(retryAfterMs('soon', now), undefined)
  t.equal(retryAfterMs(' ', now), undefined)
  t.equal(retryAfterMs(undefined), undefined)
})
