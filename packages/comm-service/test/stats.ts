import type { Running } from './helpers.ts'

export function percentile (values: number[], p: number): number {
  const sorted = [...values].sort((x, y) => x - y)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number
}

/** Polls every 10 ms until the message is sent; returns the time it was seen sent (Date.now()). */
export async function settledFast (call: Running['call'], tenant: string, id: string, ms = 10_000): Promise<number> {
  const deadline = Date.now() + ms
  for (;;) {
    const res = await call('GET', `/v1/messages/${id}`, tenant)
    if (res.body?.status === 'sent') return Date.now()
    if (Date.now() > deadline) throw new Error(`${id} not sent in ${ms} ms (status ${String(res.body?.status)})`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
