import type { Config } from "../config/index.js";
import type { Logger } from "../log.js";
import type { NatsClient } from "../nats/connect.js";
import { LocalRegistry } from "./local.js";
import { NatsRegistry } from "./nats.js";
import { loadTls } from "../tls/files.js";
import type { Registry } from "./types.js";

export type { NodeRecord, Registry, RegistryEvent, RegistryStatus, RegistryWatch } from "./types.js";
export { RegistryView } from "./view.js";

export interface RegistryDeps {
  config: Config;
  log: Logger;
  /** Supplied (connected) when the config uses NATS. */
  nats: () => Promise<NatsClient>;
  /** Aborted when the sidecar stops during start-up. */
  signal?: AbortSignal;
}

/** Registry factories keyed by `registry.kind`. */
export const REGISTRIES: Record<Config["registry"]["kind"], (deps: RegistryDeps) => Promise<Registry>> = {
  local: ({ config, log }) => LocalRegistry.open({ dir: config.registry.dir, ttl: config.registry.ttl }, log),
  nats: async ({ config, log, nats, signal }) =>
    NatsRegistry.open(await nats(), { bucket: config.registry.bucket, ttl: config.registry.ttl, replicas: config.registry.replicas }, log, signal),
  // Loaded only when configured: the etcd client (gRPC) costs memory a NATS or local sidecar need not pay.
  etcd: async ({ config, log, signal }) => {
    const { EtcdRegistry } = await import("./etcd.js");
    const { tls, ...etcd } = config.etcd;
    const pem = tls ? loadTls(tls, "etcd.tls") : undefined;
    return EtcdRegistry.open({ ...etcd, ttl: config.registry.ttl, tls: pem?.ca ? { ca: pem.ca, cert: pem.cert, key: pem.key } : undefined }, log, signal);
  },
};

export function createRegistry(deps: RegistryDeps): Promise<Registry> {
  const factory = REGISTRIES[deps.config.registry.kind];
  if (!factory) throw new Error(`unknown registry kind '${deps.config.registry.kind}' (known: ${Object.keys(REGISTRIES).join(", ")})`);
  return factory(deps);
}
