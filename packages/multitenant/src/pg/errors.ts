import createError from '@fastify/error'

export const UnknownClusterError = createError<'MT_UNKNOWN_CLUSTER', 500, [string]>(
  'MT_UNKNOWN_CLUSTER', 'No connection is configured for database cluster "%s"', 500)

/**
 * The database could not complete a unit of work: its connection was lost (restart, failover,
 * `pg_terminate_backend`) or stopped answering. A write's outcome is unknown. `cause` holds the
 * driver's error. The code is DESIGN's `SERVICE_UNAVAILABLE` (503): services answer it as is.
 */
export const DatabaseUnavailableError = createError<'SERVICE_UNAVAILABLE', 503, [string]>(
  'SERVICE_UNAVAILABLE', 'The database is unavailable (%s), try again later', 503, undefined, false)

/**
 * A unit of work refused a statement and was rolled back: a statement whose command is not data
 * access (`SET`, `RESET`, `DO`, DDL, `CALL`, `LISTEN`, `DECLARE`, `PREPARE`, …), a unit whose
 * role, search path or statement timeout was changed under it, or a statement issued after its
 * unit ended. Nothing of the unit was committed (except what an injected `COMMIT` itself committed,
 * see the README) and its connection is not reused. A 500: it is a bug or an attack, not a user error.
 */
export const UnitRefusedError = createError<'MT_UNIT_REFUSED', 500, [string]>(
  'MT_UNIT_REFUSED', 'Refused in a unit of work: %s; the unit was rolled back', 500, undefined, false)
