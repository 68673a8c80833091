#!/usr/bin/env node
// Present before the build (pnpm links bins at install time); runs the built CLI.
import '../dist/bin/tenant-migrate.js'
