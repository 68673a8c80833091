// The template engine on its own: HTML escaping, defaults, and hostile templates and data that
// end in a clear 400 or a bounded render failure, never a hang or a crash.
import t from 'tap'
import { checkTemplate, renderPart, TEMPLATE_LIMITS } from '../src/templates/render.ts'

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
    ['a huge for range', 'text', '{% for i in (1..100000000) %}{{ i }}{% endfor %}', {}, 'TEMPLATE_RENDER_FAILED'],
    ['nested huge loops', 'text', '{% for i in (1..100000) %}{% for j in (1..100000) %}x{% endfor %}{% endfor %}', {}, 'TEMPLATE_RENDER_FAILED'],
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
