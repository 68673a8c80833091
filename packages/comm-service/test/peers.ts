// Real peers on loopback: an SMTP server (smtp-server), an HTTP SMS API and a webhook receiver.
import Fastify, { type FastifyInstance } from 'fastify'
import { SMTPServer } from 'smtp-server'
import type { Test } from 'tap'

export interface Mail { from: string, to: string[], user: string | undefined, headers: Record<string, string>, raw: string }

export interface SmtpPeer {
  port: number
  mails: Mail[]
  /** Recipients refused with 550. */
  reject: Set<string>
  /** Every AUTH attempt, as the server saw it. */
  logins: Array<{ user: string, password: string }>
}

/** An SMTP server that keeps what it receives; `auth` requires that user and password. */
export async function smtpPeer (t: Test, auth?: { user: string, password: string }): Promise<SmtpPeer> {
  const peer: SmtpPeer = { port: 0, mails: [], reject: new Set(), logins: [] }
  const server = new SMTPServer({
    authOptional: auth === undefined,
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onAuth (login, _session, callback) {
      peer.logins.push({ user: login.username as string, password: login.password as string })
      if (auth !== undefined && login.username === auth.user && login.password === auth.password) return callback(null, { user: login.username })
      callback(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }))
    },
    onRcptTo (address, _session, callback) {
      if (peer.reject.has(address.address)) return callback(Object.assign(new Error('No such user'), { responseCode: 550 }))
      callback()
    },
    onData (stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString()
        const head = raw.slice(0, raw.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ')
        const headers: Record<string, string> = {}
        for (const line of head.split('\r\n')) {
          const colon = line.indexOf(':')
          headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
        }
        peer.mails.push({ from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address, to: session.envelope.rcptTo.map((r) => r.address), user: session.user as string | undefined, headers, raw })
        callback()
      })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  peer.port = (server.server.address() as { port: number }).port
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return peer
}

export interface HttpPeer {
  url: string
  app: FastifyInstance
  received: Array<{ at: number, headers: Record<string, string>, body: string }>
  /** The answer to the next requests: status and headers (default 200 with an id). */
  answer: { status: number, headers?: Record<string, string>, delayMs?: number, body?: string }
}

/** An HTTP endpoint at `path` that records each request and answers as told. */
export async function httpPeer (t: Test, path = '/hook'): Promise<HttpPeer> {
  const app = Fastify()
  const peer: HttpPeer = { url: '', app, received: [], answer: { status: 200 } }
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => done(null, body))
  app.post(path, async (request, reply) => {
    peer.received.push({ at: Date.now(), headers: request.headers as Record<string, string>, body: request.body as string })
    const { status, headers = {}, delayMs = 0, body } = peer.answer
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
    if (body !== undefined) return await reply.code(status).headers(headers).type('text/plain').send(body)
    return await reply.code(status).headers(headers).send(status < 300 ? { id: `sms-${peer.received.length}` } : { error: 'nope' })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  peer.url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}${path}`
  return peer
}
