// A TCP proxy that delays every chunk by DELAY_MS in each direction, in order: a stand-in for a
// network link with latency. Prints `LISTENING <port>`. Usage: node delay-proxy.ts <port> <ms>
import { createConnection, createServer, type Socket } from 'node:net'

const [upstreamPort, delayArg] = process.argv.slice(2)
const DELAY = Number(delayArg ?? 1.4)

function pipeDelayed (from: Socket, to: Socket): void {
  const queue: Array<{ due: number, chunk: Buffer }> = []
  let timer: NodeJS.Timeout | null = null
  const flush = (): void => {
    timer = null
    const now = performance.now()
    const due: Buffer[] = []
    while (queue.length > 0 && (queue[0] as { due: number }).due <= now) due.push((queue.shift() as { chunk: Buffer }).chunk)
    // One write for everything due: fewer syscalls, as a network card would batch.
    if (due.length > 0) to.write(due.length === 1 ? due[0] as Buffer : Buffer.concat(due))
    if (queue.length > 0) timer = setTimeout(flush, Math.max(1, Math.ceil((queue[0] as { due: number }).due - now)))
  }
  from.on('data', (chunk) => {
    queue.push({ due: performance.now() + DELAY, chunk })
    timer ??= setTimeout(flush, Math.max(1, Math.ceil(DELAY)))
  })
  from.on('end', () => to.end())
  from.on('error', () => to.destroy())
}

const server = createServer({ noDelay: true }, (client) => {
  const upstream = createConnection({ port: Number(upstreamPort), host: '127.0.0.1', noDelay: true })
  pipeDelayed(client, upstream)
  pipeDelayed(upstream, client)
  upstream.on('error', () => client.destroy())
  client.on('error', () => upstream.destroy())
})
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(`LISTENING ${typeof address === 'object' && address !== null ? address.port : 0}\n`)
})
process.on('SIGTERM', () => process.exit(0))
