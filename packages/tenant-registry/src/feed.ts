import type { Change, TenantStore } from './tenants.ts'

export interface ChangeFeedOptions {
  /** Long polls waiting at once, at most (default 10,000); past it a poll answers at once. */
  maxWaiters?: number
  /** Recent changes kept in memory to answer polls without a query (default 10,000). */
  keep?: number
  /** Called when a waiter starts (+1) or stops (-1) waiting, for the metrics gauge. */
  onWaiters?: (delta: number) => void
}

interface Waiter {
  after: number
  wake: () => void
}

/**
 * The change feed's server side. A notification (from any registry instance, or from anyone who
 * can NOTIFY: it is not trusted) triggers one query for the rows after the newest known sequence,
 * however many polls wait; polls are answered from the changes kept in memory. Only rows that
 * really are in the change log wake a poll.
 */
export class ChangeFeed {
  readonly #store: TenantStore
  readonly #maxWaiters: number
  readonly #keep: number
  readonly #onWaiters: (delta: number) => void
  readonly #waiters = new Set<Waiter>()
  /** Every change after `#from` is in `#recent`, in order. */
  #recent: Change[] = []
  #from = 0
  #head = 0
  #refreshing: Promise<void> | null = null
  #again = false
  #closed = false
  readonly #onChange = (): void => { this.refresh() }

  constructor (store: TenantStore, options: ChangeFeedOptions = {}) {
    this.#store = store
    this.#maxWaiters = options.maxWaiters ?? 10_000
    this.#keep = options.keep ?? 10_000
    this.#onWaiters = options.onWaiters ?? (() => {})
  }

  async start (): Promise<void> {
    this.#head = this.#from = await this.#store.lastSeq()
    this.#store.changes.on('change', this.#onChange)
  }

  /** The newest sequence number known. */
  head (): number {
    return this.#head
  }

  #checkedAt = -Infinity
  #checking: Promise<void> | null = null

  /**
   * The newest sequence number, confirmed against the database at most once a second (one query
   * shared by every answer in between): a change log that went backwards (a restored database)
   * resets the feed, and its followers see a head behind their position.
   */
  async confirmedHead (): Promise<number> {
    if (performance.now() - this.#checkedAt > 1000) {
      this.#checking ??= (async () => {
        try {
          const last = await this.#store.lastSeq()
          this.#checkedAt = performance.now()
          if (last < this.#head) {
            this.#head = this.#from = last
            this.#recent = []
          } else if (last > this.#head) {
            await this.refresh()
          }
        } finally {
          this.#checking = null
        }
      })()
      await this.#checking
    }
    return this.#head
  }

  get waiting (): number {
    return this.#waiters.size
  }

  /** Changes after `after`, from memory when it holds them, otherwise from the database. */
  async read (after: number, limit: number): Promise<Change[]> {
    if (after >= this.#head) return []
    if (after >= this.#from) {
      // Everything in (from, head] is in memory, and after < head: some change is later than after.
      const start = this.#recent.findIndex((c) => c.seq > after)
      return this.#recent.slice(start, start + limit)
    }
    return await this.#store.changesAfter(after, limit)
  }

  /** Waits until a change after `after` is known, `ms` pass, the signal aborts or the feed closes. */
  async wait (after: number, ms: number, signal?: AbortSignal): Promise<void> {
    if (this.#closed || after < this.#head || this.#waiters.size >= this.#maxWaiters || signal?.aborted === true) return
    await new Promise<void>((resolve) => {
      const waiter: Waiter = { after, wake: () => done() }
      // Each way out (wake, timer, abort) removes the others, so this runs once.
      const done = (): void => {
        this.#waiters.delete(waiter)
        clearTimeout(timer)
        signal?.removeEventListener('abort', done)
        this.#onWaiters(-1)
        resolve()
      }
      const timer = setTimeout(done, ms)
      signal?.addEventListener('abort', done, { once: true })
      this.#waiters.add(waiter)
      this.#onWaiters(1)
    })
  }

  /** One query at a time for what is new; notifications during it cause one more, not one each. */
  refresh (): Promise<void> {
    if (this.#refreshing !== null) {
      this.#again = true
      return this.#refreshing
    }
    this.#refreshing = (async () => {
      try {
        do {
          this.#again = false
          let batch: Change[]
          do {
            batch = await this.#store.changesAfter(this.#head, 1000)
            if (batch.length === 0) break
            this.#recent.push(...batch)
            this.#head = (batch.at(-1) as Change).seq
          } while (batch.length === 1000)
          if (this.#recent.length > this.#keep) {
            const dropped = this.#recent.splice(0, this.#recent.length - this.#keep)
            this.#from = (dropped.at(-1) as Change).seq
          }
          for (const waiter of this.#waiters) if (waiter.after < this.#head) waiter.wake()
        } while (this.#again)
      } catch {
        // The database is away: polls wait out their time; the next notification tries again.
      } finally {
        this.#refreshing = null
      }
    })()
    return this.#refreshing
  }

  /** Answers every waiting poll now (shutdown). */
  close (): void {
    this.#closed = true
    this.#store.changes.off('change', this.#onChange)
    for (const waiter of [...this.#waiters]) waiter.wake()
  }
}
