// Email over SMTP with nodemailer: one pooled transport per distinct server configuration, shared
// by the tenants that use it, closed when no tenant uses it any more (a tenant whose settings change
// moves to a new transport). The From is the tenant's own; the Message-ID is derived from the
// message id, so a retried copy carries the same one and receivers can drop the duplicate.
// Credentials go over TLS only (implicit TLS, or STARTTLS required) unless the server says
// `plaintextAuth`; a tenant's server is connected to at the address checked (`host`), with its
// name as the TLS servername (SNI and the certificate check).
import nodemailer, { type Transporter } from 'nodemailer'
import type SMTPPool from 'nodemailer/lib/smtp-pool/index.js'
import { PermanentError, TransientError, type OutgoingMessage, type Provider, type SendContext, type SendResult } from './types.ts'

export interface SmtpServer {
  /** The name, or the address to connect to (a tenant's: the one checked, see ../address.ts). */
  host: string
  /** The server's name when `host` is its checked address: TLS is verified against it. */
  servername?: string
  port: number
  /** TLS from the first byte (port 465); otherwise STARTTLS when the server offers it (required when there are credentials). */
  secure: boolean
  user?: string
  password?: string
  /** Credentials may go without TLS (the platform's COMM_ALLOW_PLAINTEXT_SMTP_AUTH, and for a tenant's server its own `smtp.allowPlaintextAuth`). */
  plaintextAuth?: boolean
}

export interface SmtpProviderOptions {
  /** The SMTP server for a tenant (its own, or the platform's), or null when none is configured. */
  server: (context: SendContext) => SmtpServer | null | Promise<SmtpServer | null>
  /** Connection, greeting and socket timeouts in ms (default 10 s). */
  timeout?: number
  /** Connections per transport (default 5). */
  maxConnections?: number
}

/** `smtp://user:password@host:port` or `smtps://…` (the platform default, SMTP_URL). */
export function parseSmtpUrl (url: string): SmtpServer {
  const parsed = new URL(url)
  if (parsed.protocol !== 'smtp:' && parsed.protocol !== 'smtps:') throw new Error('must start with smtp:// or smtps://')
  if (parsed.hostname === '') throw new Error('must name a host')
  const secure = parsed.protocol === 'smtps:'
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port: parsed.port === '' ? (secure ? 465 : 587) : Number(parsed.port),
    secure,
    ...(parsed.username === '' ? {} : { user: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password) })
  }
}

// Nodemailer's error codes that another attempt will not fix.
const PERMANENT_CODES = new Set(['EAUTH', 'EENVELOPE', 'EMESSAGE', 'ENOAUTH'])

/** Classifies nodemailer's failure: 5xx replies, auth and envelope errors are permanent. */
export function classifySmtpError (err: unknown): Error {
  const { code, responseCode, message } = err as { code?: string, responseCode?: number, message?: string }
  const text = `smtp: ${message ?? String(err)}`.slice(0, 500)
  if (typeof responseCode === 'number') return responseCode >= 500 ? new PermanentError(text) : new TransientError(text)
  if (code !== undefined && PERMANENT_CODES.has(code)) return new PermanentError(text)
  return new TransientError(text)
}

type Pool = Transporter<SMTPPool.SentMessageInfo, SMTPPool.Options>

export class SmtpProvider implements Provider {
  readonly name = 'smtp'
  readonly #options: SmtpProviderOptions
  readonly #transports = new Map<string, { transport: Pool, tenants: Set<string> }>()
  readonly #tenantKey = new Map<string, string>()

  constructor (options: SmtpProviderOptions) {
    this.#options = options
  }

  /** Transports open now (one per distinct server in use). */
  get transports (): number {
    return this.#transports.size
  }

  #transport (tenant: string, server: SmtpServer): Pool {
    const key = JSON.stringify([server.host, server.servername ?? '', server.port, server.secure, server.user ?? '', server.password ?? '', server.plaintextAuth === true])
    const previous = this.#tenantKey.get(tenant)
    if (previous !== undefined && previous !== key) {
      const old = this.#transports.get(previous) as { transport: Pool, tenants: Set<string> }
      old.tenants.delete(tenant)
      if (old.tenants.size === 0) {
        old.transport.close()
        this.#transports.delete(previous)
      }
    }
    let entry = this.#transports.get(key)
    if (entry === undefined) {
      /* c8 ignore next */
      const timeout = this.#options.timeout ?? 10_000
      entry = {
        transport: nodemailer.createTransport({
          pool: true,
          maxConnections: this.#options.maxConnections ?? 5,
          host: server.host,
          port: server.port,
          secure: server.secure,
          ...(server.servername === undefined ? {} : { tls: { servername: server.servername } }),
          ...(server.user === undefined ? {} : { auth: { user: server.user, pass: server.password ?? '' }, requireTLS: server.plaintextAuth !== true }),
          connectionTimeout: timeout,
          greetingTimeout: timeout,
          socketTimeout: timeout
        }),
        tenants: new Set()
      }
      this.#transports.set(key, entry)
    }
    entry.tenants.add(tenant)
    this.#tenantKey.set(tenant, key)
    return entry.transport
  }

  async send (message: OutgoingMessage, context: SendContext): Promise<SendResult> {
    const { tenant, settings } = context
    const server = await this.#options.server(context)
    if (server === null) throw new PermanentError('smtp: no SMTP server is configured for this tenant or the platform')
    if (settings.emailFrom === '') throw new PermanentError('smtp: the tenant has no emailFrom (config.comm.emailFrom) and the platform no default')
    const domain = settings.emailFrom.slice(settings.emailFrom.lastIndexOf('@') + 1)
    try {
      const info = await this.#transport(tenant.id, server).sendMail({
        from: settings.emailFromName === '' ? settings.emailFrom : { name: settings.emailFromName, address: settings.emailFrom },
        ...(settings.replyTo === '' ? {} : { replyTo: settings.replyTo }),
        to: message.to,
        /* c8 ignore next 3: an email always has a subject and text or html (checked at accept) */
        subject: message.subject ?? '',
        ...(message.text === null ? {} : { text: message.text }),
        ...(message.html === null ? {} : { html: message.html }),
        messageId: `<${message.id}@${domain}>`,
        // Addresses only as given: no file or URL attachments, no data: URIs turned into files.
        disableFileAccess: true,
        disableUrlAccess: true
      })
      return { providerMessageId: info.messageId }
    } catch (err) {
      if (server.user !== undefined && server.plaintextAuth !== true && !server.secure && (err as { code?: string }).code === 'ETLS') {
        throw new PermanentError(`smtp: credentials are sent over TLS only and TLS could not be started (plaintext needs smtp.allowPlaintextAuth and COMM_ALLOW_PLAINTEXT_SMTP_AUTH): ${(err as Error).message}`.slice(0, 500))
      }
      throw classifySmtpError(err)
    }
  }

  async close (): Promise<void> {
    for (const { transport } of this.#transports.values()) transport.close()
    this.#transports.clear()
    this.#tenantKey.clear()
  }
}
