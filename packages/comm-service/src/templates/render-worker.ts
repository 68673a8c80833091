// The render pool's worker thread (`pool.ts`): LiquidJS runs here, never on the event loop. Loaded
// as `render-worker.ts` from the sources (Node's type stripping) or `render-worker.js` from `dist`.
import type { MessagePort } from 'node:worker_threads'
import { renderVariant, type RenderJob, type RenderResult } from './render.ts'

/** A job, and the port on which the thread says it has started it (the pool's clock starts then). */
export interface RenderTask extends RenderJob {
  started: MessagePort
}

export default async function render (task: RenderTask): Promise<RenderResult> {
  const { started, ...job } = task
  started.postMessage(0)
  started.close()
  return await renderVariant(job)
}
