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
