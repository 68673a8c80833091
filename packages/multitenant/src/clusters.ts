// Database clusters named in the environment: DATABASE_URL is cluster "default", and each
// DATABASE_URL_<NAME> is cluster "<name>". Names compare in that form: "eu-1" and "eu_1" are both
// DATABASE_URL_EU_1. One place for the rule (the plugin's env options, TenantDb, tenant-migrate).

/** The environment variable that holds a cluster's URL: `DATABASE_URL` for "default", else `DATABASE_URL_<NAME>`. */
export function clusterEnvName (cluster: string): string {
  return cluster === 'default' ? 'DATABASE_URL' : `DATABASE_URL_${cluster.toUpperCase().replaceAll('-', '_')}`
}

/** Every `DATABASE_URL[_<NAME>]` variable that has a value, with its cluster name (lower case). */
export function clusterVariables (env: NodeJS.ProcessEnv): Array<{ variable: string, cluster: string, url: string }> {
  const out: Array<{ variable: string, cluster: string, url: string }> = []
  for (const [variable, value] of Object.entries(env)) {
    const match = /^DATABASE_URL(?:_([A-Z0-9_]{1,63}))?$/.exec(variable)
    if (match === null || value === undefined || value.trim() === '') continue
    out.push({ variable, cluster: match[1] === undefined ? 'default' : match[1].toLowerCase(), url: value.trim() })
  }
  return out
}

/** The clusters named in the environment, for `TenantDb`'s `clusters` option. */
export function clustersFromEnv (env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(clusterVariables(env).map(({ cluster, url }) => [cluster, url]))
}
