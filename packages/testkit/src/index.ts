export { startEmbeddedPostgres, freePort, type EmbeddedPostgresOptions, type RunningPostgres } from './embedded-postgres.ts'
export { createTestDatabase, type TestDatabase, type Teardownable } from './database.ts'
export { startPgBouncer, findPgBouncer, type RunningPgBouncer } from './pgbouncer.ts'
