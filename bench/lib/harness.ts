// Shared pieces of the benchmarks: pinned child processes, an HTTP load generator on the other
// core, interleaved A/B pairs and medians. Each benchmark prints one line `<name> key=value …`.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const TASKSET = existsSync('/usr/bin/taskset') ? '/usr/bin/taskset' : null
const CORES = availableParallelism()

/** Core `n` (mod the number of cores) for server/load separation; null when pinning is unavailable. */
function pin (core: number, command: string, args: string[]): [string, string[]] {
  if (TASKSET === null || CORES < 2) return [command, args]
  return [TASKSET, ['-c', String(core % CORES), command, ...args]]
}

export interface Server {
  readonly url: string
  readonly child: ChildProcess
  stop (): Promise<void>
}

/** Starts `node script args…` on `core`; the script prints `LISTENING <url>` when ready. */
export async function startServer (script: string, args: string[], core = 0, env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const [cmd, argv] = pin(core, process.execPath, [script, ...args])
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before listening`)))
    lines.on('line', (line) => {
      if (line.startsWith('LISTENING ')) resolve(line.slice('LISTENING '.length).trim())
    })
  })
  return {
    url,
    child,
    async stop () {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  }
}

export interface LoadResult {
  rps: number
  p50: number
  p99: number
  errors: number
  non2xx: number
}

const WRK = ['/usr/bin/wrk', '/usr/local/bin/wrk'].find((p) => existsSync(p)) ?? null

/** The load generator in use: wrk (C, cheap per request) when installed, else autocannon. */
export const LOAD_GENERATOR = WRK === null ? 'autocannon' : 'wrk'

function wrkMs (value: string): number {
  const n = Number.parseFloat(value)
  if (value.endsWith('us')) return n / 1000
  if (value.endsWith('ms')) return n
  if (value.endsWith('s')) return n * 1000
  return n
}

/**
 * Loads `url` from `core` and returns its figures: wrk when installed (autocannon, in JavaScript,
 * saturates its own core before a fast server does), else autocannon.
 */
export async function load (url: string, options: { connections?: number, seconds?: number, headers?: Record<string, string>, core?: number, pipelining?: number } = {}): Promise<LoadResult> {
  if (WRK === null || (options.pipelining ?? 1) > 1) return await autocannon(url, options)
  const args = ['-t1', `-c${options.connections ?? 32}`, `-d${options.seconds ?? 3}s`, '--latency']
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push('-H', `${k}: ${v}`)
  args.push(url)
  const [cmd, argv] = pin(options.core ?? 1, WRK, args)
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'ignore'] })
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`wrk exited with ${code}`)
  const non2xx = Number(out.match(/Non-2xx or 3xx responses:\s+(\d+)/)?.[1] ?? 0)
  const errors = (out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/)?.slice(1) ?? []).reduce((a, b) => a + Number(b), 0)
  return {
    rps: Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1] ?? 0),
    p50: wrkMs(out.match(/\s50%\s+(\S+)/)?.[1] ?? '0'),
    p99: wrkMs(out.match(/\s99%\s+(\S+)/)?.[1] ?? '0'),
    errors,
    non2xx
  }
}

async function autocannon (url: string, options: { connections?: number, seconds?: number, headers?: Record<string, string>, core?: number, pipelining?: number } = {}): Promise<LoadResult> {
  const bin = `${ROOT}/node_modules/autocannon/autocannon.js`
  const args = [bin, '-j', '-c', String(options.connections ?? 32), '-d', String(options.seconds ?? 3), '-p', String(options.pipelining ?? 1)]
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push('-H', `${k}=${v}`)
  args.push(url)
  const [cmd, argv] = pin(options.core ?? 1, process.execPath, args)
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'ignore'] })
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`autocannon exited with ${code}`)
  const json = JSON.parse(out) as { requests: { average: number }, latency: { p50: number, p99: number }, errors: number, non2xx: number }
  return { rps: json.requests.average, p50: json.latency.p50, p99: json.latency.p99, errors: json.errors, non2xx: json.non2xx }
}

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

export function percentile (values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

export const fmt = (n: number, digits = 2): string => n.toFixed(digits)

/** Progress on stderr, so stdout keeps one result line per figure. */
export function progress (line: string): void {
  process.stderr.write(`  … ${line}\n`)
}
