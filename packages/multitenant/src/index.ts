export {
  runAsTenant, runAsSystem, runInScope, enterScope, currentScope, currentTenantId, currentTenant,
  requireTenantId, requireTenant, isSystemScope, bindToScope, captureScope, runInCapturedScope,
  forEachTenant, tenantScope, DEFAULT_TENANT_CONCURRENCY, type InScope,
  type TenantScope, type CapturedScope, type ForEachTenantOptions, type TenantRunResult
} from './context.ts'
export {
  TenantResolver, createResolver, normalizeHost, STRATEGY_NAMES,
  type ResolverOptions, type ResolveInput, type Resolution, type StrategyName
} from './resolver.ts'
export {
  TENANT_ID_PATTERN, RESERVED_TENANT_IDS, SCHEMA_PREFIX, isValidTenantId, assertTenantId, schemaName, quotedSchema
} from './tenant-id.ts'
export {
  defineTenantConfig, mergeConfig, TenantConfigInvalidError, type TenantConfig, type TenantConfigOptions, type ConfigOverrides, type ConfigCheck
} from './tenant-config.ts'
export * from './errors.ts'
export type * from './types.ts'
export { actorOf, assertClaims, hasScope, hasRole, UnauthorizedError, type PlatformClaims } from './claims.ts'
export { closeOnSignals, runService, type RunningService } from './process.ts'
export { retryAfterMs } from './retry-after.ts'
