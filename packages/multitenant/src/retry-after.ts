/**
 * `Retry-After` in ms: seconds (`"7"`) or an HTTP date; 0 for a time already past, undefined when
 * absent or unreadable. Takes a header value as Node and undici give it (a string or a list).
 */
export function retryAfterMs (header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined || value.trim() === '') return undefined
  const seconds = Number(value)
  const ms = Number.isNaN(seconds) ? Date.parse(value) - now : seconds * 1000
  return Number.isNaN(ms) ? undefined : Math.max(0, ms)
}
