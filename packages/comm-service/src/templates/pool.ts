// Renders off the event loop: a piscina pool of worker threads runs LiquidJS (render-worker.ts).
// A render that outlives `timeoutMs` is stopped by terminating its thread (piscina starts another),
// so even one tag that never yields (a per-element filter over a huge array) cannot hold anyone.
// A tenant has at most `perTenant` renders in flight; more wait up to `waitMs` for a slot, then
// get 429 RATE_LIMITED. At most `threads` renders run at once, so a render's clock starts on a
// free thread, not in a queue behind other tenants' renders.
import { availableParallelism } from 'node:os'
import { MessageChannel } from 'node:worker_threads'
import { Piscina } from 'piscina'
import createError from '@fastify/error'
import { TEMPLATE_LIMITS, TemplateError, TemplateRenderError, type Part, type RenderJob, type RenderResult } from './render.ts'
import type { RenderTask } from './render-worker.ts'

/** A tenant's renders are all in flight and none ended within `waitMs`. */
export const RenderBusyError = createError<'RATE_LIMITED', 429, [number, number]>('RATE_LIMITED', 'This tenant already has %d renders in flight, retry in %d seconds', 429, undefined, false)

/** No render thread took the job within `startMs` (threads that keep failing to start). */
export const RenderUnavailableError = createError<'SERVICE_UNAVAILABLE', 503, []>('SERVICE_UNAVAILABLE', 'Templates cannot be rendered right now, try again later', 503, undefined, false)

export interface RenderPoolOptions {
  /** Worker threads (default: the cores, 2 to 4). */
  threads?: number
  /** Hard wall-clock limit of one render in ms, after which its thread is terminated (default 1,000). */
  timeoutMs?: number
  /** Renders one tenant may have in flight (default 2). */
  perTenant?: number
  /** How long a tenant's further render waits for one of its slots, in ms, before 429 (default 2,000). */
  waitMs?: number
  /** Elements per-element filters may visit in one render (default `TEMPLATE_LIMITS.elements`). */
  elements?: number
  /** How long a job may wait for a thread to start it (a thread being replaced), in ms (default 10,000). */
  startMs?: number
  /** Heap of one render thread in MB (default 256): a render that needs more ends its thread. */
  heapMb?: number
  /** Told of a thread's failure outside any render (the pool replaces the thread). */
  onError?: (err: Error) => void
}

/** The file next to this one, with this module's own extension (`.ts` in the sources, `.js` in `dist`). */
export function siblingModule (name: string, base: string = import.meta.url): URL {
  const ext = new URL(base).pathname.match(/\.[cm]?[jt]s$/)?.[0] ?? '.js'
  return new URL(`./${name}${ext}`, base)
}

/** A counting semaphore with a FIFO of waiters. */
class Slots {
  readonly #size: number
  #used = 0
  readonly #waiting: Array<() => void> = []

  constructor (size: number) {
    this.#size = size
  }

  get idle (): boolean {
    return this.#used === 0 && this.#waiting.length === 0
  }

  /** Takes a slot; waits at most `ms` (then resolves false). */
  async take (ms = Infinity): Promise<boolean> {
    if (this.#used < this.#size) {
      this.#used++
      return true
    }
    return await new Promise<boolean>((resolve) => {
      const grant = (): void => {
        clearTimeout(timer)
        resolve(true)
      }
      const timer = Number.isFinite(ms)
        ? setTimeout(() => {
          this.#waiting.splice(this.#waiting.indexOf(grant), 1)
          resolve(false)
        }, ms)
        : undefined
      this.#waiting.push(grant)
    })
  }

  /** Gives the slot to the first waiter, or frees it. */
  give (): void {
    const next = this.#waiting.shift()
    if (next !== undefined) next()
    else this.#used--
  }
}

export class RenderPool {
  readonly #pool: Piscina<RenderTask, RenderResult>
  readonly #threads: Slots
  readonly #tenants = new Map<string, Slots>()
  readonly #timeoutMs: number
  readonly #perTenant: number
  readonly #waitMs: number
  readonly #elements: number
  readonly #startMs: number

  constructor (options: RenderPoolOptions = {}) {
    const threads = options.threads ?? Math.max(2, Math.min(4, availableParallelism()))
    this.#timeoutMs = options.timeoutMs ?? 1000
    this.#perTenant = options.perTenant ?? 2
    this.#waitMs = options.waitMs ?? 2000
    this.#elements = options.elements ?? TEMPLATE_LIMITS.elements
    this.#startMs = options.startMs ?? 10_000
    this.#threads = new Slots(threads)
    this.#pool = new Piscina<RenderTask, RenderResult>({
      filename: siblingModule('render-worker').href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
      // Render threads yield the CPU to the event loop (with the optional @napi-rs/nice).
      niceIncrement: 10,
      // A render that allocates without bound ends its own thread, not the process.
      resourceLimits: { maxOldGenerationSizeMb: options.heapMb ?? 256, maxYoungGenerationSizeMb: 32 }
    })
    // Without a listener, piscina's 'error' (a thread that failed with no render left) would end the process.
    /* c8 ignore next: emitted only when a thread fails after its render was answered (timing-dependent) */
    this.#pool.on('error', (err: Error) => options.onError?.(err))
  }

  /** Renders a variant's parts for `tenant`: the content, or a 400 template error, or 429 when the tenant has too many in flight. */
  async render (tenant: string, parts: Partial<Record<Part, string>>, data: Record<string, unknown>, defaults: Record<string, unknown>): Promise<Partial<Record<Part, string>>> {
    let slots = this.#tenants.get(tenant)
    if (slots === undefined) {
      slots = new Slots(this.#perTenant)
      this.#tenants.set(tenant, slots)
    }
    if (!await slots.take(this.#waitMs)) {
      throw new RenderBusyError(this.#perTenant, Math.max(1, Math.ceil(this.#timeoutMs / 1000)))
    }
    try {
      await this.#threads.take()
      try {
        return await this.#run({ parts, data, defaults, elements: this.#elements })
      } finally {
        this.#threads.give()
      }
    } finally {
      slots.give()
      if (slots.idle) this.#tenants.delete(tenant)
    }
  }

  async #run (job: RenderJob): Promise<Partial<Record<Part, string>>> {
    // The clock starts when a thread starts the job: a thread being replaced after a stopped
    // render (starting takes a moment) is not counted against the next render.
    const stop = new AbortController()
    let timer = setTimeout(() => stop.abort('start'), this.#startMs)
    const { port1, port2 } = new MessageChannel()
    port1.once('message', () => {
      clearTimeout(timer)
      timer = setTimeout(() => stop.abort('time'), this.#timeoutMs)
    })
    let result: RenderResult
    try {
      result = await this.#pool.run({ ...job, started: port2 }, { signal: stop.signal, transferList: [port2] })
    } catch (err) {
      if (stop.signal.reason === 'time') throw new TemplateRenderError(`the render took longer than ${this.#timeoutMs} ms and was stopped`)
      if (stop.signal.reason === 'start') throw new RenderUnavailableError()
      // The thread died (its memory limit): the template's fault, answered like any render failure.
      throw new TemplateRenderError(`the render failed: ${((err as Error).message.split('\n', 1)[0] as string).slice(0, 200)}`)
    } finally {
      clearTimeout(timer)
      port1.close()
    }
    if (!result.ok) throw result.code === 'TEMPLATE_INVALID' ? new TemplateError(result.message) : new TemplateRenderError(result.message)
    return result.content
  }

  /** Stops every thread (renders in flight fail). */
  async close (): Promise<void> {
    await this.#pool.destroy()
  }
}
