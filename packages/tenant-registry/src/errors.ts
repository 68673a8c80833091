import createError from '@fastify/error'

export const ValidationError = createError<'VALIDATION_FAILED', 400, [string]>('VALIDATION_FAILED', '%s', 400, undefined, false)
export const UnauthorizedError = createError<'UNAUTHORIZED', 401, []>('UNAUTHORIZED', 'A valid bearer token is required', 401, undefined, false)
export const ForbiddenError = createError<'FORBIDDEN', 403, [string]>('FORBIDDEN', 'Not allowed: %s', 403, undefined, false)
export const ConflictError = createError<'CONFLICT', 409, [string]>('CONFLICT', '%s', 409, undefined, false)
export const PreconditionFailedError = createError<'PRECONDITION_FAILED', 412, []>('PRECONDITION_FAILED', 'The tenant changed since the version in If-Match', 412, undefined, false)
export const DomainNotFoundError = createError<'DOMAIN_NOT_FOUND', 404, []>('DOMAIN_NOT_FOUND', 'Domain not found', 404, undefined, false)
export const NotFoundError = createError<'NOT_FOUND', 404, [string]>('NOT_FOUND', '%s not found', 404, undefined, false)
