import type { IncomingMessage, ServerResponse } from "node:http";
import { SidecarError, toSidecarError } from "../errors.js";
import { readBody } from "../http/body.js";
import { requestIdOf } from "../http/headers.js";
import type { Logger } from "../log.js";
import { isValidName, show } from "../names.js";
import type { Call, Caller } from "../outbound/caller.js";
import { proxyCall } from "../api/proxy.js";
import { endpointToPath, rawCall } from "../api/rpc.js";
import { replyError, type MicroErrors } from "./errors.js";
import { proxyRoute, rpcRoute } from "./path.js";

export interface MicroPathOptions {
  caller: Caller;
  /** `micro.namespace`: the prefix of the service a path names. */
  namespace: string;
  /** `micro.handler`: call Service.Method (`rpc`) or proxy the HTTP request (`proxy`). */
  handler: "rpc" | "proxy";
  /** `micro.errors`; the path form is micro's, so `auto` answers micro's shape. */
  errors: MicroErrors;
  maxBody: number;
  defaultTimeout: number;
  /** Drop the app's Authorization header on proxied requests (it carries api.token). */
  dropAuthorization: boolean;
  log: Logger;
}

function checkName(service: string, pathname: string): string {
  if (!isValidName(service)) throw new SidecarError("INVALID_NAME", `${show(pathname)} names the service ${show(service)}, which does not match [A-Za-z0-9][A-Za-z0-9._-]{0,62}`);
  return service;
}

/**
 * micro's path form at the root (the routes the sidecar does not own, src/micro/path.ts):
 * `POST /greeter/say/hello` calls `<namespace>.greeter` `Say.Hello` with the body as the
 * request; with `handler: proxy`, any method on `/greeter/...` is proxied as HTTP to the service.
 */
export function microPathHandler(o: MicroPathOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const rpc = async (req: IncomingMessage, pathname: string, query: string, requestId: string): Promise<Call> => {
    const route = rpcRoute(o.namespace, pathname);
    if (!route) throw new SidecarError("INVALID_REQUEST", `${show(pathname)} names no service and method: expected /{service}/{method}, without '.' or '..' segments`);
    const service = checkName(route.service, pathname);
    const path = endpointToPath(route.method) + query;
    const body = await readBody(req, o.maxBody);
    // micro's path form took a JSON body: JSON unless the app says otherwise.
    return rawCall(o, req, { service, path, label: route.method, body, contentType: req.headers["content-type"] ?? "application/json", requestId, rpc: route.method });
  };
  const proxy = (req: IncomingMessage, url: string, pathname: string, requestId: string): Promise<Call> => {
    const service = proxyRoute(o.namespace, pathname);
    if (service === undefined) throw new SidecarError("NOT_FOUND", `no route ${req.method} ${show(pathname)}: micro's proxy form needs /{service}/... with a service alias of letters, digits and '-'`);
    return proxyCall(o, req, checkName(service, pathname), url, requestId);
  };

  return (req, res) => {
    const requestId = requestIdOf(req);
    req.on("error", () => undefined);
    const at = { caller: false };
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const pathname = q === -1 ? url : url.slice(0, q);
    const handle = async () => {
      const call = o.handler === "proxy" ? await proxy(req, url, pathname, requestId) : await rpc(req, pathname, q === -1 ? "" : url.slice(q), requestId);
      at.caller = true;
      await o.caller.call(call, res);
    };
    handle().catch((err: unknown) => {
      req.resume();
      // Refused before it became a call (the caller counts every call it sees).
      if (!at.caller) o.caller.refused(toSidecarError(err).status);
      replyError(res, err, requestId, o.log, { mode: o.errors, microStyle: true, id: at.caller ? "go.micro.client" : "go.micro.api" });
    });
  };
}
