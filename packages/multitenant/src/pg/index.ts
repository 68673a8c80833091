export { TenantDb, type TenantDbOptions, type TenantTx, type UnitOptions } from './tenant-db.ts'
export { clusterEnvName, clustersFromEnv } from '../clusters.ts'
export { DatabaseUnavailableError, UnitRefusedError, UnknownClusterError } from './errors.ts'
export {
  DEFAULT_GROUP_ROLE, DEFAULT_OWNER_ROLE, setupDatabase, loginUrl, createServiceLogin, tenantRoleStatements, tenantGrants, checkHardening, dropInheritance, assertRoleName,
  type Login, type SetupDatabaseOptions, type SetupReport, type ServiceLoginOptions, type HardeningReport
} from './roles.ts'
