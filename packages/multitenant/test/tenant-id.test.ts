import t from 'tap'
import { assertTenantId, isValidTenantId, quotedSchema, RESERVED_TENANT_IDS, schemaName } from '../src/tenant-id.ts'
import { HOSTILE_IDS } from './fixtures/hostile-ids.ts'

t.test('valid ids', async (t) => {
  for (const id of ['a', '0', 'acme', 'acme-corp', 'a1-b2-c3', 'x'.repeat(56), '9lives']) {
    t.ok(isValidTenantId(id), id)
    t.equal(assertTenantId(id), id)
  }
})

t.test('hostile ids are refused', async (t) => {
  t.ok(HOSTILE_IDS.length >= 60, `${HOSTILE_IDS.length} hostile ids`)
  for (const id of HOSTILE_IDS) {
    t.notOk(isValidTenantId(id), JSON.stringify(id.slice(0, 40)))
    t.throws(() => assertTenantId(id), { code: 'TENANT_INVALID', statusCode: 400 })
  }
  for (const value of [undefined, null, 42, {}, ['acme']]) {
    t.throws(() => assertTenantId(value), { code: 'TENANT_INVALID' })
  }
})

t.test('reserved ids say so without echoing input', async (t) => {
  t.throws(() => assertTenantId('admin'), { message: 'The tenant id is not valid: the id is reserved' })
  t.throws(() => assertTenantId("x'--"), { message: 'The tenant id is not valid' })
  t.equal(RESERVED_TENANT_IDS.size, 14)
})

t.test('schema names', async (t) => {
  t.equal(schemaName('acme'), 'tenant_acme')
  t.equal(schemaName('acme-corp'), 'tenant_acme_corp')
  t.equal(quotedSchema('a-b'), '"tenant_a_b"')
  t.ok(Buffer.byteLength(schemaName('x'.repeat(56))) <= 63, 'fits PostgreSQL identifiers')
  t.throws(() => schemaName('acme_corp'), { code: 'TENANT_INVALID' })
  t.throws(() => quotedSchema('x"; drop'), { code: 'TENANT_INVALID' })
})
