#!/usr/bin/env node
// `comm-service`: the environment (README), checked; then serve and deliver until a signal.
import { runService } from '@platform/multitenant'
import { loadConfig } from './config.ts'
import { startCommServer } from './server.ts'

await runService('comm-service', async () => await startCommServer(loadConfig()))
