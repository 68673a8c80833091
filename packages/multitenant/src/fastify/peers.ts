import { InvalidOptionError } from '../errors.ts'

/**
 * Loads an optional peer dependency for the option that needs it. A missing package is an option
 * error naming the option and the install command, not an `ERR_MODULE_NOT_FOUND` from deep inside.
 */
export async function optionalPeer<M> (setting: string, packages: string | string[], load: () => Promise<M>): Promise<M> {
  try {
    return await load()
  } catch (err) {
    const { code, message } = err as { code?: unknown, message?: unknown }
    const names = [packages].flat()
    const missing = names.filter((name) => String(message).includes(`'${name}'`) || String(message).includes(`"${name}"`))
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && missing.length > 0) {
      throw new InvalidOptionError(`${setting} needs the optional peer dependenc${names.length > 1 ? 'ies' : 'y'} ${names.map((n) => `"${n}"`).join(' and ')} (${missing.map((n) => `"${n}"`).join(' and ')} not installed): npm install ${names.join(' ')}`)
    }
    throw err
  }
}
