export { TenantDb, type TenantDbOptions, type TenantTx, type UnitOptions } from './tenant-db.ts'
export { UnknownClusterError } from './errors.ts'
