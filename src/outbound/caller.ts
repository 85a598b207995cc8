import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import { ERRORS, SidecarError, type ErrorCode } from "../errors.js";
import { show } from "../names.js";
import { Deadline } from "../http/deadline.js";
import { H, publicHeaders } from "../http/headers.js";
import { endBody, pipeBody } from "../http/pipe.js";
import { nextTraceparent } from "../http/trace.js";
import type { NodeRecord } from "../registry/types.js";
import type { RegistryView } from "../registry/view.js";
import { listed, lookup } from "../registry/lookup.js";
import type { Outcome, Selector, ServiceBalancer } from "../selector/index.js";
import { discard, replayable, TransportError, type StreamBody, type Transport, type UpstreamResponse } from "../transport/types.js";
import { OTHER, type CallObserver } from "../metrics.js";
import { backoffDelay } from "./backoff.js";

export interface Call {
  service: string;
  method: string;
  /** Path (and query) on the callee app. */
  path: string;
  headers: OutgoingHttpHeaders;
  /** A buffer, or the caller's request stream (proxy route: sent once, never buffered). */
  body: Buffer | StreamBody;
  /** Milliseconds the whole call may take, retries included. */
  timeout: number;
  /** Retries of a request that reached the callee, on 502/503/504 or a broken connection (opt-in: idempotent calls). */
  retries: number;
  /** Key for the `hash` strategy. */
  key?: string | undefined;
  /** The endpoint as metrics label it ("Greeter.Hello"; "*" for the proxy, whose paths are unbounded). */
  label: string;
  requestId: string;
  /** The address of the one node to call (micro's `address`): no other node is tried. */
  node?: string | undefined;
  /** An RPC-style call's method ("Say.Hello"): a callee app speaking JSON-RPC gets it as `method`. Absent for /proxy. */
  rpc?: string | undefined;
}

/** Statuses worth another try when the call opted in. */
const RETRYABLE = new Set([502, 503, 504]);
/** Refusals that say something is wrong with the node itself (not merely that it is leaving). */
const NODE_FAULTS = new Set<string>(["MISDIRECTED", "APP_UNREACHABLE"]);

interface Sent {
  upstream: UpstreamResponse;
  node: NodeRecord;
  nodes: readonly NodeRecord[];
}

/**
 * Resolves a service through the cached registry view, picks nodes with the service's balancer,
 * and sends the call over the transport. A call the callee never saw is always tried on another
 * node; a call that reached it is retried only when it opted in, within the retry budget. Streams
 * the chosen response back unchanged (status, content type, body).
 */
export class Caller {
  constructor(
    private readonly view: RegistryView,
    private readonly selector: Selector,
    /** Transports by kind; each node's record names the one it listens on. */
    private readonly transports: ReadonlyMap<string, Transport>,
    private readonly self: string,
    private readonly observer?: CallObserver,
  ) {}

  #inFlight = 0;

  /** Calls in flight through this caller. */
  get inFlight(): number {
    return this.#inFlight;
  }

  #transport(node: NodeRecord): Transport {
    const t = this.transports.get(node.transport);
    if (!t) throw new TransportError(`${node.id} listens on the '${node.transport}' transport, which this sidecar does not have (known: ${[...this.transports.keys()].join(", ")})`, { delivered: false, code: "NO_TRANSPORT" });
    return t;
  }

  /** The header whose value keys the `hash` strategy for this service. */
  keyHeader(service: string): string {
    return this.selector.hashHeader(service);
  }

  /** Is `address` the address of a live node of `service`? (A pinned call goes nowhere else.) Watches the service from now on. */
  async hasNode(service: string, address: string, timeout: number): Promise<boolean> {
    await lookup(this.view, service, timeout);
    return this.view.nodes(service).some((n) => n.address === address);
  }

  /** A request refused before it became a call (bad JSON, an invalid name or field): counted, under no service. */
  refused(status: number): void {
    this.observer?.refused(status);
  }

  async call(call: Call, res: ServerResponse): Promise<void> {
    const deadline = new Deadline(call.timeout);
    const onClose = () => {
      if (!res.writableFinished) deadline.cancel();
    };
    res.once("close", onClose);
    let known = false;
    let balancer: ServiceBalancer | undefined;
    let sent: Sent | undefined;
    let outcome: Outcome = "neutral";
    let answered = 0;
    const t0 = performance.now();
    this.#inFlight += 1;
    try {
      // The first call to a service this sidecar does not watch yet waits for its listing.
      const listing = this.view.want(call.service);
      if (listing) await listed(listing, call.service, deadline, "; the call was not sent");
      // A name the registry does not know gets no state here (balancer, metric series): callers
      // can send any name, and each would stay for good (issue 12, item 6).
      known = this.view.known(call.service);
      balancer = known ? this.selector.service(call.service) : undefined;
      if (!balancer) throw new SidecarError("SERVICE_NOT_FOUND", `no service named '${call.service}' in the registry`);
      sent = await this.#send(call, balancer, deadline);
      const { upstream } = sent;
      const status = upstream.statusCode ?? 502;
      outcome = status >= 500 ? "failure" : "success";
      answered = status;
      const headers = publicHeaders(upstream.headers);
      headers[H.requestId] = call.requestId;
      res.writeHead(status, headers);
      await (upstream.whole === undefined ? pipeBody(upstream, res) : endBody(upstream.whole, res));
    } catch (err) {
      if (sent && deadline.expired) outcome = "failure";
      // Our caller went away: nobody is left to answer, and that is not the callee's failure.
      if (deadline.cancelled && !deadline.expired) {
        answered = 499;
        return;
      }
      const e = deadline.expired && !(err instanceof SidecarError) ? timeout(call, err) : err;
      answered = e instanceof SidecarError ? e.status : 500;
      throw e;
    } finally {
      this.#inFlight -= 1;
      this.observer?.call(known ? call.service : OTHER, call.label, answered, (performance.now() - t0) / 1000);
      if (sent) balancer?.end(sent.node.id, outcome, sent.nodes);
      deadline.done();
      res.off("close", onClose);
    }
  }

  async #send(call: Call, balancer: ServiceBalancer, deadline: Deadline): Promise<Sent> {
    balancer.budget.recordCall();
    const tried = new Set<string>();
    const failures: string[] = [];
    let refusal: ErrorCode | undefined;
    let retriesLeft = call.retries;
    let retried = 0;
    for (;;) {
      const nodes = this.view.nodes(call.service);
      // A pinned call picks among its one node; the balancer still sees the whole service (ejection limits).
      const candidates = call.node === undefined ? nodes : nodes.filter((n) => n.address === call.node);
      if (candidates.length === 0 && tried.size === 0) {
        if (call.node !== undefined) throw notANode(call.service, call.node);
        if (this.view.known(call.service)) {
          throw new SidecarError("NO_HEALTHY_NODE", `service '${call.service}' has no healthy node right now`);
        }
        throw new SidecarError("SERVICE_NOT_FOUND", `no service named '${call.service}' in the registry`);
      }
      // Opt-in retries of a sent request may go back to a node already tried when no other is left.
      const node = balancer.pick(candidates, tried, call.key) ?? (retried > 0 ? balancer.pick(candidates, new Set(), call.key) : undefined);
      if (!node || deadline.cancelled || deadline.remaining() <= 0) break;
      tried.add(node.id);
      balancer.start(node.id);
      let upstream: UpstreamResponse;
      try {
        const headers: OutgoingHttpHeaders = {
          ...call.headers,
          // The api listener made this hop's span the parent (tagRequest); a call built elsewhere starts a trace.
          traceparent: call.headers.traceparent ?? nextTraceparent(undefined),
          [H.service]: call.service,
          [H.caller]: this.self,
          [H.timeout]: String(deadline.remaining()),
          [H.requestId]: call.requestId,
        };
        // Only what the callee's record says it needs: which of the nodes its sidecar serves, and that an RPC-style call is one.
        if (node.fronted) headers[H.node] = node.id;
        if (node.protocol === "jsonrpc" && call.rpc !== undefined) headers[H.rpc] = call.rpc;
        upstream = await this.#transport(node).send(node, { method: call.method, path: call.path, headers, body: call.body, deadline });
      } catch (err) {
        const why = deadline.expired ? "no answer before the call's deadline" : describeFailure(err as Error);
        balancer.end(node.id, deadline.cancelled && !deadline.expired ? "neutral" : "failure", nodes, why);
        if (deadline.cancelled) throw timeout(call, err);
        if (err instanceof SidecarError) throw err;
        const reason = `${node.id}: ${why}`;
        if (err instanceof TransportError && !err.delivered && replayable(call.body)) {
          failures.push(reason);
          this.observer?.retry(call.service, "failover");
          continue;
        }
        if (retriesLeft > 0 && replayable(call.body) && balancer.budget.tryRetry()) {
          failures.push(reason);
          this.observer?.retry(call.service, "opt_in");
          retriesLeft -= 1;
          await pause(backoffDelay(retried++), deadline);
          continue;
        }
        throw new SidecarError("UPSTREAM_UNREACHABLE", `call to '${call.service}' failed at node ${node.id}: ${(err as Error).message}`, { cause: err });
      }
      const refused = upstream.headers[H.refused];
      if (typeof refused === "string" && replayable(call.body)) {
        // The callee sidecar did not hand the call to its app (unhealthy, draining, stale record).
        discard(upstream);
        balancer.end(node.id, NODE_FAULTS.has(refused) ? "failure" : "neutral", nodes, `refused: ${refused}`);
        refusal = refused in ERRORS ? (refused as ErrorCode) : "UPSTREAM_UNREACHABLE";
        failures.push(`${node.id}: ${refused}`);
        this.observer?.retry(call.service, "failover");
        continue;
      }
      const status = upstream.statusCode ?? 502;
      if (RETRYABLE.has(status) && retriesLeft > 0 && replayable(call.body) && deadline.remaining() > 0 && balancer.budget.tryRetry()) {
        discard(upstream);
        balancer.end(node.id, "failure", nodes, `answered ${status}`);
        failures.push(`${node.id}: ${status}`);
        this.observer?.retry(call.service, "opt_in");
        retriesLeft -= 1;
        await pause(backoffDelay(retried++), deadline);
        continue;
      }
      return { upstream, node, nodes };
    }
    if (deadline.cancelled || deadline.remaining() <= 0) throw timeout(call);
    const tail = failures.length > 0 ? ` (${failures.join("; ")})` : "";
    if (refusal === "APP_UNAVAILABLE" || refusal === "SHUTTING_DOWN") {
      throw new SidecarError("NO_HEALTHY_NODE", `no node of '${call.service}' is taking calls right now${tail}`);
    }
    if (refusal === "OVERLOADED") {
      throw new SidecarError("OVERLOADED", `every node of '${call.service}' is at its concurrency limit${tail}`);
    }
    if (refusal === "APP_UNREACHABLE") throw new SidecarError("APP_UNREACHABLE", `no node of '${call.service}' could reach its app${tail}`);
    throw new SidecarError("UPSTREAM_UNREACHABLE", `no node of '${call.service}' could be reached${tail}`);
  }
}

/** ECONNREFUSED says enough; a TLS failure (SELF_SIGNED_CERT_IN_CHAIN, ERR_SSL_...) needs its message too. */
function describeFailure(err: Error): string {
  const code = (err as TransportError).code;
  if (code === undefined) return err.message;
  if (/^E[A-Z0-9]+$/.test(code)) return code;
  const cause = (err.cause as Error | undefined)?.message ?? err.message;
  return `${code}: ${cause}`;
}

/** Wait `ms`, or less if the call is cancelled meanwhile. */
function pause(ms: number, deadline: Deadline): Promise<void> {
  const wait = Math.min(ms, Math.max(0, deadline.remaining()));
  return new Promise((resolve) => {
    const timer = setTimeout(done, wait);
    const off = deadline.onCancel(done);
    function done() {
      clearTimeout(timer);
      off();
      resolve();
    }
  });
}

/** micro's `address` names a host to call: we only call nodes the registry lists for that service. */
export function notANode(service: string, address: string): SidecarError {
  return new SidecarError("INVALID_REQUEST", `address ${show(address)} is not a registered node of '${service}': 'address' may only pick one of the service's nodes (GET /registry/${service})`);
}

function timeout(call: Call, cause?: unknown): SidecarError {
  return new SidecarError("TIMEOUT", `call to '${call.service}' did not complete within ${call.timeout}ms`, { cause });
}

