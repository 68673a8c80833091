/**
 * The PostgreSQL error behind a failure (drizzle wraps driver errors; the PostgreSQL error is a
 * `cause`): its SQLSTATE code and message, nothing else. drizzle's own error carries the SQL text
 * and its parameters, which must reach neither answers nor logs.
 */
export function databaseError (err: unknown): { code: string, message: string } | undefined {
  for (let e = err; typeof e === 'object' && e !== null; e = (e as { cause?: unknown }).cause) {
    const { code, message } = e as { code?: unknown, message?: unknown }
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return { code, message: String(message) }
  }
  return undefined
}
