import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { SidecarError, toSidecarError } from "../errors.js";
import { readBody } from "../http/body.js";
import { MAX_TIMEOUT_MS } from "../http/deadline.js";
import { H, requestIdOf } from "../http/headers.js";
import { requestSpan } from "./envelope.js";
import { replyError, type MicroErrors } from "../micro/errors.js";
import { foldedFields, formEnvelope, isForm, jsonStringRequest } from "../micro/rpc-forms.js";
import type { Logger } from "../log.js";
import { isValidName, show } from "../names.js";
import { notANode, type Call, type Caller } from "../outbound/caller.js";

const DOTTED = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const PATH = /^\/[\x21-\x7e]*$/;

export interface RpcOptions {
  caller: Caller;
  maxBody: number;
  defaultTimeout: number;
  /** `micro.errors`: when errors answer in micro's shape. */
  microErrors: MicroErrors;
  log: Logger;
}

/** "Greeter.Hello" → "/Greeter/Hello"; "/v1/hello?x=1" stays as is. */
export function endpointToPath(endpoint: string): string {
  if (endpoint.startsWith("/")) {
    const pathOnly = endpoint.split("?")[0]!;
    if (!PATH.test(endpoint) || endpoint.includes("#") || pathOnly.split("/").some((seg) => seg === ".." || seg === ".")) {
      throw new SidecarError("INVALID_REQUEST", `endpoint ${show(endpoint)} is not a clean path (printable characters, no '.' or '..' segments)`);
    }
    return endpoint;
  }
  if (!DOTTED.test(endpoint)) {
    throw new SidecarError("INVALID_REQUEST", `endpoint ${show(endpoint)} is neither 'Service.Method' nor a path starting with '/'`);
  }
  return "/" + endpoint.replaceAll(".", "/");
}

function checkService(service: unknown): string {
  if (typeof service !== "string") {
    throw new SidecarError("INVALID_REQUEST", service === undefined ? "field 'service' is required" : `field 'service' must be a string, got ${show(service)}`);
  }
  if (!isValidName(service)) throw new SidecarError("INVALID_NAME", `service name ${show(service)} must match [A-Za-z0-9][A-Za-z0-9._-]{0,62}`);
  return service;
}

/** The call's deadline from the `x-sidecar-timeout` header, if given (400 when malformed). */
export function checkTimeoutHeader(req: IncomingMessage): number | undefined {
  const h = req.headers[H.timeout];
  if (h === undefined) return undefined;
  return checkTimeout(Number(h), `header ${H.timeout}`, h);
}

function checkTimeout(ms: number, where: string, raw: unknown): number {
  if (!Number.isFinite(ms) || ms <= 0 || ms > MAX_TIMEOUT_MS) {
    throw new SidecarError("INVALID_REQUEST", `${where} must be a number of milliseconds between 1 and ${MAX_TIMEOUT_MS}, got ${show(raw)}`);
  }
  return Math.round(ms);
}

/**
 * A number, or a string of one; NaN for anything else. Number() of an array or object would call
 * its toString(), which recurses as deep as a hostile caller nests it.
 */
function numberOf(value: unknown): number {
  return typeof value === "number" ? value : typeof value === "string" && value.trim() !== "" ? Number(value) : NaN;
}

/** Most retries one call may ask for; the retry budget caps them further. */
const MAX_RETRIES = 10;

function checkRetries(value: unknown, where: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_RETRIES) {
    throw new SidecarError("INVALID_REQUEST", `${where} must be an integer between 0 and ${MAX_RETRIES}, got ${show(value)}`);
  }
  return value;
}

function headerRetries(req: IncomingMessage): number {
  const h = req.headers[H.retries];
  if (h === undefined) return 0;
  return checkRetries(/^\d+$/.test(String(h)) ? Number(h) : h, `header ${H.retries}`);
}

/** The `hash` strategy's key: the value of the service's key header, if the call has one. */
export function keyOf(req: IncomingMessage, caller: Caller, service: string): string | undefined {
  const v = req.headers[caller.keyHeader(service)];
  return typeof v === "string" ? v : undefined;
}

const EMPTY_OBJECT = Buffer.from("{}");

/** The request member as JSON again, when its bytes could not be located (refused, 400, when too deep to re-encode). */
function reencode(request: unknown): Buffer {
  try {
    return Buffer.from(JSON.stringify(request));
  } catch (err) {
    throw new SidecarError("INVALID_REQUEST", `field 'request' could not be re-encoded as JSON (${(err as Error).message}): it is nested too deeply`, { cause: err });
  }
}

/** Headers of the app's request that travel on to the callee app. */
function passHeaders(req: IncomingMessage, contentType: string | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  if (contentType) out["content-type"] = contentType;
  for (const name of ["accept", "traceparent", "tracestate"]) {
    const v = req.headers[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** An envelope's endpoint (or its alias method), checked (400 when missing or not a string). */
function checkEndpoint(endpoint: unknown): string {
  if (typeof endpoint !== "string" || endpoint === "") {
    throw new SidecarError("INVALID_REQUEST", endpoint === undefined ? "field 'endpoint' (or its alias 'method') is required" : `field 'endpoint' must be a non-empty string, got ${show(endpoint)}`);
  }
  return endpoint;
}

/** micro's `address`: only a live node of the service (400 otherwise: no calls to arbitrary hosts). */
async function checkAddress(caller: Caller, service: string, address: unknown, timeout: number): Promise<string> {
  if (typeof address !== "string" || address === "") throw new SidecarError("INVALID_REQUEST", `field 'address' must be a node's host:port, got ${show(address)}`);
  if (!(await caller.hasNode(service, address, timeout))) throw notANode(service, address);
  return address;
}

/** A call whose body is the app's own (the raw /rpc form, micro's path form): sent with its content type. */
export function rawCall(o: { caller: Caller; defaultTimeout: number }, req: IncomingMessage, c: { service: string; path: string; label: string; body: Buffer; contentType: string | undefined; requestId: string; rpc: string | undefined }): Call {
  const { service } = c;
  return { service, method: "POST", path: c.path, headers: passHeaders(req, c.contentType), body: c.body, timeout: checkTimeoutHeader(req) ?? o.defaultTimeout, retries: headerRetries(req), key: keyOf(req, o.caller, service), label: c.label, requestId: c.requestId, node: undefined, rpc: c.rpc };
}

/**
 * `POST /rpc` (JSON envelope: service, endpoint or its micro alias method, request, timeout)
 * and `POST /rpc/{service}/{endpoint...}` (raw body). Served by plain node:http: this is the hot path.
 */
export function rpcHandler(o: RpcOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const handle = async (req: IncomingMessage, res: ServerResponse, requestId: string, at: { caller: boolean; micro: boolean }): Promise<void> => {
    if (req.method !== "POST") {
      throw new SidecarError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on /rpc; use POST`, { headers: { allow: "POST" } });
    }
    const url = req.url ?? "/rpc";
    const q = url.indexOf("?");
    const pathname = q === -1 ? url : url.slice(0, q);
    const body = await readBody(req, o.maxBody);

    if (pathname === "/rpc" || pathname === "/rpc/") {
      // micro's form-encoded envelope; the JSON one (ours) needs no content type.
      if (isForm(req.headers["content-type"])) {
        at.micro = true;
        const f = formEnvelope(body);
        const service = checkService(f.service);
        const endpoint = checkEndpoint(f.method);
        const path = endpointToPath(endpoint);
        const payload = typeof f.request === "string" ? jsonStringRequest(f.request, "field 'request'") : EMPTY_OBJECT;
        const timeout = checkTimeoutHeader(req) ?? o.defaultTimeout;
        const node = f.address === undefined ? undefined : await checkAddress(o.caller, service, f.address, timeout);
        const call: Call = { service, method: "POST", path, headers: passHeaders(req, "application/json"), body: payload, timeout, retries: headerRetries(req), key: keyOf(req, o.caller, service), label: endpoint, requestId, node, rpc: endpoint.startsWith("/") ? undefined : endpoint };
        at.caller = true;
        await o.caller.call(call, res);
        return;
      }
      let envelope: unknown;
      try {
        envelope = JSON.parse(body.toString("utf8"));
      } catch (err) {
        throw new SidecarError("BAD_JSON", `the request body is not valid JSON: ${(err as Error).message}`);
      }
      if (typeof envelope !== "object" || envelope === null || Array.isArray(envelope)) {
        throw new SidecarError("INVALID_REQUEST", `the request body must be a JSON object with 'service' and 'endpoint', got ${show(envelope)}`);
      }
      const e = envelope as Record<string, unknown>;
      let serviceField = e.service;
      let endpointField = e.endpoint ?? e.method;
      let request = e.request;
      let address = e.address;
      let requestKey: string | undefined;
      // A missing lowercase field: perhaps micro's spelling in another case (Service, Method).
      if (serviceField === undefined || endpointField === undefined || request === undefined) {
        const f = foldedFields(e);
        if (f) {
          at.micro = true;
          serviceField ??= f.service;
          endpointField ??= f.method;
          address ??= f.address;
          if (request === undefined && f.requestKey !== undefined) {
            request = f.request;
            requestKey = f.requestKey;
          }
        }
      }
      // micro's other shapes: a JSON-encoded string request, a node picked by address.
      if (typeof request === "string" || address !== undefined) at.micro = true;
      const service = checkService(serviceField);
      const endpoint = checkEndpoint(endpointField);
      const path = endpointToPath(endpoint);
      const timeout = e.timeout === undefined ? checkTimeoutHeader(req) : checkTimeout(numberOf(e.timeout), "field 'timeout'", e.timeout);
      const retries = e.retries === undefined ? headerRetries(req) : checkRetries(e.retries, "field 'retries'");
      let payload: Buffer;
      if (typeof request === "string") {
        // micro decoded a string request as JSON-encoded text.
        payload = jsonStringRequest(request, "field 'request'");
      } else {
        // The request's own bytes, as the app wrote them (the envelope already parsed as JSON).
        const span = request === undefined ? undefined : requestSpan(body, requestKey);
        payload = span ? body.subarray(span.start, span.end) : request === undefined ? EMPTY_OBJECT : reencode(request);
      }
      const node = address === undefined ? undefined : await checkAddress(o.caller, service, address, timeout ?? o.defaultTimeout);
      const call: Call = { service, method: "POST", path, headers: passHeaders(req, "application/json"), body: payload, timeout: timeout ?? o.defaultTimeout, retries, key: keyOf(req, o.caller, service), label: endpoint, requestId, node, rpc: endpoint.startsWith("/") ? undefined : endpoint };
      at.caller = true;
      await o.caller.call(call, res);
      return;
    }

    // Raw form: /rpc/{service}/{endpoint...}
    const rest = pathname.slice("/rpc/".length);
    const slash = rest.indexOf("/");
    const service = checkService(slash === -1 ? rest : rest.slice(0, slash));
    const endpoint = slash === -1 ? "" : rest.slice(slash + 1);
    if (endpoint === "") throw new SidecarError("INVALID_REQUEST", `no endpoint in ${show(pathname)}: expected /rpc/{service}/{endpoint}`);
    const path = (endpoint.includes("/") ? endpointToPath("/" + endpoint) : endpointToPath(endpoint)) + (q === -1 ? "" : url.slice(q));
    const call = rawCall(o, req, { service, path, label: endpoint.includes("/") ? "/" + endpoint.split("/")[0] : endpoint, body, contentType: req.headers["content-type"], requestId, rpc: endpoint.includes("/") ? undefined : endpoint });
    at.caller = true;
    await o.caller.call(call, res);
  };

  return (req, res) => {
    const requestId = requestIdOf(req);
    const at = { caller: false, micro: false };
    handle(req, res, requestId, at).catch((err: unknown) => {
      // Refused before it became a call (the caller counts every call it sees).
      if (!at.caller) o.caller.refused(toSidecarError(err).status);
      replyError(res, err, requestId, o.log, { mode: o.microErrors, microStyle: at.micro, id: at.caller ? "go.micro.client" : "go.micro.rpc" });
    });
  };
}
