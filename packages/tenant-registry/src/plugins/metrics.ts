import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { TenantStore } from '../tenants.ts'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: RegistryMetrics
  }
}

export interface RegistryMetrics {
  registry: Registry
  provisioned: Counter<'outcome'>
  provisionSeconds: Histogram
  waiters: Gauge
}

export interface MetricsOptions {
  store: TenantStore
  /** Node process metrics (heap, event loop lag, …); default true. */
  processMetrics?: boolean
  /** Runs before `/metrics` answers (the OPS_TOKEN check; it lets everything through when unset). */
  onRequest: (request: FastifyRequest) => Promise<void>
}

/**
 * Prometheus metrics on `GET /metrics` (text exposition format), one prom-client registry per
 * app so several instances in one process do not share counters.
 */
async function metrics (app: FastifyInstance, options: MetricsOptions): Promise<void> {
  const registry = new Registry()
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry })
  const requests = new Histogram({
    name: 'registry_http_request_duration_seconds',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: [registry]
  })
  const provisioned = new Counter({
    name: 'registry_tenants_provisioned_total',
    help: 'Tenant creations by outcome (created, conflict, failed)',
    labelNames: ['outcome'],
    registers: [registry]
  })
  const provisionSeconds = new Histogram({
    name: 'registry_tenant_provision_duration_seconds',
    help: 'Time to create and provision one tenant (row, role, schema)',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [registry]
  })
  const waiters = new Gauge({ name: 'registry_change_feed_waiters', help: 'Long polls waiting on the change feed', registers: [registry] })
  const store = options.store
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'registry_tenants',
    help: 'Tenants by status',
    labelNames: ['status'],
    registers: [registry],
    async collect () {
      this.reset()
      for (const [status, n] of await store.countByStatus()) this.set({ status }, n)
    }
  })

  app.decorate('metrics', { registry, provisioned, provisionSeconds, waiters })
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched'
    if (route === '/metrics') return
    requests.observe({ method: request.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000)
  })
  app.get('/metrics', { schema: { hide: true }, onRequest: options.onRequest }, async (_request, reply) => {
    const body = await registry.metrics()
    return reply.type(registry.contentType).send(body)
  })
}

export const metricsPlugin = fp(metrics, { fastify: '5.x', name: 'registry-metrics' })
