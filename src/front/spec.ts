import net from "node:net";
import { SidecarError } from "../errors.js";
import type { Protocol } from "../inbound/jsonrpc.js";
import { isValidName, show } from "../names.js";
import { goFields } from "../micro/go-json.js";

/** Most nodes one sidecar fronts through POST /registry (its own app not counted). */
export const MAX_FRONTED_NODES = 64;
/** Most metadata entries of a fronted node, and their total size (keys and values, UTF-8). */
export const MAX_METADATA_ENTRIES = 32;
export const MAX_METADATA_BYTES = 4096;
/** Longest version string. */
const MAX_VERSION = 64;
/** Longest `?ttl=`: a day. */
export const MAX_TTL_MS = 24 * 3_600_000;
/**
 * The node metadata key that says how RPC-style calls reach a fronted app (go-micro's own key).
 * micro's sidecar spoke JSON-RPC to the apps registered through it, so that is the default.
 */
export const PROTOCOL_KEY = "protocol";

/** One node an app asks its sidecar to front, checked. */
export interface FrontedSpec {
  service: string;
  version: string;
  id: string;
  /** Where the app listens: loopback or app.host only. */
  host: string;
  port: number;
  metadata: Record<string, string>;
  protocol: Protocol;
}

export interface SpecRules {
  /** Hosts besides loopback an app may register (app.host). */
  hosts: readonly string[];
  /** Ports of this sidecar's own listeners on loopback: a node there would loop calls into the sidecar. */
  ownPorts: () => number[];
}

const invalid = (message: string) => new SidecarError("INVALID_REQUEST", message);

/**
 * micro's registry.Service as POST and DELETE /registry take it: `{"name", "version", "metadata",
 * "nodes": [{"id", "address", "port", "metadata"}]}`. Unknown fields (micro's endpoints) are ignored.
 * DELETE may omit the nodes (then every node this sidecar fronts for the service goes).
 */
export function parseService(body: Buffer, rules: SpecRules, nodesRequired: boolean): { service: string; specs: FrontedSpec[]; ids: string[] | undefined } {
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch (err) {
    throw new SidecarError("BAD_JSON", `the request body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalid(`the body must be micro's service object {"name", "nodes": [...]}, got ${show(value)}`);
  // Go decoded micro's JSON case-insensitively: its own README registers {"Name", "Nodes": [{"Port", "Address", "Id"}]}.
  const s = goFields(value as Record<string, unknown>, ["name", "version", "metadata", "nodes"] as const);
  if (typeof s.name !== "string") throw invalid(s.name === undefined ? "field 'name' is required" : `field 'name' must be a string, got ${show(s.name)}`);
  if (!isValidName(s.name)) throw new SidecarError("INVALID_NAME", `service name ${show(s.name)} must match [A-Za-z0-9][A-Za-z0-9._-]{0,62}`);
  const service = s.name;
  const version = s.version === undefined || s.version === "" ? "0.0.0" : s.version;
  if (typeof version !== "string" || version.length > MAX_VERSION || !/^[\x21-\x7e]+$/.test(version)) throw invalid(`field 'version' must be a printable string of at most ${MAX_VERSION} characters, got ${show(s.version)}`);
  const serviceMeta = s.metadata === undefined || s.metadata === null ? {} : metadataOf(s.metadata, "field 'metadata'");
  if (s.nodes === undefined || s.nodes === null || (Array.isArray(s.nodes) && s.nodes.length === 0)) {
    if (nodesRequired) throw invalid("field 'nodes' must list at least one node {\"id\", \"address\", \"port\"}");
    return { service, specs: [], ids: undefined };
  }
  if (!Array.isArray(s.nodes)) throw invalid(`field 'nodes' must be an array, got ${show(s.nodes)}`);
  if (s.nodes.length > MAX_FRONTED_NODES) throw invalid(`at most ${MAX_FRONTED_NODES} nodes per sidecar, got ${s.nodes.length}`);
  const specs: FrontedSpec[] = [];
  const ids: string[] = [];
  s.nodes.forEach((n: unknown, i: number) => {
    const where = `nodes[${i}]`;
    if (typeof n !== "object" || n === null || Array.isArray(n)) throw invalid(`${where} must be an object {"id", "address", "port"}, got ${show(n)}`);
    const node = goFields(n as Record<string, unknown>, ["id", "address", "port", "metadata"] as const);
    if (!isValidName(node.id)) throw new SidecarError("INVALID_NAME", `${where}.id ${show(node.id)} must match [A-Za-z0-9][A-Za-z0-9._-]{0,62}`);
    ids.push(node.id);
    if (!nodesRequired) return; // DELETE needs the ids only
    const { host, port } = addressOf(node.address, node.port, where, rules);
    const metadata = { ...serviceMeta, ...(node.metadata === undefined || node.metadata === null ? {} : metadataOf(node.metadata, `${where}.metadata`)) };
    checkMetadataSize(metadata, where);
    specs.push({ service, version, id: node.id, host, port, metadata, protocol: protocolOf(metadata, where) });
  });
  if (new Set(ids).size !== ids.length) throw invalid("the same node id is listed twice");
  return { service, specs, ids };
}

function metadataOf(value: unknown, where: string): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalid(`${where} must be an object of strings, got ${show(value)}`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") throw invalid(`${where}.${k} must be a string, got ${show(v)}`);
    out[k] = v;
  }
  return out;
}

function checkMetadataSize(metadata: Record<string, string>, where: string): void {
  const entries = Object.entries(metadata);
  const bytes = entries.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
  if (entries.length > MAX_METADATA_ENTRIES || bytes > MAX_METADATA_BYTES) {
    throw invalid(`${where}: metadata is limited to ${MAX_METADATA_ENTRIES} entries and ${MAX_METADATA_BYTES} bytes, got ${entries.length} entries and ${bytes} bytes`);
  }
}

/** `protocol`: "http" for plain HTTP; "jsonrpc" (or "json-rpc", micro's way and the default) for JSON-RPC on `/`. */
function protocolOf(metadata: Record<string, string>, where: string): Protocol {
  const p = metadata[PROTOCOL_KEY];
  if (p === undefined || p === "jsonrpc" || p === "json-rpc") return "jsonrpc";
  if (p === "http") return "http";
  throw invalid(`${where}.metadata.${PROTOCOL_KEY} must be "jsonrpc" or "http", got ${show(p)}`);
}

/** Loopback names and addresses: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  if (host === "localhost" || host === "::1") return true;
  return net.isIPv4(host) && host.startsWith("127.");
}

/**
 * The app's host and port. micro sent `"address": "127.0.0.1", "port": 4000`; later go-micro put
 * both in `address` ("127.0.0.1:4000"). The sidecar will forward peers' calls there, so only
 * loopback and app.host are accepted: an app cannot turn its sidecar into a proxy to other hosts.
 */
function addressOf(address: unknown, port: unknown, where: string, rules: SpecRules): { host: string; port: number } {
  if (typeof address !== "string" || address === "") throw invalid(`${where}.address must be a host, got ${show(address)}`);
  let host = address;
  let p = port;
  if (p === undefined || p === 0) {
    const m = /^(.*):(\d+)$/.exec(address);
    if (m && !net.isIPv6(address)) {
      host = m[1]!.replace(/^\[(.*)\]$/, "$1");
      p = Number(m[2]);
    }
  }
  host = host.replace(/^\[(.*)\]$/, "$1");
  if (typeof p !== "number" || !Number.isInteger(p) || p < 1 || p > 65535) throw invalid(`${where}.port must be an integer from 1 to 65535, got ${show(port)}`);
  const loopback = isLoopback(host);
  if (!loopback && !rules.hosts.includes(host)) {
    throw invalid(`${where}.address ${show(address)} is not allowed: a sidecar fronts apps on loopback (127.0.0.1, ::1, localhost) or app.host only`);
  }
  // "localhost" may resolve to ::1 first; the apps micro's examples start listen on 127.0.0.1.
  if (host === "localhost") host = "127.0.0.1";
  if ((loopback || rules.hosts.includes(host)) && rules.ownPorts().includes(p)) {
    throw invalid(`${where}.port ${p} is one of this sidecar's own listeners: calls would loop into it`);
  }
  return { host, port: p };
}

/** micro's `?ttl=` (Go's time.ParseDuration: "30s", "1m30s", "500ms", "1h"), in milliseconds. */
export function parseTtl(value: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let i = 0;
  if (value === "") throw invalid("query parameter 'ttl' is empty");
  while (i < value.length) {
    re.lastIndex = i;
    const m = re.exec(value);
    if (!m) throw invalid(`query parameter 'ttl' must be a Go duration such as 30s, 1m30s or 500ms, got ${show(value)}`);
    total += Number(m[1]) * units[m[2]!]!;
    i = re.lastIndex;
  }
  if (total <= 0 || total > MAX_TTL_MS) throw invalid(`query parameter 'ttl' must be more than 0 and at most 24h, got ${show(value)}`);
  return Math.max(1, Math.round(total));
}
