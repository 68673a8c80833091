import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { OutgoingMessage, Provider, SendContext, SendResult } from './types.ts'

export interface LoggedMessage { tenant: string, from: string, message: OutgoingMessage, providerMessageId: string, at: string }

/** The development sink: writes each message to the log and keeps the last ones in memory. */
export class LogProvider implements Provider {
  readonly name = 'log'
  readonly #keep: number
  readonly #log: FastifyBaseLogger | undefined
  readonly sent: LoggedMessage[] = []

  constructor (options: { keep?: number, log?: FastifyBaseLogger } = {}) {
    this.#keep = options.keep ?? 1000
    this.#log = options.log
  }

  async send (message: OutgoingMessage, { tenant, settings }: SendContext): Promise<SendResult> {
    const providerMessageId = randomUUID()
    const from = message.channel === 'email' ? settings.emailFrom : message.channel === 'sms' ? settings.smsSenderId : ''
    this.sent.push({ tenant: tenant.id, from, message, providerMessageId, at: new Date().toISOString() })
    if (this.sent.length > this.#keep) this.sent.shift()
    this.#log?.info({ tenant: tenant.id, messageId: message.id, channel: message.channel, to: message.to }, 'message delivered to the log')
    return { providerMessageId }
  }
}
