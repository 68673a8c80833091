// The OpenAPI conventions: operationIds and tags from the path, the shared error schema on every
// error answer, `security: []` on open routes, a default success answer, and serialization that
// still sends the platform's error body.
import Fastify from 'fastify'
import swagger from '@fastify/swagger'
import t from 'tap'
import { errorResponse, openApiConventions, openApiRefResolver, operationIdOf, platformErrorHandler } from '../../src/fastify/plugin.ts'

t.test('operation ids and error answers', async (t) => {
  t.equal(operationIdOf('GET', '/v1/tenants/:id/domains'), 'getTenantsByIdDomains')
  t.equal(operationIdOf('post', '/v1/messages/:id/cancel'), 'postMessagesByIdCancel')
  t.equal(operationIdOf('GET', '/health'), 'getHealth')
  t.same(errorResponse(404), { description: 'Not found (NOT_FOUND, TENANT_NOT_FOUND)', $ref: 'PlatformError#' })
  t.same(errorResponse(599), { description: 'Error', $ref: 'PlatformError#' })
  t.same(errorResponse(409, 'Taken'), { description: 'Taken', $ref: 'PlatformError#' })
})

t.test('every route gets the conventions; the error body is still sent whole', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.setErrorHandler(platformErrorHandler())
  await app.register(swagger, { openapi: { openapi: '3.1.0', info: { title: 't', version: '1' } }, refResolver: openApiRefResolver })
  openApiConventions(app, { operations: ['/health'] })
  app.get('/health', { schema: { response: { 200: { type: 'object', properties: { status: { type: 'string' } } } } } }, async () => ({ status: 'ok' }))
  app.post('/v1/things', { config: { auth: false }, schema: { body: { type: 'object', properties: { n: { type: 'integer' } } } } }, async () => ({ made: true, extra: { x: 1 } }))
  app.get('/v1/things/:id', { schema: { summary: 'One', tags: ['mine'], operationId: 'oneThing', response: { 201: { type: 'object' } } } }, async () => {
    throw Object.assign(new Error('No such thing'), { statusCode: 404, code: 'NOT_FOUND' })
  })
  app.get('/hidden', { schema: { hide: true } }, async () => 'x')
  app.get('/', async () => ({ hello: 'world' }))
  await app.ready()
  const doc = app.swagger() as unknown as { paths: Record<string, Record<string, any>>, components: { schemas: Record<string, unknown> } }
  t.ok(doc.components.schemas.PlatformError)
  t.match(doc.paths['/health']?.get, { operationId: 'getHealth', tags: ['operations'], security: [], summary: 'GET /health' })
  t.same(Object.keys(doc.paths['/health']?.get.responses), ['200'], 'operations routes get no error answers')
  const post = doc.paths['/v1/things']?.post
  t.match(post, { operationId: 'postThings', tags: ['things'], security: [] })
  t.same(Object.keys(post.responses).sort(), ['200', '400', '404', '413', '415', '503'], 'an open route: no 401 or 403; a body: 413 and 415')
  const get = doc.paths['/v1/things/{id}']?.get
  t.match(get, { operationId: 'oneThing', tags: ['mine'], summary: 'One' }, 'what a route states is kept')
  t.same(Object.keys(get.responses).sort(), ['201', '400', '401', '403', '404', '503'])
  t.equal(get.responses['404'].content['application/json'].schema.$ref, '#/components/schemas/PlatformError')
  t.notOk(doc.paths['/hidden'])
  t.match(doc.paths['/']?.get, { operationId: 'get', tags: ['operations'] }, 'the root path has the operations tag')
  const made = await app.inject({ method: 'POST', url: '/v1/things', payload: { n: 1 } })
  t.same(made.json(), { made: true, extra: { x: 1 } }, 'the default success answer sends the object as it is')
  const missing = await app.inject({ url: '/v1/things/1' })
  t.same(missing.json(), { statusCode: 404, code: 'NOT_FOUND', error: 'Not Found', message: 'No such thing' })
})

t.test('the default operations paths are /health, /ready and /metrics', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(swagger, { openapi: { openapi: '3.1.0', info: { title: 't', version: '1' } } })
  openApiConventions(app)
  app.get('/ready', async () => ({ ready: true }))
  await app.ready()
  const ready = (app.swagger() as unknown as { paths: Record<string, Record<string, any>> }).paths['/ready']?.get
  t.match(ready, { tags: ['operations'], security: [] })
  t.same(Object.keys(ready.responses), ['200'])
})
