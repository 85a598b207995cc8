import type { Config } from "../config/index.js";
import type { NatsClient } from "../nats/connect.js";
import type { MeshTls } from "../tls/mesh.js";
import { HttpTransport } from "./http.js";
import { MeshTransport } from "./mesh/transport.js";
import { NatsTransport } from "./nats.js";
import type { Transport } from "./types.js";

export type { Transport } from "./types.js";

export interface TransportDeps {
  config: Config;
  /** mesh.tls, loaded: the http transport dials peers over TLS with it. */
  meshTls?: MeshTls | undefined;
  /** The shared NATS connection, when this sidecar has one: only then can it call nodes over NATS. */
  nats?: NatsClient | undefined;
}

/**
 * Transport factories keyed by the `transport` a node record names. A caller reaches every node
 * whose transport it can build: http always, nats when connected to NATS (undefined otherwise).
 */
export const TRANSPORTS: Record<string, (deps: TransportDeps) => Transport | undefined> = {
  // With transport.mesh (the default), calls to peers that speak the mesh protocol use it; HTTP/1.1 otherwise.
  http: ({ config, meshTls }) => (config.transport.mesh ? new MeshTransport({ meshToken: config.mesh.token, tls: meshTls }) : new HttpTransport({ meshToken: config.mesh.token, tls: meshTls })),
  nats: ({ config, nats }) => (nats ? new NatsTransport(nats, config.mesh.token) : undefined),
};

/** Every transport this sidecar can build, by kind. */
export function createTransports(deps: TransportDeps): Map<string, Transport> {
  const out = new Map<string, Transport>();
  for (const [kind, factory] of Object.entries(TRANSPORTS)) {
    const t = factory(deps);
    if (t) out.set(kind, t);
  }
  return out;
}
