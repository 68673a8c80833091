import { createSigner } from 'fast-jwt'
import type { JwtKeys } from './config.ts'
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

export type TokenIssuer = (claims: Claims, expiresIn?: number) => string

/** Signs tokens the registry and the services accept. Needs the secret or the private key. */
export function tokenIssuer (keys: JwtKeys, options: IssueOptions = {}): TokenIssuer {
  const key = 'secret' in keys ? keys.secret : keys.privateKey
  if (key === undefined) throw new Error('JWT_PRIVATE_KEY is needed to issue tokens')
  const issuer = options.issuer ?? DEFAULT_ISSUER
  const audience = options.audience ?? DEFAULT_AUDIENCE
  const defaultLifetime = options.expiresIn ?? 3600
  const signers = new Map<number, (payload: Claims) => string>()
  return (claims, expiresIn = defaultLifetime) => {
    let sign = signers.get(expiresIn)
    if (sign === undefined) {
      sign = createSigner({ key, iss: issuer, aud: audience, expiresIn: expiresIn * 1000 })
      signers.set(expiresIn, sign)
    }
    return sign(claims)
  }
}
