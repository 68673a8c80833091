// Secrets at rest: AES-256-GCM with a key ring from COMM_ENCRYPTION_KEYS (`id:base64key,…`,
// newest first). New secrets are sealed with the newest key; any key in the ring opens what it
// sealed, so keys rotate without downtime: put the new key first, keep the old one until every
// secret was rewritten. Each box is bound to its tenant and field (the additional data), so a box
// copied into another tenant's configuration does not open.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

const BOX = /^v1\.([A-Za-z0-9_-]{1,32})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,})$/
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/

/** A box that is not one of ours, names a key the ring lacks, or fails its tag. */
export class SecretError extends Error {
  readonly code = 'SECRET_UNREADABLE'
}

export class KeyRing {
  readonly #keys: Map<string, Buffer>
  readonly #current: string

  /** `[id, 32-byte key]` pairs, newest first. */
  constructor (keys: Array<[string, Buffer]>) {
    if (keys.length === 0) throw new Error('a key ring needs at least one key')
    for (const [id, key] of keys) {
      if (!KEY_ID.test(id)) throw new Error(`key id "${id}" must be 1 to 32 letters, digits, _ or -`)
      if (key.length !== 32) throw new Error(`key ${id} must be 32 bytes (base64 of 32 random bytes), got ${key.length}`)
    }
    this.#keys = new Map(keys)
    if (this.#keys.size !== keys.length) throw new Error('key ids must be unique')
    this.#current = keys[0]?.[0] as string
  }

  /** `id:base64key,id:base64key` (COMM_ENCRYPTION_KEYS), newest first. */
  static parse (raw: string): KeyRing {
    const pairs = raw.split(',').map((part) => part.trim()).filter(Boolean).map((part): [string, Buffer] => {
      const colon = part.indexOf(':')
      if (colon < 1) throw new Error('each key is id:base64 (e.g. k2:…,k1:…)')
      const encoded = part.slice(colon + 1)
      if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(encoded)) throw new Error(`key ${part.slice(0, colon)} is not base64`)
      return [part.slice(0, colon), Buffer.from(encoded, 'base64')]
    })
    return new KeyRing(pairs)
  }

  /** A fresh key pair for the environment, e.g. `k1:…`. */
  static generate (id = 'k1'): string {
    return `${id}:${randomBytes(32).toString('base64')}`
  }

  get currentKeyId (): string {
    return this.#current
  }

  /** Seals `plain` for this tenant and field: `v1.<key id>.<iv>.<ciphertext and tag>`. */
  seal (plain: string, context: string): string {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.#current) as Buffer, iv)
    cipher.setAAD(Buffer.from(context))
    const sealed = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()])
    return `v1.${this.#current}.${iv.toString('base64url')}.${sealed.toString('base64url')}`
  }

  /** Opens a box sealed for this tenant and field by any key of the ring. */
  open (box: string, context: string): string {
    const match = BOX.exec(box)
    if (match === null) throw new SecretError('not an encrypted secret')
    const key = this.#keys.get(match[1] as string)
    if (key === undefined) throw new SecretError(`sealed with key ${match[1] as string}, which COMM_ENCRYPTION_KEYS lacks`)
    const sealed = Buffer.from(match[3] as string, 'base64url')
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(match[2] as string, 'base64url'))
      decipher.setAAD(Buffer.from(context))
      decipher.setAuthTag(sealed.subarray(sealed.length - 16))
      return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()]).toString('utf8')
    } catch {
      throw new SecretError('the secret does not open with its key (altered, or sealed for another tenant or field)')
    }
  }

  /** Whether `value` looks like a box (not a plaintext someone wrote into the registry directly). */
  static isBox (value: string): boolean {
    return BOX.test(value)
  }
}

/** The additional data binding a box to its tenant and field. */
export const secretContext = (tenant: string, field: string): string => `comm:${tenant}:${field}`
