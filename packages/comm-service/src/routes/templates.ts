// /v1/templates: CRUD with immutable versions and locale variants, and a preview that renders
// with the same function as sending. `templates:write` changes, `messages:read` reads.
import type { FastifyInstance } from 'fastify'
import { errorResponse, withTenant } from '@platform/multitenant/fastify'
import { ACCESS } from '../roles.ts'
import { TEMPLATE_LIMITS } from '../templates/render.ts'
import type { Channel, TemplateInput, TemplateStore } from '../templates/store.ts'

const NAME = { type: 'string', pattern: '^[a-z0-9][a-z0-9_.-]{0,63}$' } as const
const LOCALE = { type: 'string', pattern: '^[a-z]{2,3}(-[A-Z]{2})?$' } as const
const part = { type: 'string', maxLength: TEMPLATE_LIMITS.source } as const
const variant = { type: 'object', additionalProperties: false, minProperties: 1, properties: { subject: part, text: part, html: part, body: part } } as const
const content = {
  defaultLocale: LOCALE,
  variants: { type: 'object', minProperties: 1, maxProperties: 50, propertyNames: LOCALE, additionalProperties: variant },
  defaults: { type: 'object', maxProperties: 100 }
} as const
const nameParams = { type: 'object', required: ['name'], properties: { name: NAME } } as const
const READ = { auth: ACCESS.readTemplates }
const WRITE = { auth: ACCESS.editTemplates }

export async function templateRoutes (app: FastifyInstance, options: { templates: TemplateStore }): Promise<void> {
  const { templates } = options

  app.post<{ Body: TemplateInput & { name: string, channel: Channel } }>('/v1/templates', {
    config: WRITE,
    schema: {
      summary: 'Create a template (version 1)',
      body: { type: 'object', additionalProperties: false, required: ['name', 'channel', 'defaultLocale', 'variants'], properties: { name: NAME, channel: { type: 'string', enum: ['email', 'sms', 'webhook'] }, ...content } },
      response: { 201: { description: 'Created', headers: { location: { type: 'string' } }, type: 'object', additionalProperties: true }, 409: errorResponse(409) }
    }
  }, withTenant(async (request, reply) => {
    const { name, channel, ...input } = request.body
    const made = await templates.create(name, channel, input)
    return await reply.code(201).header('location', `/v1/templates/${name}`).send(made)
  }))

  app.put<{ Params: { name: string }, Body: TemplateInput }>('/v1/templates/:name', {
    config: WRITE,
    schema: { summary: 'A new version of a template', params: nameParams, body: { type: 'object', additionalProperties: false, required: ['defaultLocale', 'variants'], properties: content } }
  }, withTenant(async (request) => await templates.update(request.params.name, request.body)))

  app.get('/v1/templates', { config: READ, schema: { summary: 'The tenant\'s templates' } }, withTenant(async () => ({ items: await templates.list() })))

  app.get<{ Params: { name: string }, Querystring: { version?: string } }>('/v1/templates/:name', {
    config: READ,
    schema: { summary: 'A template at its current (or a given) version, with its history', params: nameParams, querystring: { type: 'object', additionalProperties: false, properties: { version: { type: 'string', pattern: '^[1-9][0-9]{0,8}$' } } } }
  }, withTenant(async (request) => {
    const version = request.query.version === undefined ? undefined : Number(request.query.version)
    const found = await templates.get(request.params.name, version)
    return { ...found, history: await templates.history(request.params.name) }
  }))

  app.delete<{ Params: { name: string } }>('/v1/templates/:name', { config: WRITE, schema: { summary: 'Remove a template', params: nameParams, response: { 204: { description: 'Removed', type: 'null' } } } }, withTenant(async (request, reply) => {
    await templates.remove(request.params.name)
    return await reply.code(204).send()
  }))

  app.post<{ Params: { name: string }, Body: { locale?: string, version?: number, data?: Record<string, unknown> } }>('/v1/templates/:name/preview', {
    config: READ,
    schema: { summary: 'Render a template exactly as sending would', params: nameParams, body: { type: 'object', additionalProperties: false, properties: { locale: LOCALE, version: { type: 'integer', minimum: 1 }, data: { type: 'object' } } } }
  }, withTenant(async (request) => await templates.render(request.params.name, { tenant: request.tenant.id, locale: request.body.locale, version: request.body.version, data: request.body.data ?? {} })))
}
