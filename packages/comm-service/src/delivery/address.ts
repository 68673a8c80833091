// Where a tenant-named host may be reached. One classification (`isPublicAddress`, ipaddr.js's
// special-purpose ranges), used by every check: a webhook target at accept time, a tenant's SMTP
// host and SMS URL when its configuration is written, and each connection. A connection resolves
// the name once, checks every address, and connects to the address that passed (`pinAddress`,
// `pinnedConnector`), keeping the name for TLS (SNI, certificate check) and the Host header: a DNS
// answer that changes between the check and the connection (rebinding) cannot redirect it.
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import ipaddr from 'ipaddr.js'
import { buildConnector } from 'undici'

type IP = ipaddr.IPv4 | ipaddr.IPv6

/** The embedded IPv4 address in the last 32 bits of an IPv6 address. */
function lastFour (ip: ipaddr.IPv6): ipaddr.IPv4 {
  const [, , , , , , high, low] = ip.parts as [number, number, number, number, number, number, number, number]
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff])
}

// NAT64's well-known prefix (RFC 6052): the IPv4 address is the last 32 bits. Its local-use
// prefix 64:ff9b:1::/48 (RFC 8215) may embed it anywhere, so that one is refused whole.
const NAT64_WELL_KNOWN = ipaddr.parseCIDR('64:ff9b::/96') as [ipaddr.IPv6, number]

function publicIp (ip: IP): boolean {
  if (ip.kind() === 'ipv4') return ip.range() === 'unicast'
  const v6 = ip as ipaddr.IPv6
  const range = v6.range()
  // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) reach the IPv4 address they carry.
  if (range === 'ipv4Mapped') return publicIp(v6.toIPv4Address())
  if (range === 'rfc6052') return v6.match(NAT64_WELL_KNOWN) && publicIp(lastFour(v6))
  // Everything else ipaddr.js names (loopback, unique-local, link-local, 6to4, Teredo,
  // IPv4-translated, documentation, discard, multicast…) is not a public destination.
  if (range !== 'unicast') return false
  // IPv4-compatible (::a.b.c.d, deprecated): judged as the IPv4 address it carries.
  if (v6.parts.slice(0, 6).every((part) => part === 0)) return publicIp(lastFour(v6))
  return true
}

/**
 * Whether a connection to this IP address reaches the public internet: only ipaddr.js's
 * `unicast` is; every special-purpose range (RFC 6890 and after) is not, and an IPv6 form that
 * embeds an IPv4 address (mapped, compatible, NAT64's well-known prefix) is judged as that address.
 * Anything that is not an IP address is not public.
 */
export function isPublicAddress (address: string): boolean {
  if (isIP(address) === 0) return false
  return publicIp(ipaddr.parse(address))
}

/**
 * Whether the allow list names this host (any port) or this `host:port` (IPv6: `[addr]:port`).
 * Entries come from COMM_WEBHOOK_ALLOW_HOSTS: development setups that reach loopback peers.
 */
export function hostAllowed (allow: readonly string[], host: string, port: number): boolean {
  const name = unbracket(host).toLowerCase()
  return allow.some((entry) => {
    const { host: allowed, port: only } = parseAllowEntry(entry)
    return allowed === name && (only === null || only === port)
  })
}

/** One allow-list entry: `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address; throws when malformed. */
export function parseAllowEntry (entry: string): { host: string, port: number | null } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry)
  const named = /^([^:[\]]+)(?::(\d+))?$/.exec(entry)
  const match = bracketed ?? named
  const host = match?.[1] ?? (isIP(entry) === 6 ? entry : '')
  const port = match?.[2] === undefined ? null : Number(match[2])
  if (host === '' || (bracketed !== null && isIP(host) !== 6) || (port !== null && (port < 1 || port > 65535))) {
    throw new Error(`"${entry}" is not a host, host:port or [IPv6]:port`)
  }
  return { host: host.toLowerCase(), port }
}

const unbracket = (host: string): string => host.replace(/^\[|\]$/g, '')

/** Every address of a name; an IP address literal is its own answer. */
export type Resolve = (hostname: string) => Promise<string[]>

/** The system resolver (getaddrinfo), every address in its own order. */
export const systemResolve: Resolve = async (hostname) => (await lookup(hostname, { all: true, verbatim: true })).map((a) => a.address)

export interface HostPolicy {
  /** Hosts or `host:port`s that may resolve to non-public addresses (development). */
  allow?: readonly string[]
  /** How names are resolved (default: the system's); tests answer as a rebinding DNS would. */
  resolve?: Resolve
}

/** The host resolved to a non-public address (permanent: another attempt goes to the same place). */
export class BlockedAddressError extends Error {
  readonly code = 'EBLOCKED'
}

/** The host does not resolve (may be fixed by the time of another attempt). */
export class UnresolvedHostError extends Error {
  readonly code = 'ENOTFOUND'
}

/**
 * The addresses to connect to for `host:port`: the name resolved once and every address checked
 * (one that is not public refuses the host, unless the allow list names it), in the resolver's order.
 */
export async function pinAddresses (host: string, port: number, policy: HostPolicy = {}): Promise<string[]> {
  const name = unbracket(host)
  const resolve = policy.resolve ?? systemResolve
  const addresses = isIP(name) !== 0 ? [name] : await resolve(name).catch(() => [] as string[])
  if (addresses.length === 0) throw new UnresolvedHostError(`${name} does not resolve`)
  if (!hostAllowed(policy.allow ?? [], name, port) && !addresses.every(isPublicAddress)) {
    throw new BlockedAddressError(`${name} resolves to a non-public address`)
  }
  return addresses
}

/** Why `host:port` may not be reached ('unresolved', 'private'), or null when it may. */
export async function hostProblem (host: string, port: number, policy: HostPolicy = {}): Promise<'unresolved' | 'private' | null> {
  try {
    await pinAddresses(host, port, policy)
    return null
  } catch (err) {
    return err instanceof BlockedAddressError ? 'private' : 'unresolved'
  }
}

/**
 * An undici connector that connects only to the checked addresses of each origin
 * (`pinAddresses`, tried in turn until one connects), with the name as TLS servername (so the
 * certificate is checked against the name) and in the Host header (undici writes it from the
 * origin, not from the socket). A refused host fails the request with code EBLOCKED, an
 * unresolved one with ENOTFOUND.
 */
export function pinnedConnector (policy: HostPolicy & { timeout: number }): buildConnector.connector {
  const connect = buildConnector({ timeout: policy.timeout })
  return (options, callback) => {
    const port = Number(options.port) || (options.protocol === 'https:' ? 443 : 80)
    const name = unbracket(options.hostname)
    const servername = isIP(name) === 0 ? { servername: name } : {}
    pinAddresses(name, port, policy).then((addresses) => {
      const attempt = (i: number): void => {
        connect({ ...options, ...servername, hostname: addresses[i] as string }, (...args: Parameters<buildConnector.Callback>) => {
          if (args[0] !== null && i + 1 < addresses.length) return attempt(i + 1)
          callback(...args)
        })
      }
      attempt(0)
    }, (err: Error) => { callback(err, null) })
  }
}
