// The console in a real browser (Debian's chromium, driven by playwright-core): sign in with the
// banner's one-time link (the token never in the address bar or history; the link spent once used), send from the API and watch the message reach `sent` on the page with its
// timeline, templates with a preview, configuration with secrets masked, the platform admin's
// stats; tenant A's session never shows B's data; a bad token gets a clear page.
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import t from 'tap'
import { request } from 'undici'
import { startDevStack, type DevInfo } from '../src/dev.ts'
import { createStackDatabase, purgeDemoTenants } from './fixtures.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

async function api (info: DevInfo, token: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await request(info.commUrl + path, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.body.text()
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`)
  return text === '' ? null : JSON.parse(text)
}

t.test('the console in chromium', { skip: !existsSync(CHROMIUM) && process.env.CI === undefined && `no browser at ${CHROMIUM} (.ci/run installs Debian's chromium; under CI its absence fails)` }, async (t) => {
  const db = await createStackDatabase(t)
  const cwd = await mkdtemp(join(tmpdir(), 'console-'))
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  let banner = ''
  const stack = await startDevStack({ env: { DATABASE_URL: db.url, SERVICE_DATABASE_URL: db.serviceUrl, COMM_DATABASE_URL: db.commUrl, PORT: '0', NOTES_PORT: '0', COMM_PORT: '0', INBOX_PORT: '0', SMTP_PORT: '0', LOG_LEVEL: 'silent' }, cwd, print: (s) => { banner += s } })
  t.teardown(stack.close)
  t.teardown(async () => await purgeDemoTenants(stack.info))
  const { info } = stack
  const link = /Console {11}(\S+)/.exec(banner)?.[1] as string
  t.match(link, new RegExp(`^${info.commUrl}/console#code=[\\w-]{32}$`), 'the banner prints a one-time sign-in link')
  for (const token of Object.values(info.tokens)) t.notOk(banner.includes(token), 'and no token at all')

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
  t.teardown(() => browser.close())
  // Signing in with a pasted token (what remains once the link is spent).
  const open = async (token: string): Promise<Page> => {
    const page = await (await browser.newContext()).newPage()
    await page.goto(`${info.commUrl}/console`)
    await page.locator('#token').fill(token)
    await page.getByRole('button', { name: 'Sign in' }).click()
    return page
  }
  /** What the page's address bar and session history hold. */
  const addresses = async (page: Page): Promise<{ href: string, entries: number }> => await page.evaluate(() => {
    // The page's own globals (this test's tsconfig has no DOM library).
    const w = globalThis as unknown as { location: { href: string }, history: { length: number } }
    return { href: w.location.href, entries: w.history.length }
  })

  // Sign in as acme's owner with the banner's link; send from the API and watch it reach "sent".
  const acme = await (await browser.newContext()).newPage()
  await acme.goto(link)
  await acme.getByText('Tenant acme').waitFor()
  const code = new URL(link).hash.slice('#code='.length)
  const after = await addresses(acme)
  t.equal(after.href, `${info.commUrl}/console`, 'the address bar holds neither the token nor the code')
  t.equal(after.entries, 2, 'history: the blank tab and the console, nothing else')
  t.equal(acme.url(), `${info.commUrl}/console`)
  await acme.goBack()
  t.notOk(acme.url().includes(code) || acme.url().includes(info.tokens.acmeOwner), `going back leads to ${acme.url()}, not to the link`)
  await acme.goForward()
  t.equal(acme.url(), `${info.commUrl}/console`, 'going forward too: the link\'s entry was replaced')
  await acme.getByText('Tenant acme').waitFor()
  // The link a browser's history kept is spent: opened again, it signs nobody in.
  const replay = await (await browser.newContext()).newPage()
  await replay.goto(link)
  const spent = replay.getByRole('alert')
  await spent.waitFor()
  t.match(await spent.textContent(), /This sign-in link was used already or has expired/, 'a spent link says so')
  t.equal(await replay.locator('#tabs').isHidden(), true, 'and signs nobody in')
  t.equal((await addresses(replay)).href, `${info.commUrl}/console`, 'and leaves the address bar too')
  const sent = await api(info, info.tokens.acmeOwner, 'POST', '/v1/messages', { channel: 'email', to: 'ann@example.com', subject: 'Seen in the console', text: 'Hi' })
  const row = acme.locator(`tr[data-id="${sent.id as string}"]`)
  await row.and(acme.locator('[data-status="sent"]')).waitFor({ timeout: 20_000 })
  t.pass('the message reached sent on the page')
  await row.click()
  await acme.locator('#detail-timeline li[data-status="sent"]').waitFor()
  const timeline = await acme.locator('#detail-timeline li').allTextContents()
  t.match(timeline.join(' | '), /queued.*sending.*sent/, 'its timeline')
  t.equal(await acme.locator('#detail-error').textContent(), 'none')

  // Templates, with a preview rendered by the API.
  await api(info, info.tokens.acmeOwner, 'POST', '/v1/templates', { name: 'welcome', channel: 'sms', defaultLocale: 'en', defaults: { who: 'there' }, variants: { en: { body: 'Hi {{ who }}!' } } })
  await acme.getByRole('button', { name: 'Templates' }).click()
  await acme.locator('button[data-name="welcome"]').click()
  await acme.locator('#preview-data').fill('{"who":"<Ann>"}')
  await acme.locator('#preview-run').click()
  await acme.locator('#preview-output', { hasText: 'body: Hi <Ann>!' }).waitFor()
  t.pass('the preview shows the rendered text, as text')

  // Configuration: a password set through the API shows as set, never as itself.
  const password = 'console-secret-4b7e'
  // (The dev inbox's SMTP port: the only loopback SMTP port the dev stack lets a tenant name.)
  await api(info, info.tokens.acmeOwner, 'PATCH', '/v1/config', { smtp: { host: '127.0.0.1', port: Number(new URL(info.smtpUrl).port), user: 'acme', password } })
  await acme.getByRole('button', { name: 'Configuration' }).click()
  const smtp = acme.locator('dd[data-key="smtp"]')
  await smtp.waitFor()
  t.match(await smtp.textContent(), /password: •+ \(set \d{4}-/, 'the secret is masked')
  t.notOk((await acme.content()).includes(password), 'and the page never had it')

  // Globex's owner never sees acme's message, on any tab.
  const globex = await open(info.tokens.globexOwner)
  await globex.getByText('Tenant globex').waitFor()
  t.notOk((await addresses(globex)).href.includes(info.tokens.globexOwner), 'a pasted token never reaches the address bar')
  await globex.locator('#message-rows').waitFor({ state: 'attached' })
  await new Promise((resolve) => setTimeout(resolve, 2500)) // one refresh later
  const globexPage = await globex.content()
  t.notOk(globexPage.includes(sent.id as string), 'B\'s page has no trace of A\'s message')
  t.notOk(globexPage.includes('Seen in the console'))
  await globex.getByRole('button', { name: 'Templates' }).click()
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(await globex.locator('button[data-name="welcome"]').count(), 0, 'nor A\'s templates')

  // The platform admin sees the cross-tenant stats.
  const admin = await open(info.tokens.platformAdmin)
  await admin.locator('tr[data-tenant="acme"]').waitFor({ timeout: 10_000 })
  t.pass('the admin\'s stats list acme')
  t.equal(await admin.getByRole('button', { name: 'Messages' }).isHidden(), true, 'and no tenant tabs')

  // A bad token: a clear message, no stack trace, nothing signed in.
  const bad = await open('not-a-token')
  const alert = bad.getByRole('alert')
  await alert.waitFor()
  t.match(await alert.textContent(), /This token is not valid here \(UNAUTHORIZED\)/)
  t.notMatch(await bad.content(), /at [\w.]+ \(|Error:/, 'no stack trace')
  t.equal(await bad.locator('#tabs').isHidden(), true)

  // The page is locked down: its own scripts only, no framing.
  const res = await request(`${info.commUrl}/console`)
  t.match(res.headers['content-security-policy'], /script-src 'self'.*frame-ancestors 'none'/)
  await res.body.dump()
})
