// POST load with autocannon, as a child process (pinned by the caller): reads the run from the
// BENCH_LOAD environment variable as JSON, prints autocannon's figures as JSON.
import autocannon from 'autocannon'

const run = JSON.parse(process.env.BENCH_LOAD as string) as { url: string, connections: number, seconds: number, requests: Array<{ method: 'POST', path: string, headers: Record<string, string>, body: string }> }
const result = await autocannon({ url: run.url, connections: run.connections, duration: run.seconds, requests: run.requests })
process.stdout.write(JSON.stringify({ rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors, non2xx: result.non2xx }))
