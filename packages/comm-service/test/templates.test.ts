// The template engine on its own: HTML escaping, defaults, and hostile templates and data that
// end in a clear 400 or a bounded render failure, never a hang or a crash.
import t from 'tap'
import { RenderPool } from '../src/templates/pool.ts'
import { checkTemplate, renderPart, renderVariant, TEMPLATE_LIMITS } from '../src/templates/render.ts'

t.test('renders with data over defaults; html escaped, text plain', async (t) => {
  t.equal(await renderPart('text', 'Hi {{ name }}, order {{ order.id }}', { name: '<b>Ann</b>', order: { id: 7 } }), 'Hi <b>Ann</b>, order 7')
  t.equal(await renderPart('html', '<p>Hi {{ name }}</p>', { name: '<script>alert(1)</script>' }), '<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>')
  t.equal(await renderPart('subject', 'Welcome, {{ name }}', {}, { name: 'friend' }), 'Welcome, friend', 'a declared default fills a missing variable')
  t.equal(await renderPart('subject', 'Welcome, {{ name }}', { name: 'Ann' }, { name: 'friend' }), 'Welcome, Ann', 'data wins over the default')
  t.equal(await renderPart('text', '{{ items | size }} items: {{ items | join: ", " }}', { items: ['a', 'b'] }), '2 items: a, b')
})

t.test('hostile templates and data: a 400 with a code, quickly, and the process goes on', async (t) => {
  const cases: Array<[string, 'subject' | 'text' | 'html' | 'body', string, Record<string, unknown>, string]> = [
    ['unknown variable', 'text', 'Hi {{ nobody }}', {}, 'TEMPLATE_RENDER_FAILED'],
    ['unknown filter', 'text', '{{ name | shell }}', { name: 'x' }, 'TEMPLATE_INVALID'],
    ['include from the file system', 'text', "{% include '/etc/passwd' %}", {}, 'TEMPLATE_RENDER_FAILED'],
    ['render a file', 'text', "{% render '../../package.json' %}", {}, 'TEMPLATE_RENDER_FAILED'],
    ['layout from the file system', 'text', "{% layout '/etc/hosts' %}x", {}, 'TEMPLATE_RENDER_FAILED'],
    ['a huge for range (refused as a literal range)', 'text', '{% for i in (1..100000000) %}{{ i }}{% endfor %}', {}, 'TEMPLATE_INVALID'],
    ['a huge for range from the data', 'text', '{% for i in (1..n) %}{{ i }}{% endfor %}', { n: 100000000 }, 'TEMPLATE_RENDER_FAILED'],
    ['nested huge loops (refused as literal ranges)', 'text', '{% for i in (1..100000) %}{% for j in (1..100000) %}x{% endfor %}{% endfor %}', {}, 'TEMPLATE_INVALID'],
    ['nested loops from the data', 'text', '{% for i in (1..n) %}{% for j in (1..n) %}x{% endfor %}{% endfor %}', { n: 100000 }, 'TEMPLATE_RENDER_FAILED'],
    ['a per-element filter over a range from the data', 'text', '{{ (1..n) | has_exp: "i", "i < 0" }}', { n: 700000 }, 'TEMPLATE_RENDER_FAILED'],
    ['a per-element filter over an object', 'text', '{{ o | group_by: "x" | size }}', { o: Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, i])) }, 'TEMPLATE_RENDER_FAILED'],
    ['memory doubling', 'text', '{% assign a = "1,2,3" | split: "," %}{% for i in (1..40) %}{% assign a = a | concat: a %}{% endfor %}{{ a | size }}', {}, 'TEMPLATE_RENDER_FAILED'],
    ['a giant output', 'text', '{% for i in (1..20000) %}0123456789{% endfor %}', {}, 'TEMPLATE_RENDER_FAILED'],
    ['a giant subject', 'subject', '{% for i in (1..100) %}abcdefg{% endfor %}', {}, 'TEMPLATE_RENDER_FAILED'],
    ['a subject that renders a line break', 'subject', 'Hi {{ name }}', { name: 'Ann\r\nBcc: x@evil.test' }, 'TEMPLATE_RENDER_FAILED'],
    ['__proto__ in data', 'text', '{{ __proto__.polluted }}', JSON.parse('{"__proto__": {"polluted": "yes"}}') as Record<string, unknown>, 'TEMPLATE_INVALID'],
    ['constructor key in data', 'text', '{{ a.constructor }}', { a: JSON.parse('{"constructor": {"name": "x"}}') }, 'TEMPLATE_INVALID'],
    ['constructor of data', 'text', '{{ user.constructor.name }}', { user: {} }, 'TEMPLATE_RENDER_FAILED'],
    ['toString of a string', 'text', '{{ name.constructor }}', { name: 'x' }, 'TEMPLATE_RENDER_FAILED'],
    ['a template too long', 'text', 'x'.repeat(TEMPLATE_LIMITS.source + 1), {}, 'TEMPLATE_INVALID'],
    ['unclosed tag', 'text', '{% if x %}never closed', { x: 1 }, 'TEMPLATE_INVALID'],
    ['unknown tag', 'text', '{% exec "rm -rf /" %}', {}, 'TEMPLATE_INVALID'],
    ['data too big', 'text', '{{ blob }}', { blob: 'x'.repeat(TEMPLATE_LIMITS.data + 1) }, 'TEMPLATE_INVALID'],
    ['deep cycle of captures', 'text', '{% capture a %}x{% endcapture %}{% for i in (1..30) %}{% capture a %}{{ a }}{{ a }}{% endcapture %}{% endfor %}{{ a | size }}', {}, 'TEMPLATE_RENDER_FAILED']
  ]
  for (const [name, part, source, data, code] of cases) {
    const started = Date.now()
    await t.rejects(renderPart(part, source, data), { code, statusCode: 400 }, name)
    const ms = Date.now() - started
    t.ok(ms < 3000, `${name}: settled in ${ms} ms`)
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched')
  t.equal(await renderPart('text', 'still {{ ok }}', { ok: 'fine' }), 'still fine', 'the engine still renders afterwards')
  t.throws(() => checkTemplate('html', '{{ x | nope }}'), { code: 'TEMPLATE_INVALID', message: /html: .*nope/ })
})

t.test('ranges and per-element filters are bounded: literal ranges when saved, every visit when rendered', async (t) => {
  t.throws(() => checkTemplate('text', `{{ (1..${TEMPLATE_LIMITS.range + 1}) | size }}`), { code: 'TEMPLATE_INVALID', message: /range \(1\.\.50001\) has more than 50000 elements/ })
  t.throws(() => checkTemplate('text', '{% if x %}{% for i in (-5..50000) %}{% endfor %}{% endif %}'), { code: 'TEMPLATE_INVALID' }, 'nested in blocks, from a negative start')
  t.throws(() => checkTemplate('text', '{% assign v = (1..3) | where_exp: "i", "i == (0..99999) | size" %}'), { code: 'TEMPLATE_INVALID' }, 'inside the expression of a *_exp filter')
  t.doesNotThrow(() => checkTemplate('text', `{% for i in (1..${TEMPLATE_LIMITS.range}) %}{% endfor %}{{ (1..n) | size }}{{ (a..b) | size }}{{ x | default: 1, allow_false: true }}`), 'at the limit, or with bounds from the data')
  t.doesNotThrow(() => checkTemplate('text', '{{ x | where_exp: "i", "i | nope" }}'), 'an expression that does not parse fails when rendered, not when saved')
  await t.rejects(renderPart('text', '{{ x | where_exp: "i", "i | nope" }}', { x: [1] }), { code: 'TEMPLATE_RENDER_FAILED', message: /nope/ })

  // One budget for the whole render: parts and nested calls together.
  const job = { parts: { subject: '{{ (1..n) | map: "x" | size }}', text: '{{ (1..n) | where_exp: "i", "i > 0" | size }}' }, data: { n: 15_000 }, defaults: {} }
  t.match(await renderVariant(job), { ok: false, code: 'TEMPLATE_RENDER_FAILED', message: /^text: where_exp over 15000 elements.*at most 20000/ }, 'the second part is over what the first left')
  t.match(await renderVariant({ parts: { text: '{{ s | sort | size }}' }, data: { s: 'abc' }, defaults: {} }), { ok: true }, 'a string counts as one element')
  t.match(await renderVariant({ ...job, elements: 40_000 }), { ok: true, content: { subject: '15000', text: '15000' } }, 'a larger budget')
  t.match(await renderVariant({ parts: { body: '{{ x }}' }, data: { x: 'y'.repeat(TEMPLATE_LIMITS.data) }, defaults: {} }), { ok: false, code: 'TEMPLATE_INVALID', message: /data is at most/ })
  t.same(await renderVariant({ parts: { subject: 'Hi {{ who }}', text: '{{ items | where_exp: "i", "i > 1" | join: "," }}' }, data: { items: [1, 2, 3] }, defaults: { who: 'you' } }), { ok: true, content: { subject: 'Hi you', text: '2,3' } })
})

t.test('the render pool: a thread that runs out of heap, a thread that never starts the job', async (t) => {
  const small = new RenderPool({ threads: 1, heapMb: 64, elements: Infinity, timeoutMs: 30_000 })
  t.teardown(async () => await small.close())
  await t.rejects(small.render('a', { body: '{% assign r = (1..n) | concat: (1..n) | concat: (1..n) %}{{ r | size }}' }, { n: 3_000_000 }, {}), { code: 'TEMPLATE_RENDER_FAILED', statusCode: 400, message: /^the render failed: / }, 'the thread ended; the request gets a 400')
  t.same(await small.render('a', { body: 'still {{ x }}' }, { x: 'here' }, {}), { body: 'still here' }, 'a new thread took its place')
  await t.rejects(small.render('a', { body: '{{ x }}' }, { x: 'y'.repeat(TEMPLATE_LIMITS.data) }, {}), { code: 'TEMPLATE_INVALID', statusCode: 400, message: /data is at most/ }, 'refusals keep their code across the thread')
  const never = new RenderPool({ threads: 1, startMs: 0 })
  t.teardown(async () => await never.close())
  await t.rejects(never.render('a', { body: 'x' }, {}, {}), { code: 'SERVICE_UNAVAILABLE', statusCode: 503 }, 'no thread started it in time')
})
