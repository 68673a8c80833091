// Templates rendered with LiquidJS: no code execution, unknown filters and variables are errors,
// no file system (include, render and layout are refused), only the data's own properties are
// visible (no `__proto__`, `constructor`), and every render is bounded in template size, time,
// accounted memory and output size. `html` output is HTML-escaped; `text`, `subject` and SMS are plain.
import { Liquid, type FS } from 'liquidjs'
import createError from '@fastify/error'

export const TemplateError = createError<'TEMPLATE_INVALID', 400, [string]>('TEMPLATE_INVALID', '%s', 400, undefined, false)
export const TemplateRenderError = createError<'TEMPLATE_RENDER_FAILED', 400, [string]>('TEMPLATE_RENDER_FAILED', '%s', 400, undefined, false)

export const TEMPLATE_LIMITS = Object.freeze({
  /** Characters of one template part. */
  source: 64_000,
  /** Milliseconds for one render. */
  renderMs: 250,
  /** LiquidJS's accounted allocations for one render. */
  memory: 10_000_000,
  /** Bytes of JSON of the data. */
  data: 16_384,
  /** Characters of output per part. */
  output: { subject: 255, text: 100_000, html: 256_000, body: 64_000 }
})

export type Part = keyof typeof TEMPLATE_LIMITS.output

/** No file system: `include`, `render` and `layout` name nothing that exists. */
export const NO_FS: FS = {
  exists: async () => false,
  existsSync: () => false,
  readFile: async (file: string) => { throw new Error(`templates cannot include files (${file})`) },
  readFileSync: (file: string) => { throw new Error(`templates cannot include files (${file})`) },
  resolve: (_root: string, file: string) => file,
  contains: async () => false,
  sep: '/'
}

function engine (escape: boolean): Liquid {
  return new Liquid({
    fs: NO_FS,
    root: [],
    relativeReference: false,
    dynamicPartials: false,
    strictFilters: true,
    strictVariables: true,
    ownPropertyOnly: true,
    parseLimit: TEMPLATE_LIMITS.source,
    renderLimit: TEMPLATE_LIMITS.renderMs,
    memoryLimit: TEMPLATE_LIMITS.memory,
    cache: false,
    ...(escape ? { outputEscape: 'escape' as const } : {})
  })
}

const PLAIN = engine(false)
const HTML = engine(true)

/** Parses a part, so a template that cannot render is refused when it is saved. */
export function checkTemplate (part: Part, source: string): void {
  if (source.length > TEMPLATE_LIMITS.source) throw new TemplateError(`${part} is longer than ${TEMPLATE_LIMITS.source} characters`)
  try {
    (part === 'html' ? HTML : PLAIN).parse(source)
  } catch (err) {
    throw new TemplateError(`${part}: ${firstLine(err)}`)
  }
}

function firstLine (err: unknown): string {
  /* c8 ignore next: LiquidJS throws Errors with a message; the fallbacks are for anything else */
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]?.slice(0, 300) ?? 'invalid'
}

/** JSON data only (a plain object of JSON values), within the size limit. */
export function checkData (data: unknown): Record<string, unknown> {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new TemplateError('data must be an object')
  const json = JSON.stringify(data)
  if (Buffer.byteLength(json) > TEMPLATE_LIMITS.data) throw new TemplateError(`data is at most ${TEMPLATE_LIMITS.data} bytes of JSON`)
  // A fresh copy from JSON: own data properties only, and none named like the prototype chain.
  return JSON.parse(json, (key, value: unknown) => {
    if (FORBIDDEN_KEYS.has(key)) throw new TemplateError(`data may not have a key named ${key}`)
    return value
  }) as Record<string, unknown>
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype'])

/**
 * Renders one part with `data` over `defaults` (a variable missing from both is an error). The
 * same function renders previews and messages, so a preview is byte-identical to what is sent.
 */
export async function renderPart (part: Part, source: string, data: Record<string, unknown>, defaults: Record<string, unknown> = {}): Promise<string> {
  checkTemplate(part, source)
  const scope = { ...checkData(defaults), ...checkData(data) }
  let out: string
  try {
    out = await (part === 'html' ? HTML : PLAIN).parseAndRender(source, scope)
  } catch (err) {
    throw new TemplateRenderError(`${part}: ${firstLine(err)}`)
  }
  if (out.length > TEMPLATE_LIMITS.output[part]) throw new TemplateRenderError(`${part}: the output is longer than ${TEMPLATE_LIMITS.output[part]} characters`)
  // eslint-disable-next-line no-control-regex -- a subject is one line of text
  if (part === 'subject' && /[\u0000-\u001f\u007f]/.test(out)) throw new TemplateRenderError('subject: the output contains a line break or a control character')
  return out
}
