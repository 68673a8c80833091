// Prometheus metrics (prom-client), one registry per app. Labels are bounded: channel, tier, reason,
// route and status; never a tenant id or a message id.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { QueueDepth } from './queue/boss.ts'

export interface CommMetrics {
  registry: Registry
  accepted: Counter<'channel' | 'tier'>
  sent: Counter<'channel' | 'tier'>
  failed: Counter<'channel' | 'tier' | 'reason'>
  retried: Counter<'channel' | 'tier'>
  requests: Histogram<'method' | 'route' | 'status'>
}

export function commMetrics (options: { processMetrics: boolean, depth: () => Promise<Map<string, QueueDepth>> }): CommMetrics {
  const registry = new Registry()
  if (options.processMetrics) collectDefaultMetrics({ register: registry })
  const registers = [registry]
  // One query per cluster per scrape answers both gauges (prom-client collects them concurrently).
  let pending: Promise<Map<string, QueueDepth>> | undefined
  const read = async (): Promise<Map<string, QueueDepth>> => {
    if (pending === undefined) {
      pending = options.depth().catch(() => new Map<string, QueueDepth>())
      pending.then(() => setImmediate(() => { pending = undefined }), () => {})
    }
    return await pending
  }
  for (const [name, help, pick] of [
    ['comm_queue_depth', 'Delivery jobs due and waiting for a worker, per cluster', (d: QueueDepth) => d.depth],
    ['comm_queue_oldest_seconds', 'Age of the oldest due delivery job, per cluster', (d: QueueDepth) => d.oldestSeconds]
  ] as const) {
    // eslint-disable-next-line no-new
    new Gauge({
      name,
      help,
      labelNames: ['cluster'],
      registers,
      async collect () {
        for (const [cluster, d] of await read()) this.set({ cluster }, pick(d))
      }
    })
  }
  return {
    registry,
    accepted: new Counter({ name: 'comm_messages_accepted_total', help: 'Messages accepted (202), by channel and tier', labelNames: ['channel', 'tier'], registers }),
    sent: new Counter({ name: 'comm_messages_sent_total', help: 'Messages a provider accepted, by channel and tier', labelNames: ['channel', 'tier'], registers }),
    failed: new Counter({ name: 'comm_messages_failed_total', help: 'Messages that ended failed, by channel, tier and reason (permanent, exhausted)', labelNames: ['channel', 'tier', 'reason'], registers }),
    retried: new Counter({ name: 'comm_messages_retried_total', help: 'Attempts that failed transiently and were scheduled again, by channel and tier', labelNames: ['channel', 'tier'], registers }),
    requests: new Histogram({
      name: 'comm_http_request_duration_seconds',
      help: 'HTTP requests by method, route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers
    })
  }
}
