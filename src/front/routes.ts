import type { IncomingMessage, ServerResponse } from "node:http";
import { SidecarError } from "../errors.js";
import { readBody } from "../http/body.js";
import { requestIdOf } from "../http/headers.js";
import { sendError, sendJson } from "../http/reply.js";
import type { Logger } from "../log.js";
import { isValidName, show } from "../names.js";
import type { NodeRecord } from "../registry/types.js";
import type { RegistryView } from "../registry/view.js";
import { lookup } from "../registry/lookup.js";
import { parseAddress } from "../transport/http.js";
import type { FrontedApps } from "./fronted.js";
import { parseService, parseTtl, type SpecRules } from "./spec.js";

export interface RegistryRouteOptions {
  front: FrontedApps;
  view: RegistryView;
  /** How long a GET waits for the listing of a service this sidecar does not watch yet. */
  lookupTimeout: number;
  rules: SpecRules;
  maxBody: number;
  log: Logger;
}

/** micro's routes on /registry: POST and DELETE (register and remove nodes), GET with ?service= (micro's shape). The rest is ours (routes.ts). */
export function isMicroRegistryRoute(req: IncomingMessage): boolean {
  const url = req.url ?? "";
  const q = url.indexOf("?");
  const path = q === -1 ? url : url.slice(0, q);
  if (path !== "/registry" && path !== "/registry/") return false;
  if (req.method === "POST" || req.method === "DELETE") return true;
  return (req.method === "GET" || req.method === "HEAD") && q !== -1 && new URLSearchParams(url.slice(q + 1)).has("service");
}

/** A record in micro's registry.Node shape: the host and the port apart. */
function microNode(n: NodeRecord): { id: string; address: string; port: number; metadata: Record<string, string> } {
  const { host, port } = parseAddress(n.address);
  return { id: n.id, address: host, port, metadata: n.metadata };
}

/**
 * micro's registry handler: `POST /registry[?ttl=30s]` and `DELETE /registry` with a
 * registry.Service body, and `GET /registry?service=X` answering `[{"name", "version",
 * "metadata", "endpoints", "nodes": [{"id", "address", "port", "metadata"}]}]` (one entry per version).
 */
export function microRegistryHandler(o: RegistryRouteOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/registry", "http://sidecar");
    if (req.method === "GET" || req.method === "HEAD") {
      const service = url.searchParams.get("service")!;
      if (!isValidName(service)) throw new SidecarError("INVALID_NAME", `service name ${show(service)} must match [A-Za-z0-9][A-Za-z0-9._-]{0,62}`);
      await lookup(o.view, service, o.lookupTimeout);
      const nodes = o.view.nodes(service);
      // micro answered 404 for a service without nodes.
      if (nodes.length === 0) throw new SidecarError("SERVICE_NOT_FOUND", `no service named '${service}' in the registry`);
      const byVersion = new Map<string, NodeRecord[]>();
      for (const n of nodes) byVersion.set(n.version, [...(byVersion.get(n.version) ?? []), n]);
      const list = [...byVersion].map(([version, ns]) => ({ name: service, version, metadata: {}, endpoints: [], nodes: ns.map(microNode) }));
      return sendJson(res, 200, list, { "cache-control": "no-store" });
    }
    const body = await readBody(req, o.maxBody);
    if (req.method === "POST") {
      const ttl = url.searchParams.get("ttl");
      const { specs } = parseService(body, o.rules, true);
      // micro ignored a ttl Go could not parse (`?ttl=10`, no unit) and registered anyway: so do we, and say so.
      let ttlMs: number | undefined;
      let ignored: string | undefined;
      if (ttl !== null) {
        try {
          ttlMs = parseTtl(ttl);
        } catch (err) {
          ignored = (err as Error).message;
          o.log.warn("POST /registry: ?ttl= ignored (micro ignored a ttl it could not parse); the default applies", { ttl, error: ignored });
        }
      }
      const nodes = await o.front.add(specs, ttlMs);
      return sendJson(res, 200, { nodes, ...(ignored === undefined ? {} : { ignored: { ttl: ignored } }) });
    }
    const { service, ids } = parseService(body, o.rules, false);
    const removed = await o.front.remove(service, ids);
    sendJson(res, 200, { removed });
  };
  return (req, res) => {
    const requestId = requestIdOf(req);
    handle(req, res).catch((err: unknown) => {
      req.resume();
      sendError(res, err, requestId, o.log);
    });
  };
}
