import { createSigner } from 'fast-jwt'
import type { JwtKeys } from './config.ts'
import { createKeyRing, type KeyRing } from './keys.ts'
import type { Claims } from './plugins/auth.ts'

export const DEFAULT_ISSUER = 'tenant-registry'
export const DEFAULT_AUDIENCE = 'platform'

/** What a platform token may carry (DESIGN.md "Tokens"). */
export const TENANT_ROLES = ['owner', 'admin', 'manager', 'member'] as const
export const PLATFORM_ROLES = ['platform-admin'] as const

export interface IssueOptions {
  issuer?: string
  audience?: string
  /** Lifetime in seconds (default one hour). */
  expiresIn?: number
}

/** Signs `claims` for `expiresIn` seconds (default: the issuer's) and `audience` (default: the issuer's). */
export type TokenIssuer = (claims: Claims & Record<string, unknown>, expiresIn?: number, audience?: string) => string

/**
 * Signs tokens the registry and the services accept: with the key ring's private key and its
 * `kid` in the header (so verifiers pick the key from the published set), or with the
 * development-only shared secret. Needs the private key (or the secret).
 */
export function tokenIssuer (keys: JwtKeys | KeyRing, options: IssueOptions = {}): TokenIssuer {
  const ring = 'jwks' in keys ? keys : createKeyRing(keys)
  const signing = ring.signing
  if (signing === undefined) throw new Error('JWT_PRIVATE_KEY is needed to issue tokens')
  const issuer = options.issuer ?? DEFAULT_ISSUER
  const defaultAudience = options.audience ?? DEFAULT_AUDIENCE
  const defaultLifetime = options.expiresIn ?? 3600
  // One signer; `aud`, `iat` and `exp` go in each payload.
  const sign = createSigner({ key: signing.key, algorithm: signing.alg, iss: issuer, ...(signing.kid === undefined ? {} : { kid: signing.kid }) })
  return (claims, expiresIn = defaultLifetime, audience = defaultAudience) => {
    const iat = Math.floor(Date.now() / 1000)
    return sign({ ...claims, aud: audience, iat, exp: iat + expiresIn })
  }
}
