// Templates rendered with LiquidJS: no code execution, unknown filters and variables are errors,
// no file system (include, render and layout are refused), only the data's own properties are
// visible (no `__proto__`, `constructor`), and every render is bounded in template size, time,
// accounted memory, output size and the elements that per-element filters visit (`where_exp` and
// the like: LiquidJS's own time limit is only checked between nodes, never inside one filter).
// A literal range above `TEMPLATE_LIMITS.range` is refused when the template is saved.
// `html` output is HTML-escaped; `text`, `subject` and SMS are plain. This module is pure: the
// service runs it in worker threads (`pool.ts`), never on the event loop.
import { Liquid, TypeGuards, toValueSync, Value, type Context, type FS, type Template } from 'liquidjs'

/** What a LiquidJS filter runs with (`this`); LiquidJS's own type is not exported. */
interface FilterImpl { context: Context }
type FilterHandler = (this: FilterImpl, input: unknown, ...args: unknown[]) => unknown
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
  /** Elements of a literal range (`(1..n)`), checked when a template is saved. */
  range: 50_000,
  /**
   * Elements that per-element filters (`where_exp`, `has_exp`, `map`, `sort`…) may visit in one
   * render, all parts and nested calls together; the whole input of a call is counted up front.
   */
  elements: 20_000,
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

/** The filters that visit each element of their input (LiquidJS 10's array filters that iterate). */
export const PER_ELEMENT_FILTERS = Object.freeze([
  'where', 'where_exp', 'reject', 'reject_exp', 'group_by', 'group_by_exp', 'has', 'has_exp',
  'find', 'find_exp', 'find_index', 'find_index_exp', 'map', 'sum', 'sort', 'sort_natural', 'uniq', 'compact'
])

/** What is left of one render's element budget. */
export interface Budget { left: number, limit: number }
const BUDGETS = new WeakMap<object, Budget>()

function charge (impl: FilterImpl, name: string, input: unknown): void {
  // The render's scope object is the key: one per render (see renderPart).
  const env = impl.context.environments as object
  let budget = BUDGETS.get(env)
  /* c8 ignore next 4: every render registers its budget first; a scope without one gets its own */
  if (budget === undefined) {
    budget = { left: TEMPLATE_LIMITS.elements, limit: TEMPLATE_LIMITS.elements }
    BUDGETS.set(env, budget)
  }
  const n = Array.isArray(input) ? input.length : typeof input === 'object' && input !== null ? Object.keys(input).length : 1
  budget.left -= n
  if (budget.left < 0) throw new Error(`${name} over ${n} elements: filters that visit each element may visit at most ${budget.limit} in one render`)
}

function engine (escape: boolean): Liquid {
  const liquid = new Liquid({
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
  for (const name of PER_ELEMENT_FILTERS) {
    const original = liquid.filters[name] as FilterHandler
    liquid.registerFilter(name, function (this: FilterImpl, input: unknown, ...args: unknown[]): unknown {
      charge(this, name, input)
      return original.call(this, input, ...args)
    })
  }
  return liquid
}

const PLAIN = engine(false)
const HTML = engine(true)

/** Literal ranges in a parsed template (also inside the expressions of `*_exp` filters). */
function checkRanges (liquid: Liquid, templates: Template[]): void {
  const token = (t: unknown): void => {
    if (!TypeGuards.isRangeToken(t)) return
    const { lhs, rhs } = t
    if (TypeGuards.isNumberToken(lhs) && TypeGuards.isNumberToken(rhs) && rhs.content - lhs.content + 1 > TEMPLATE_LIMITS.range) {
      throw new Error(`the range ${t.getText()} has more than ${TEMPLATE_LIMITS.range} elements`)
    }
    token(lhs)
    token(rhs)
  }
  const value = (v: unknown): void => {
    if (!(v instanceof Value)) return token(v)
    for (const t of v.initial.postfix) token(t)
    for (const filter of v.filters) {
      for (const arg of filter.args) {
        const t = Array.isArray(arg) ? arg[1] : arg
        token(t)
        // The expression of `where_exp: "i", "<expression>"` is parsed when the filter runs.
        if (filter.name.endsWith('_exp') && TypeGuards.isQuotedToken(t)) {
          let inner: Value | undefined
          try {
            inner = new Value(t.content, liquid)
          } catch {
            // Not an expression: the render fails with the parser's message.
          }
          if (inner !== undefined) value(inner)
        }
      }
    }
  }
  const visit = (node: Template): void => {
    for (const arg of node.arguments?.() ?? []) value(arg)
    if (node.children !== undefined) for (const child of toValueSync(node.children(false, true))) visit(child)
  }
  for (const node of templates) visit(node)
}

/** Parses a part, so a template that cannot render is refused when it is saved. */
export function checkTemplate (part: Part, source: string): void {
  if (source.length > TEMPLATE_LIMITS.source) throw new TemplateError(`${part} is longer than ${TEMPLATE_LIMITS.source} characters`)
  const liquid = part === 'html' ? HTML : PLAIN
  try {
    checkRanges(liquid, liquid.parse(source))
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
 * Renders one part with `data` over `defaults` (a variable missing from both is an error).
 * `budget`: the element budget this part shares with the render's other parts.
 */
export async function renderPart (part: Part, source: string, data: Record<string, unknown>, defaults: Record<string, unknown> = {}, budget: Budget = { left: TEMPLATE_LIMITS.elements, limit: TEMPLATE_LIMITS.elements }): Promise<string> {
  checkTemplate(part, source)
  const scope = { ...checkData(defaults), ...checkData(data) }
  BUDGETS.set(scope, budget)
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

/** One render of a template variant: what the worker thread is given. */
export interface RenderJob {
  parts: Partial<Record<Part, string>>
  data: Record<string, unknown>
  defaults: Record<string, unknown>
  /** Elements per-element filters may visit (default `TEMPLATE_LIMITS.elements`). */
  elements?: number
}

/** What it answers: the content, or the refusal's code and message (errors do not cross threads intact). */
export type RenderResult =
  | { ok: true, content: Partial<Record<Part, string>> }
  | { ok: false, code: 'TEMPLATE_INVALID' | 'TEMPLATE_RENDER_FAILED', message: string }

/** Renders every part of a variant, in order, under one element budget. */
export async function renderVariant (job: RenderJob): Promise<RenderResult> {
  const limit = job.elements ?? TEMPLATE_LIMITS.elements
  const budget = { left: limit, limit }
  const content: Partial<Record<Part, string>> = {}
  try {
    for (const part of Object.keys(job.parts) as Part[]) content[part] = await renderPart(part, job.parts[part] as string, job.data, job.defaults, budget)
  } catch (err) {
    const { code, message } = err as { code: string, message: string }
    return { ok: false, code: code === 'TEMPLATE_INVALID' ? code : 'TEMPLATE_RENDER_FAILED', message }
  }
  return { ok: true, content }
}
