import http from "node:http";
import https from "node:https";
import type tls from "node:tls";
import type { TLSSocket } from "node:tls";
import { loadTls, type TlsFiles } from "./files.js";

/** mesh.tls as configured: the inbound listener's certificate, and what peers must present. */
export interface MeshTlsConfig extends TlsFiles {
  cert: string;
  key: string;
  /** Name checked against the peers' certificates instead of the host they are dialled at. */
  serverName?: string | undefined;
}

export type RequestFn = (options: http.RequestOptions) => http.ClientRequest;

/**
 * TLS between sidecars: the inbound listener serves `cert`/`key`; callers verify it
 * against `ca`. With a `ca`, TLS is mutual: the listener requires a client certificate that
 * chains to it, and callers present their own `cert`/`key`.
 */
export class MeshTls {
  readonly mutual: boolean;
  readonly #server: https.ServerOptions;
  readonly #client: https.AgentOptions;

  constructor(config: MeshTlsConfig) {
    const { cert, key, ca } = loadTls(config, "mesh.tls");
    this.mutual = ca !== undefined;
    this.#server = { cert, key, ...(ca ? { ca, requestCert: true, rejectUnauthorized: true } : {}) };
    this.#client = { cert, key, ...(ca ? { ca } : {}), ...(config.serverName ? { servername: config.serverName } : {}) };
  }

  /** Options for https.createServer. */
  get serverOptions(): https.ServerOptions {
    return this.#server;
  }

  /** Options for tls.connect: dial a peer, presenting this node's certificate (the mesh protocol's connections). */
  connectOptions(): tls.ConnectionOptions {
    return this.#client;
  }

  /** A keep-alive agent that dials peers over TLS, presenting this node's certificate. */
  agent(options: http.AgentOptions): https.Agent {
    return new https.Agent({ ...options, ...this.#client });
  }
}

/** The agent and request function a client of peer sidecars uses: https with mesh.tls, else http. */
export function peerClient(tls: MeshTls | undefined, options: http.AgentOptions): { agent: http.Agent; request: RequestFn } {
  if (tls) return { agent: tls.agent(options), request: (o) => https.request(o) };
  return { agent: new http.Agent(options), request: (o) => http.request(o) };
}

/**
 * The service a peer's client certificate names (its subject CN), when the connection is mutual
 * TLS; undefined otherwise. This is what `inbound.allow` checks under mutual TLS.
 */
export function certifiedCaller(socket: unknown): string | undefined {
  const s = socket as Partial<TLSSocket>;
  if (typeof s.getPeerCertificate !== "function" || !s.authorized) return undefined;
  const cn = s.getPeerCertificate().subject?.CN;
  return typeof cn === "string" ? cn : undefined;
}
