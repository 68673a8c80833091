import createError from '@fastify/error'

export const UnknownClusterError = createError<'MT_UNKNOWN_CLUSTER', 500, [string]>(
  'MT_UNKNOWN_CLUSTER', 'No connection is configured for database cluster "%s"', 500)
