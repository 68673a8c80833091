// Templates over the API: locale fallback, immutable versions pinned on messages, preview equal
// to what the SMTP peer receives, escaping, missing variables at accept time, and isolation.
import t from 'tap'
import { startPlatform, tid } from './fixtures.ts'
import { settled, startComm } from './helpers.ts'
import { smtpPeer } from './peers.ts'

const WRITE = { scope: 'templates:write messages:read messages:send', roles: ['admin'] }

t.test('templates: locales, versions, preview = sent, escaping, missing data, isolation', async (t) => {
  const p = await startPlatform(t)
  const smtp = await smtpPeer(t)
  const a = tid('ta')
  const b = tid('tb')
  await p.createTenant(a, { domains: ['acme.example.com'], config: { comm: { emailFrom: 'no-reply@acme.example.com' } } })
  await p.createTenant(b)
  const { call } = await startComm(t, p, { providers: { email: 'smtp', smtp: { host: '127.0.0.1', port: smtp.port, secure: false } } })

  const welcome = {
    name: 'welcome',
    channel: 'email',
    defaultLocale: 'en',
    defaults: { name: 'friend' },
    variants: {
      en: { subject: 'Welcome, {{ name }}', text: 'Hello {{ name }}, your code is {{ code }}.', html: '<p>Hello {{ name }}</p>' },
      'en-GB': { subject: 'Welcome, {{ name }}!', text: 'Hello {{ name }}, your code is {{ code }}. Cheers.' },
      fr: { subject: 'Bienvenue, {{ name }}', text: 'Bonjour {{ name }}, code {{ code }}.' }
    }
  }
  t.match(await call('POST', '/v1/templates', a, welcome), { status: 403, body: { code: 'FORBIDDEN' } }, 'templates:write is needed')
  t.match(await call('POST', '/v1/templates', a, welcome, WRITE), { status: 201, body: { name: 'welcome', version: 1, defaultLocale: 'en' } })
  t.match(await call('POST', '/v1/templates', a, welcome, WRITE), { status: 409, body: { code: 'CONFLICT' } })
  t.match(await call('POST', '/v1/templates', a, { ...welcome, name: 'bad', variants: { en: { subject: '{{ x | nope }}', text: 'x' } } }, WRITE), { status: 400, body: { code: 'TEMPLATE_INVALID' } }, 'an unknown filter is refused when saved')
  t.match(await call('POST', '/v1/templates', a, { ...welcome, name: 'sms-ish', variants: { en: { body: 'x' } } }, WRITE), { status: 400, body: { code: 'TEMPLATE_INVALID' } }, 'an email template needs a subject')

  const preview = async (locale: string | undefined, data: Record<string, unknown>, version?: number) => await call('POST', '/v1/templates/welcome/preview', a, { ...(locale === undefined ? {} : { locale }), ...(version === undefined ? {} : { version }), data })
  t.match((await preview('en-GB', { code: 1 })).body, { locale: 'en-GB', content: { subject: 'Welcome, friend!' } }, 'exact locale')
  t.match((await preview('en-US', { code: 1 })).body, { locale: 'en' }, 'region falls back to the language')
  t.match((await preview('fr-CA', { code: 1 })).body, { locale: 'fr', content: { text: 'Bonjour friend, code 1.' } })
  t.match((await preview('de', { code: 1 })).body, { locale: 'en' }, 'an unknown language falls back to the default')
  t.match((await preview(undefined, { code: 1, name: '<script>x</script>' })).body, { content: { html: '<p>Hello &lt;script&gt;x&lt;/script&gt;</p>', text: 'Hello <script>x</script>, your code is 1.' } }, 'html escaped, text plain')
  t.match(await preview('en', {}), { status: 400, body: { code: 'TEMPLATE_RENDER_FAILED', message: /code/ } }, 'a variable with no default is required')

  // A new version; the old one stays and can be pinned.
  t.match(await call('PUT', '/v1/templates/welcome', a, { defaultLocale: 'en', defaults: { name: 'friend' }, variants: { en: { subject: 'Hi {{ name }} (v2)', text: 'Your code: {{ code }}' } } }, WRITE), { status: 200, body: { version: 2 } })
  const got = await call('GET', '/v1/templates/welcome', a)
  t.match(got.body, { version: 2, history: [{ version: 1 }, { version: 2 }] })
  t.match((await call('GET', '/v1/templates/welcome?version=1', a)).body, { version: 1, variants: { fr: {} } })

  const pinned = await call('POST', '/v1/messages', a, { channel: 'email', to: 'ann@example.com', template: { name: 'welcome', version: 1, locale: 'en', data: { code: 42 } } })
  const current = await call('POST', '/v1/messages', a, { channel: 'email', to: 'bob@example.com', template: { name: 'welcome', data: { code: 7 } } })
  t.same([pinned.status, current.status], [202, 202])
  t.match(await settled(call, a, pinned.body.id), { status: 'sent', subject: 'Welcome, friend', template: { name: 'welcome', version: 1, locale: 'en' } })
  t.match(await settled(call, a, current.body.id), { status: 'sent', subject: 'Hi friend (v2)', template: { name: 'welcome', version: 2, locale: 'en' } })
  const shown = (await preview('en', { code: 7 })).body.content
  const mail = smtp.mails.find((m) => m.to[0] === 'bob@example.com')
  t.equal(mail?.headers.subject, shown.subject, 'the subject sent is the preview\'s')
  t.ok(mail?.raw.includes(`\r\n\r\n${shown.text as string}`), 'the text sent is byte for byte the preview\'s')

  t.match(await call('POST', '/v1/messages', a, { channel: 'email', to: 'c@example.com', template: { name: 'welcome', data: {} } }), { status: 400, body: { code: 'TEMPLATE_RENDER_FAILED' } }, 'missing data is a 400 at accept time')
  t.match(await call('POST', '/v1/messages', a, { channel: 'sms', to: '+15550100', template: { name: 'welcome', data: { code: 1 } } }), { status: 400, body: { code: 'VALIDATION_FAILED' } }, 'a template for another channel')
  t.match(await call('POST', '/v1/messages', a, { channel: 'email', to: 'c@example.com', subject: 'x', template: { name: 'welcome', data: { code: 1 } } }), { status: 400, body: { code: 'VALIDATION_FAILED' } }, 'template and inline content together')
  t.equal((await call('GET', '/v1/messages?limit=100', a)).body.items.length, 2, 'refused messages were not stored')
  t.match(await call('GET', '/v1/templates/welcome?version=99', a), { status: 404, body: { message: /no version 99/ } })

  // Without data the template's defaults apply; an Idempotency-Key fingerprints the request (the
  // template and its data), so the repeat is the same message.
  for (const [name, body, message] of [
    ['an SMS template with a subject', { name: 'x1', channel: 'sms', defaultLocale: 'en', variants: { en: { body: 'b', subject: 's' } } }, /sms templates take body/],
    ['an email template without text or html', { name: 'x2', channel: 'email', defaultLocale: 'en', variants: { en: { subject: 's' } } }, /needs a subject and text or html/],
    ['a default locale without a variant', { name: 'x3', channel: 'sms', defaultLocale: 'fr', variants: { en: { body: 'b' } } }, /defaultLocale/]
  ] as const) t.match(await call('POST', '/v1/templates', a, body, WRITE), { status: 400, body: { code: 'TEMPLATE_INVALID', message } }, name)
  t.equal((await call('POST', '/v1/templates', a, { name: 'html-only', channel: 'email', defaultLocale: 'en', variants: { en: { subject: 's', html: '<b>{{ x | default: "y" }}</b>' } } }, WRITE)).status, 201, 'html alone, and no defaults')
  const note = { name: 'note', channel: 'sms', defaultLocale: 'en', defaults: { who: 'there' }, variants: { en: { body: 'Hi {{ who }}' } } }
  t.equal((await call('POST', '/v1/templates', a, note, WRITE)).status, 201)
  t.match(await call('POST', '/v1/templates/note/preview', a, {}), { status: 200, body: { content: { body: 'Hi there' } } }, 'a preview without data')
  const keyed = { channel: 'sms', to: '+15550100', template: { name: 'note' } }
  const k1 = await call('POST', '/v1/messages', a, keyed, { headers: { 'idempotency-key': 'tpl-1' } })
  const k2 = await call('POST', '/v1/messages', a, keyed, { headers: { 'idempotency-key': 'tpl-1' } })
  t.equal(k1.status, 202)
  t.equal(k2.body.id, k1.body.id, 'the repeat is the same message')
  t.match(await call('POST', '/v1/messages', a, { ...keyed, template: { name: 'note', data: { who: 'else' } } }, { headers: { 'idempotency-key': 'tpl-1' } }), { status: 422, body: { code: 'IDEMPOTENCY_KEY_REUSED' } }, 'other data under the same key')
  t.equal((await call('DELETE', '/v1/templates/note', a, undefined, WRITE)).status, 204)

  // Isolation: B sees none of A's templates and cannot send with them.
  t.match(await call('GET', '/v1/templates/welcome', b), { status: 404, body: { code: 'NOT_FOUND' } })
  t.match(await call('GET', '/v1/templates', b), { status: 200, body: { items: [] } })
  t.match(await call('POST', '/v1/templates/welcome/preview', b, { data: { code: 1 } }), { status: 404 })
  t.match(await call('POST', '/v1/messages', b, { channel: 'email', to: 'x@example.com', template: { name: 'welcome', data: { code: 1 } } }), { status: 404 })
  t.match(await call('PUT', '/v1/templates/welcome', b, { defaultLocale: 'en', variants: { en: { subject: 'pwned', text: 'x' } } }, WRITE), { status: 404 })
  t.match(await call('DELETE', '/v1/templates/welcome', b, undefined, WRITE), { status: 404 })
  t.match((await call('GET', '/v1/templates/welcome', a)).body, { version: 2 }, 'A\'s template is untouched')
  t.equal((await call('DELETE', '/v1/templates/welcome', a, undefined, WRITE)).status, 204)
  t.equal((await call('GET', '/v1/templates/welcome', a)).status, 404)
})
