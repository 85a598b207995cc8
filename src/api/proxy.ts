import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { SidecarError, toSidecarError } from "../errors.js";
import { endToEnd, INTERNAL, requestIdOf } from "../http/headers.js";
import { readBody } from "../http/body.js";
import { sendError } from "../http/reply.js";
import type { Logger } from "../log.js";
import { isValidName, show } from "../names.js";
import { StreamBody } from "../transport/types.js";
import type { Call, Caller } from "../outbound/caller.js";
import { checkTimeoutHeader, keyOf } from "./rpc.js";

export interface ProxyOptions {
  caller: Caller;
  defaultTimeout: number;
  /** Drop the app's Authorization header (it carries api.token, meant for this sidecar). */
  dropAuthorization: boolean;
  log: Logger;
}

/** Our own control headers: they steer this sidecar and do not travel on. */
const DROP = new Set<string>(["host", ...INTERNAL]);
const DROP_WITH_AUTH = new Set<string>([...DROP, "authorization"]);
const CLEAN_PATH = /^[\x21-\x7e]*$/;

/** X-Forwarded-* for the callee app (appending to what an earlier proxy set). */
function forwarded(req: IncomingMessage, headers: OutgoingHttpHeaders): void {
  const client = req.socket.remoteAddress ?? "";
  const prior = req.headers["x-forwarded-for"];
  headers["x-forwarded-for"] = prior ? `${String(prior)}, ${client}` : client;
  headers["x-forwarded-proto"] ??= "http";
  if (req.headers.host) headers["x-forwarded-host"] ??= req.headers.host;
}

/**
 * A request body this small, of declared length (or none at all), is read before the call is
 * sent: it then goes over the mesh protocol (which carries whole bodies), and can be sent to
 * another node when the first never got it. Anything else streams, as the proxy always does.
 */
export const SMALL_BODY = 64 * 1024;

/** The request's body if it is small and of known length (an empty buffer when it has none); undefined: it streams. */
async function smallBody(req: IncomingMessage): Promise<Buffer | undefined> {
  if (req.headers["transfer-encoding"] !== undefined) return undefined;
  const length = req.headers["content-length"];
  if (length === undefined) return EMPTY;
  const n = Number(length);
  return Number.isInteger(n) && n >= 0 && n <= SMALL_BODY ? readBody(req, SMALL_BODY) : undefined;
}
const EMPTY = Buffer.alloc(0);

/** The call that proxies `req` to `path` on `service`'s app (also micro's path form with handler proxy); 400 for an unclean path. */
export async function proxyCall(o: ProxyOptions, req: IncomingMessage, service: string, path: string, requestId: string): Promise<Call> {
  if (!CLEAN_PATH.test(path) || path.split("?")[0]!.split("/").some((seg) => seg === ".." || seg === ".")) {
    throw new SidecarError("INVALID_REQUEST", `path ${show(path)} is not a clean path (printable characters, no '.' or '..' segments)`);
  }
  const headers = endToEnd(req.headers, o.dropAuthorization ? DROP_WITH_AUTH : DROP);
  forwarded(req, headers);
  const small = await smallBody(req);
  return {
    service,
    method: req.method ?? "GET",
    path,
    headers,
    body: small ?? new StreamBody(req),
    timeout: checkTimeoutHeader(req) ?? o.defaultTimeout,
    retries: 0,
    key: keyOf(req, o.caller, service),
    label: "*",
    requestId,
  };
}

/**
 * `ANY /proxy/{service}/{path...}`: any method, query string, headers and body,
 * streamed both ways through the same selector and ejection rules as /rpc, with no size limit
 * of its own. Only failures before the first byte was sent are retried: a stream cannot be replayed.
 */
export function proxyHandler(o: ProxyOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const handle = async (req: IncomingMessage, res: ServerResponse, requestId: string, at: { caller: boolean }): Promise<void> => {
    const url = req.url ?? "/proxy";
    const rest = url.slice("/proxy/".length);
    const q = rest.indexOf("?");
    const pathPart = q === -1 ? rest : rest.slice(0, q);
    const slash = pathPart.indexOf("/");
    const service = slash === -1 ? pathPart : pathPart.slice(0, slash);
    if (!isValidName(service)) {
      throw new SidecarError(service === "" ? "INVALID_REQUEST" : "INVALID_NAME", service === "" ? "expected /proxy/{service}/{path}" : `service name ${show(service)} must match [A-Za-z0-9][A-Za-z0-9._-]{0,62}`);
    }
    const call = await proxyCall(o, req, service, (slash === -1 ? "/" : pathPart.slice(slash)) + (q === -1 ? "" : rest.slice(q)), requestId);
    at.caller = true;
    await o.caller.call(call, res);
  };

  return (req, res) => {
    const requestId = requestIdOf(req);
    req.on("error", () => undefined);
    const at = { caller: false };
    handle(req, res, requestId, at).catch((err: unknown) => {
      req.resume();
      // Refused before it became a call (the caller counts every call it sees).
      if (!at.caller) o.caller.refused(toSidecarError(err).status);
      sendError(res, err, requestId, o.log);
    });
  };
}
