// The dev inbox: what the communication service delivers in development, caught on this machine.
// An SMTP server that keeps every mail (the platform's SMTP_URL), an HTTP SMS API that keeps every
// text (SMS_HTTP_URL), and a webhook receiver at /hooks/<name>; a page and a JSON API show them.
// Nothing leaves the machine, and the walkthrough in the banner can show all three arriving.
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import { SMTPServer } from 'smtp-server'

export interface CaughtMail { id: string, at: string, from: string, to: string[], subject: string, headers: Record<string, string>, raw: string }
export interface CaughtSms { id: string, at: string, to: string, from: string, body: string }
export interface CaughtHook { id: string, at: string, name: string, headers: Record<string, string>, body: string }

export interface DevInbox {
  /** The web page and JSON API (`/api/mail`, `/api/sms`, `/api/hooks`), the SMS API (`POST /sms`) and the receiver (`POST /hooks/:name`). */
  url: string
  /** `smtp://127.0.0.1:<port>`. */
  smtpUrl: string
  smtpPort: number
  mail: CaughtMail[]
  sms: CaughtSms[]
  hooks: CaughtHook[]
  close: () => Promise<void>
}

const KEEP = 500

function keep<T> (list: T[], item: T): void {
  list.unshift(item)
  list.length = Math.min(list.length, KEEP)
}

function headersOf (raw: string): Record<string, string> {
  const head = raw.slice(0, raw.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ')
  const headers: Record<string, string> = {}
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  return headers
}

const escape = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

function page (inbox: Pick<DevInbox, 'mail' | 'sms' | 'hooks'>): string {
  const rows = (items: string[]): string => items.length === 0 ? '<p class="none">nothing yet</p>' : `<ul>${items.join('')}</ul>`
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Dev inbox</title><meta http-equiv="refresh" content="3">
<style>body{font:14px system-ui,sans-serif;margin:2rem;max-width:70rem}li{margin:.4rem 0}code{background:#f3f3f3;padding:0 .2rem}.none{color:#888}</style></head><body>
<h1>Dev inbox</h1><p>What the communication service delivered in development (newest first, the last ${KEEP} of each).</p>
<h2>Email (${inbox.mail.length})</h2>${rows(inbox.mail.map((m) => `<li><b>${escape(m.subject)}</b> from <code>${escape(m.from)}</code> to <code>${escape(m.to.join(', '))}</code> <small>${m.at}</small></li>`))}
<h2>SMS (${inbox.sms.length})</h2>${rows(inbox.sms.map((s) => `<li><code>${escape(s.from)}</code> → <code>${escape(s.to)}</code>: ${escape(s.body)} <small>${s.at}</small></li>`))}
<h2>Webhooks (${inbox.hooks.length})</h2>${rows(inbox.hooks.map((h) => `<li>/hooks/${escape(h.name)}: <code>${escape(h.body.slice(0, 200))}</code> <small>${h.at}</small></li>`))}
</body></html>`
}

/** Starts the inbox on loopback only: the HTTP side on `httpPort`, SMTP on `smtpPort` (0: any free port). */
export async function startDevInbox (options: { httpPort: number, smtpPort: number }): Promise<DevInbox> {
  const host = '127.0.0.1'
  const caught = { mail: [] as CaughtMail[], sms: [] as CaughtSms[], hooks: [] as CaughtHook[] }
  const smtp = new SMTPServer({
    authOptional: true,
    // Plain SMTP on loopback: no certificate to trust, nothing leaves the machine.
    disabledCommands: ['STARTTLS'],
    logger: false,
    size: 10 * 1024 * 1024,
    onData (stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString()
        const headers = headersOf(raw)
        /* c8 ignore next: smtp-server gives a null sender (MAIL FROM:<>) as an empty address; false only before MAIL FROM, which DATA cannot precede */
        const from = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address
        keep(caught.mail, { id: randomUUID(), at: new Date().toISOString(), from, to: session.envelope.rcptTo.map((r) => r.address), subject: headers.subject ?? '', headers, raw })
        callback()
      })
    }
  })
  // smtp-server re-emits its listener's errors (a port in use) and its clients' (one that went
  // away) on itself: the first reject the start below, the others are no one's business here.
  smtp.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    smtp.server.once('error', reject)
    smtp.listen(options.smtpPort, host, () => {
      smtp.server.off('error', reject)
      resolve()
    })
  })
  const smtpPort = (smtp.server.address() as { port: number }).port

  const app: FastifyInstance = Fastify({ bodyLimit: 1024 * 1024 })
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => done(null, body))
  app.get('/', async (_request, reply) => await reply.type('text/html; charset=utf-8').send(page(caught)))
  app.get('/api/mail', async () => ({ items: caught.mail.map(({ raw: _raw, ...mail }) => mail) }))
  app.get('/api/sms', async () => ({ items: caught.sms }))
  app.get('/api/hooks', async () => ({ items: caught.hooks }))
  // The generic SMS HTTP API the communication service speaks: { to, from, body, reference } → { id }.
  app.post('/sms', async (request) => {
    let text: { to?: unknown, from?: unknown, body?: unknown } = {}
    try { text = JSON.parse(String(request.body)) } catch {}
    const id = `sms_${randomUUID()}`
    keep(caught.sms, { id, at: new Date().toISOString(), to: String(text.to ?? ''), from: String(text.from ?? ''), body: String(text.body ?? '') })
    return { id }
  })
  app.post<{ Params: { name: string } }>('/hooks/:name', async (request, reply) => {
    keep(caught.hooks, { id: randomUUID(), at: new Date().toISOString(), name: request.params.name, headers: request.headers as Record<string, string>, body: String(request.body ?? '') })
    return await reply.code(204).send()
  })
  let url: string
  try {
    url = await app.listen({ port: options.httpPort, host })
  } catch (err) {
    await new Promise<void>((resolve) => smtp.close(() => resolve()))
    throw err
  }
  let closing: Promise<void> | undefined
  return {
    url,
    smtpUrl: `smtp://${host}:${smtpPort}`,
    smtpPort,
    ...caught,
    close () {
      closing ??= Promise.all([app.close(), new Promise<void>((resolve) => smtp.close(() => resolve()))]).then(() => {})
      return closing
    }
  }
}
