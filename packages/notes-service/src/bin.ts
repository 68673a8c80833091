#!/usr/bin/env node
// `notes-service`: the environment (README), checked; then listen until a signal.
import { runService } from '@platform/multitenant'
import { loadConfig } from './config.ts'
import { startNotesServer } from './server.ts'

await runService('notes-service', async () => await startNotesServer(loadConfig()))
