// The registry's signing keys: one private key signs, every public key it lists verifies and is
// published at /.well-known/jwks.json, each under a key id (`kid`). A shared HS256 secret is the
// development-only alternative: nothing is published then, and every verifier holds the secret.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type AsymmetricKeyDetails, type JsonWebKey, type KeyObject } from 'node:crypto'
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError, type JwtKeys } from './config.ts'

export type SigningAlgorithm = 'EdDSA' | 'RS256' | 'ES256' | 'ES384'

/** A public key as published: a JWK with its key id and algorithm. */
export interface PublishedKey extends JsonWebKey {
  kid: string
  alg: SigningAlgorithm
  use: 'sig'
}

export interface KeyRing {
  /** The development-only shared secret (HS256); unset with a key pair. */
  secret?: string
  /** What signs: the private key (PEM), its algorithm and key id. Unset on a verify-only registry. */
  signing?: { key: string, alg: SigningAlgorithm | 'HS256', kid?: string }
  /** The published set (`{ keys: [] }` with a secret: a secret is never published). */
  jwks: { keys: PublishedKey[] }
}

const PEM_BLOCK = /-----BEGIN ([A-Z ]+)-----[\s\S]+?-----END \1-----/g

/** Every PEM block in a text (JWT_PUBLIC_KEY may list several public keys during a rotation). */
export function pemBlocks (text: string): string[] {
  return [...text.matchAll(PEM_BLOCK)].map((m) => m[0] + '\n')
}

/** The JWS algorithm a key signs with: Ed25519 → EdDSA, RSA (≥ 2048 bits) → RS256, P-256/P-384 → ES256/ES384. */
export function algorithmOf (key: KeyObject): SigningAlgorithm {
  // Always there on the asymmetric keys createPublicKey and createPrivateKey return.
  const details = key.asymmetricKeyDetails as AsymmetricKeyDetails
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      return 'EdDSA'
    case 'rsa':
      if (Number(details.modulusLength) < 2048) throw new Error('an RSA key needs at least 2048 bits')
      return 'RS256'
    case 'ec':
      if (details.namedCurve === 'prime256v1') return 'ES256'
      if (details.namedCurve === 'secp384r1') return 'ES384'
      throw new Error(`EC keys on curve ${String(details.namedCurve)} are not supported (P-256 or P-384)`)
    default:
      throw new Error(`${String(key.asymmetricKeyType)} keys are not supported (Ed25519, RSA, EC P-256 or P-384)`)
  }
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url): a key id derived from the key itself. */
export function thumbprint (jwk: JsonWebKey): string {
  const members = jwk.kty === 'RSA' ? ['e', 'kty', 'n'] : jwk.kty === 'EC' ? ['crv', 'kty', 'x', 'y'] : ['crv', 'kty', 'x']
  const canonical = JSON.stringify(Object.fromEntries(members.map((m) => [m, jwk[m as keyof JsonWebKey]])))
  return createHash('sha256').update(canonical).digest('base64url')
}

function publicKeyOf (variable: string, pem: string): KeyObject {
  let key: KeyObject
  try {
    key = createPublicKey(pem)
  } catch {
    throw new ConfigError(variable, 'holds something that is not a PEM public key')
  }
  return key
}

function published (key: KeyObject, variable: string): PublishedKey {
  let alg: SigningAlgorithm
  try {
    alg = algorithmOf(key)
  } catch (err) {
    throw new ConfigError(variable, (err as Error).message)
  }
  const jwk = key.export({ format: 'jwk' })
  return { ...jwk, kid: thumbprint(jwk), alg, use: 'sig' }
}

/**
 * The key ring for a configuration: the signing key with its `kid` (JWT_KEY_ID, else the RFC 7638
 * thumbprint) and every public key of JWT_PUBLIC_KEY, which must include the signing key's own.
 * Problems are ConfigErrors naming the variable.
 */
export function createKeyRing (keys: JwtKeys): KeyRing {
  if ('secret' in keys) return { secret: keys.secret, signing: { key: keys.secret, alg: 'HS256' }, jwks: { keys: [] } }
  const blocks = pemBlocks(keys.publicKey)
  if (blocks.length === 0) throw new ConfigError('JWT_PUBLIC_KEY', 'must hold one or more PEM public keys')
  const ring = blocks.map((pem) => published(publicKeyOf('JWT_PUBLIC_KEY', pem), 'JWT_PUBLIC_KEY'))
  const kids = new Set(ring.map((k) => k.kid))
  if (kids.size !== ring.length) throw new ConfigError('JWT_PUBLIC_KEY', 'lists the same key twice')
  if (keys.privateKey === undefined) {
    if (keys.keyId !== undefined) throw new ConfigError('JWT_KEY_ID', 'names the signing key: set it with JWT_PRIVATE_KEY')
    return { jwks: { keys: ring } }
  }
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(keys.privateKey)
  } catch {
    throw new ConfigError('JWT_PRIVATE_KEY', 'is not a PEM private key')
  }
  const own = published(createPublicKey(privateKey), 'JWT_PRIVATE_KEY')
  const index = ring.findIndex((k) => k.kid === own.kid)
  if (index === -1) throw new ConfigError('JWT_PUBLIC_KEY', 'must include the public key of JWT_PRIVATE_KEY')
  const kid = keys.keyId ?? own.kid
  if (keys.keyId !== undefined) {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(keys.keyId)) throw new ConfigError('JWT_KEY_ID', 'must be 1 to 64 letters, digits, ".", "_" or "-"')
    if (kids.has(keys.keyId) && keys.keyId !== own.kid) throw new ConfigError('JWT_KEY_ID', 'is the key id of another public key')
    ring[index] = { ...own, kid }
  }
  return { signing: { key: keys.privateKey, alg: own.alg, kid }, jwks: { keys: ring } }
}

export interface SigningKeyFiles {
  privateKey: string
  publicKey: string
  privateKeyPath: string
  publicKeyPath: string
  /** True when this call made the pair. */
  created: boolean
}

/**
 * The development stack's signing key: an Ed25519 pair kept in `dir` (`jwt-private.pem`, mode
 * 0600, and `jwt-public.pem`), made on first use and read afterwards. Give the registry both
 * (JWT_PRIVATE_KEY, JWT_PUBLIC_KEY) and the services only the registry's JWKS URL.
 */
export async function ensureSigningKey (dir: string): Promise<SigningKeyFiles> {
  const privateKeyPath = join(dir, 'jwt-private.pem')
  const publicKeyPath = join(dir, 'jwt-public.pem')
  let created = false
  let privateKey = await readFile(privateKeyPath, 'utf8').catch(() => undefined)
  if (privateKey === undefined) {
    await mkdir(dir, { recursive: true })
    const pair = generateKeyPairSync('ed25519', { privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
    // Written aside and linked into place, which fails if another start got there first: nobody
    // reads half a key, and two starts agree on one key.
    const partial = `${privateKeyPath}.${process.pid}.${Date.now()}.tmp`
    await writeFile(partial, pair.privateKey, { mode: 0o600 })
    try {
      await link(partial, privateKeyPath)
      created = true
    } catch {}
    await rm(partial, { force: true })
    privateKey = await readFile(privateKeyPath, 'utf8')
  }
  // The public half is always derived again, so a lost or stale jwt-public.pem cannot disagree.
  const publicKey = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }) as string
  if (await readFile(publicKeyPath, 'utf8').catch(() => undefined) !== publicKey) await writeFile(publicKeyPath, publicKey)
  return { privateKey, publicKey, privateKeyPath, publicKeyPath, created }
}
