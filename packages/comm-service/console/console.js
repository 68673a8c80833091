// The communication console: a static page that calls only the public API, with the signed-in
// user's token, so it can never show more than that token may read. Everything from the API is
// put on the page as text (textContent), never as HTML.
const $ = (id) => document.getElementById(id)
const state = { token: null, claims: null, tab: null, timer: null, selected: null }

/** The token's claims, for the page's own choices only (the API checks the token itself). */
function claimsOf (token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    return JSON.parse(atob(payload))
  } catch {
    return null
  }
}

class ApiError extends Error {
  constructor (status, body) {
    super(body && typeof body.message === 'string' ? body.message : `HTTP ${status}`)
    this.status = status
    this.code = body && typeof body.code === 'string' ? body.code : `HTTP_${status}`
  }
}

async function api (method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${state.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.text()
  let parsed = null
  try { parsed = text === '' ? null : JSON.parse(text) } catch { parsed = null }
  if (!res.ok) throw new ApiError(res.status, parsed)
  return parsed
}

function el (tag, text, attrs = {}) {
  const node = document.createElement(tag)
  if (text !== undefined && text !== null) node.textContent = String(text)
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value)
  return node
}

function problem (err) {
  const box = $('problem')
  box.hidden = false
  if (err instanceof ApiError && err.link) box.textContent = `${err.message} (${err.code}).`
  else if (err instanceof ApiError && err.status === 401) box.textContent = `This token is not valid here (${err.code}). Sign in with a token the registry issued.`
  else if (err instanceof ApiError && err.status === 403) box.textContent = `This token may not do that (${err.code}): ${err.message}`
  else if (err instanceof ApiError) box.textContent = `The service answered ${err.status} ${err.code}: ${err.message}`
  else box.textContent = 'The service could not be reached. Is it running?'
}

function signOut () {
  clearInterval(state.timer)
  sessionStorage.removeItem('console-token')
  state.token = null
  state.claims = null
  $('who').textContent = ''
  $('sign-out').hidden = true
  $('tabs').hidden = true
  for (const tab of document.querySelectorAll('.tab')) tab.hidden = true
  $('sign-in').hidden = false
}

async function signIn (token) {
  state.token = token.trim()
  state.claims = claimsOf(state.token)
  $('problem').hidden = true
  const admin = state.claims !== null && state.claims.tenant === undefined && Array.isArray(state.claims.roles) && state.claims.roles.includes('platform-admin')
  try {
    // One call proves the token before anything is shown.
    if (admin) await api('GET', '/v1/admin/stats')
    else await api('GET', '/v1/messages?limit=1')
  } catch (err) {
    signOut()
    problem(err)
    return
  }
  sessionStorage.setItem('console-token', state.token)
  $('sign-in').hidden = true
  $('sign-out').hidden = false
  $('tabs').hidden = false
  $('who').textContent = admin ? `Platform admin (${state.claims.sub})` : `Tenant ${state.claims?.tenant ?? '?'} · ${state.claims?.sub ?? ''} · ${(state.claims?.roles ?? []).join(', ')}`
  for (const button of $('tabs').querySelectorAll('button')) {
    const forAdmin = button.dataset.tab === 'stats'
    button.hidden = admin ? !forAdmin : forAdmin
  }
  show(admin ? 'stats' : 'messages')
}

function show (tab) {
  state.tab = tab
  for (const section of document.querySelectorAll('.tab')) section.hidden = section.id !== tab
  for (const button of $('tabs').querySelectorAll('button')) button.classList.toggle('current', button.dataset.tab === tab)
  clearInterval(state.timer)
  const load = { messages: loadMessages, templates: loadTemplates, config: loadConfig, stats: loadStats }[tab]
  const run = () => load().catch(problem)
  run()
  if (tab === 'messages' || tab === 'stats') state.timer = setInterval(run, 2000)
}

async function loadMessages () {
  const params = new URLSearchParams({ limit: '50' })
  if ($('filter-status').value) params.set('status', $('filter-status').value)
  if ($('filter-channel').value) params.set('channel', $('filter-channel').value)
  const page = await api('GET', `/v1/messages?${params}`)
  const rows = page.items.map((m) => {
    const row = el('tr', undefined, { 'data-id': m.id, 'data-status': m.status, tabindex: '0' })
    for (const cell of [new Date(m.createdAt).toLocaleString(), m.channel, m.to, m.subject ?? '', m.status]) row.append(el('td', cell))
    row.addEventListener('click', () => { state.selected = m.id; loadDetail().catch(problem) })
    return row
  })
  $('message-rows').replaceChildren(...rows)
  if (state.selected !== null) await loadDetail()
}

async function loadDetail () {
  const m = await api('GET', `/v1/messages/${encodeURIComponent(state.selected)}`)
  $('message-detail').hidden = false
  $('detail-id').textContent = m.id
  $('detail-error').textContent = m.lastError ?? 'none'
  $('detail-timeline').replaceChildren(...m.history.map((h) => el('li', `${new Date(h.at).toLocaleTimeString()} ${h.status}${h.detail ? ` — ${h.detail}` : ''}`, { 'data-status': h.status })))
}

async function loadTemplates () {
  const { items } = await api('GET', '/v1/templates')
  $('template-list').replaceChildren(...items.map((tpl) => {
    const item = el('li')
    const button = el('button', `${tpl.name} (${tpl.channel}, v${tpl.version})`, { type: 'button', 'data-name': tpl.name })
    button.addEventListener('click', () => {
      $('template-preview').hidden = false
      $('preview-name').textContent = tpl.name
      $('preview-output').textContent = ''
    })
    item.append(button)
    return item
  }))
}

async function preview () {
  let data
  try {
    data = JSON.parse($('preview-data').value || '{}')
  } catch {
    $('preview-output').textContent = 'The data is not JSON.'
    return
  }
  const locale = $('preview-locale').value.trim()
  try {
    const rendered = await api('POST', `/v1/templates/${encodeURIComponent($('preview-name').textContent)}/preview`, { data, ...(locale ? { locale } : {}) })
    $('preview-output').textContent = Object.entries(rendered.content).map(([part, text]) => `${part}: ${text}`).join('\n\n')
  } catch (err) {
    $('preview-output').textContent = err instanceof ApiError ? `${err.code}: ${err.message}` : 'The service could not be reached.'
  }
}

/** Secrets arrive as { set, setAt } only; the page shows them masked either way. */
function describe (value) {
  if (value && typeof value === 'object' && 'set' in value) return value.set ? `•••••••• (set ${value.setAt ?? ''})` : 'not set'
  if (value && typeof value === 'object') return Object.entries(value).map(([k, v]) => `${k}: ${describe(v)}`).join(', ')
  return value === '' ? '(platform default)' : String(value)
}

async function loadConfig () {
  const config = await api('GET', '/v1/config')
  const items = []
  for (const key of ['emailFrom', 'emailFromName', 'replyTo', 'smsSenderId', 'providers', 'smtp', 'smsHttp', 'webhook']) {
    items.push(el('dt', key), el('dd', describe(config[key]), { 'data-key': key }))
  }
  $('config-list').replaceChildren(...items)
}

async function loadStats () {
  const stats = await api('GET', '/v1/admin/stats')
  $('stats-rows').replaceChildren(...stats.tenants.map((s) => {
    const row = el('tr', undefined, { 'data-tenant': s.tenant })
    for (const cell of [s.tenant, s.counts.queued, s.counts.sent, s.counts.delivered, s.counts.failed, s.counts.bounced, s.counts.canceled, s.queue.depth, Math.round(s.queue.oldestSeconds)]) row.append(el('td', cell))
    return row
  }))
}

$('sign-in-form').addEventListener('submit', (event) => {
  event.preventDefault()
  signIn($('token').value).catch(problem)
})
$('sign-out').addEventListener('click', signOut)
for (const button of $('tabs').querySelectorAll('button')) button.addEventListener('click', () => show(button.dataset.tab))
for (const id of ['filter-status', 'filter-channel']) $(id).addEventListener('change', () => loadMessages().catch(problem))
$('preview-run').addEventListener('click', () => { preview() })

// A sign-in link carries a one-time code, never a token: the page takes it off the address bar
// (and so off this history entry) before anything else, then trades it once for the token. A
// fragment never reaches a server log; the code kept in the browser's history is spent.
async function fromLink (code) {
  const res = await fetch('/console/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code }) })
  const body = await res.json().catch(() => null)
  if (!res.ok) throw Object.assign(new ApiError(res.status, body), { link: true })
  return body.token
}

const link = new URLSearchParams(location.hash.slice(1))
if (location.hash !== '') history.replaceState(null, '', location.pathname)
const code = link.get('code')
if (code) fromLink(code).then(signIn, problem)
else {
  const saved = sessionStorage.getItem('console-token')
  if (saved) signIn(saved).catch(problem)
}
