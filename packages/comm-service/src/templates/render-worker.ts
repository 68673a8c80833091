// The render pool's worker thread (`pool.ts`): LiquidJS runs here, never on the event loop. Loaded
// as `render-worker.ts` from the sources (Node's type stripping) or `render-worker.js` from `dist`.
import { renderVariant, type RenderJob, type RenderResult } from './render.ts'

export default async function render (job: RenderJob): Promise<RenderResult> {
  return await renderVariant(job)
}
