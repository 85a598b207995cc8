import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Caller } from "./outbound/caller.js";
import { AppState } from "./lifecycle/app-state.js";
import { apiRouter, tokenGate } from "./api/router.js";
import { EventHub } from "./events/hub.js";
import { eventStream } from "./events/stream.js";
import type { LaggedEvent, StampedEvent } from "./events/types.js";
import { under } from "./http/paths.js";
import { sendError } from "./http/reply.js";
import { requestIdOf } from "./http/headers.js";
import { starting } from "./api/starting.js";
import { advertisedAddress } from "./http/address.js";
import { systemClock } from "./clock.js";
import { proxyHandler } from "./api/proxy.js";
import { RecentEvents } from "./api/recent.js";
import { rpcHandler } from "./api/rpc.js";
import { microPathHandler } from "./micro/handler.js";
import { managementHandler, type SidecarStatus } from "./api/routes.js";
import type { Config } from "./config/index.js";
import { publishHandler } from "./api/publish.js";
import { createBroker, type Broker } from "./broker/index.js";
import { Metrics } from "./metrics.js";
import { TrafficWindows } from "./traffic/window.js";
import { MicroBroker } from "./micro/broker.js";
import { Relay } from "./broker/relay.js";
import { askApp, resolveSpec, Subscriptions } from "./broker/subscriptions.js";
import { HealthChecker } from "./health/checker.js";
import { Secret } from "./http/auth.js";
import { Listener } from "./http/listener.js";
import { AppClient } from "./inbound/app-client.js";
import { InboundGate } from "./inbound/gate.js";
import { NatsInbound } from "./inbound/nats.js";
import { InboundHandler } from "./inbound/server.js";
import { MeshInbound } from "./inbound/mesh.js";
import { MESH_VERSION } from "./transport/mesh/frames.js";
import type { Logger } from "./log.js";
import { NatsClient } from "./nats/connect.js";
import { createRegistry, RegistryView, type NodeRecord, type Registry } from "./registry/index.js";
import { Registrar } from "./registry/registrar.js";
import { Selector } from "./selector/index.js";
import { MeshTls } from "./tls/mesh.js";
import { FrontedApps } from "./front/fronted.js";
import { ComponentStack, Lifecycle, type Component } from "./lifecycle/component.js";
import { isMicroRegistryRoute, microRegistryHandler } from "./front/routes.js";
import { createTransports, type Transport } from "./transport/index.js";

/** A promise and its settlers; its rejection counts as handled (nobody need ask for it). */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** How long a draining sidecar keeps refusing calls politely before closing its inbound listener. */
const DRAIN_GRACE_MS = 500;

/**
 * The composition root. start: connect backends → start listeners → check the app →
 * register once it passes. close: deregister first → refuse new inbound calls → drain in-flight
 * calls up to shutdownTimeout → close the rest, last started first (the component stack), ending
 * with the registry and NATS. Both idempotent; start() after close() rejects with CLOSED.
 */
export class Sidecar implements Component {
  readonly log: Logger;
  #nats: Promise<NatsClient> | undefined;
  #registry: Registry | undefined;
  #view: RegistryView | undefined;
  readonly #transports = new Map<string, Transport>();
  #natsInbound: NatsInbound | undefined;
  #meshInbound: MeshInbound | undefined;
  #broker: Broker | undefined;
  #relay: Relay | undefined;
  #subscriptions: Subscriptions | undefined;
  /** What the app's health steers (registration, NATS inbound, subscriptions), one transition at a time. */
  #appState: AppState | undefined;
  #selector: Selector | undefined;
  #gate: InboundGate | undefined;
  #appClient: AppClient | undefined;
  #inboundListener: Listener | undefined;
  #apiListener: Listener | undefined;
  /** micro's /broker (POST publishes; a WebSocket upgrade subscribes). */
  #microBroker: MicroBroker | undefined;
  /** Topics this node's /broker WebSockets subscribe to (announced in its record for the embedded broker). */
  #wsTopics: string[] = [];
  /** What happens to this sidecar: Sidecar.events(), GET /events, the status page. */
  readonly #events = new EventHub();
  readonly #eventStream: ReturnType<typeof eventStream>;
  /** What the api listener answers until start() has built the real routes: `starting`, and GET /events. */
  #api: (req: IncomingMessage, res: ServerResponse) => void;
  #checker: HealthChecker | undefined;
  #registrar: Registrar | undefined;
  #node: NodeRecord | undefined;
  #front: FrontedApps | undefined;
  #draining = false;
  /** Aborted by close(): a start still waiting (for NATS) gives up. */
  readonly #stop = new AbortController();
  #starting: Promise<void> | undefined;
  readonly #lifecycle = new Lifecycle("sidecar", {
    start: () => {
      this.#starting = this.#start();
      this.#starting.catch((err: unknown) => this.#apiBound.reject(err));
      return this.#starting;
    },
    close: (deadlineMs) => this.#close(deadlineMs),
  });
  /** Settled by start(): the api listener's address once bound, or start()'s error if it fails before. */
  readonly #apiBound = deferred<AddressInfo>();
  /** What close() closes after the drain, last pushed first. */
  readonly #components = new ComponentStack();

  readonly #recent = new RecentEvents();

  constructor(readonly config: Config, log: Logger) {
    this.log = log;
    this.#recent.attach(log);
    this.#eventStream = eventStream(this.#events, log.child({ component: "events" }));
    const gate = tokenGate(new Secret(config.api.token));
    this.#api = (req, res) => {
      if (!under("/events", req.url)) return starting(req, res, this.log, this.config.registry.kind);
      if (!gate.authorized(req)) return sendError(res, gate.refusal(), requestIdOf(req), this.log);
      this.#eventStream.handle(req, res);
    };
  }

  /**
   * What happens to this sidecar from now on (with `replay`, the last ones kept first), as
   * typed events: listening, backend status, app healthy/unhealthy, registered/deregistered,
   * nodes joined/left/ejected, subscription states, draining, stopped. The iterator ends after
   * `stopped`; a reader far behind gets a `lagged` event. `break` unsubscribes.
   */
  events(options: { replay?: boolean } = {}): AsyncIterableIterator<StampedEvent | LaggedEvent> {
    return this.#events.events(options);
  }

  /** The node record this sidecar registers (available after start). */
  get node(): NodeRecord {
    if (!this.#node) throw new Error("the sidecar is not started");
    return this.#node;
  }

  /** host:port of the api listener (available after start). */
  get apiAddress(): string {
    const a = this.#apiListener!.address;
    return `${a.address}:${a.port}`;
  }

  /**
   * The api listener's address, as soon as it is bound: early in start(), which goes on (the
   * registry may still be connecting) and may still fail. Rejects with start()'s error if start()
   * fails before; never settles if start() is never called.
   */
  apiListening(): Promise<AddressInfo> {
    return this.#apiBound.promise;
  }

  /** Services this sidecar holds balancing state for: only those the registry knows (tests check the bound). */
  get balancedServices(): number {
    return this.#selector?.size ?? 0;
  }

  get registered(): boolean {
    return this.#registrar?.registered ?? false;
  }

  /** The names of the components close() has closed (or the shutdown steps it has done), in order. */
  get closedComponents(): readonly string[] {
    return this.#components.closed;
  }

  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  async #start(): Promise<void> {
    const { config, log } = this;
    log.info("sidecar starting", { service: config.service.name, version: config.service.version, registry: config.registry.kind, transport: config.transport.kind });
    if (config.registry.kind === "local") {
      log.warn(
        "embedded mode: no NATS configured, using the local registry. It works on this machine only: " +
          "no discovery across hosts, no replication. Add a `nats` section (or registry.kind: nats) for more than one machine.",
        { dir: config.registry.dir },
      );
    }
    // NATS (what the nats registry, transport and broker use) is connected before anything that
    // needs it, so it is at the bottom of the stack: closed after all of them.
    if (config.registry.kind === "nats" || config.transport.kind === "nats" || config.broker.kind === "nats") {
      this.#components.push("nats", { close: async () => (this.#nats ? (await this.#nats.catch(() => undefined))?.close() : undefined) });
    }
    // The api listener answers at once: while the backbone is not there yet (NATS unreachable),
    // the app gets a clear 503 STARTING and orchestrators a live process, not a refused connection.
    const accessLog = config.log.requests ? log.child({ component: "access" }) : undefined;
    this.#apiListener = new Listener("api", (req, res) => this.#api(req, res), { accessLog, headersTimeout: config.api.headersTimeout, requestTimeout: config.api.requestTimeout });
    const api = await this.#apiListener.start(config.api.host, config.api.port);
    log.info("api listening", { api: `${api.address}:${api.port}` });
    this.#apiBound.resolve(api);
    this.#registry = await createRegistry({ config, log: log.child({ component: "registry" }), nats: () => this.#natsClient(), signal: this.#stop.signal });
    this.#components.push("registry", this.#registry);
    const emit = this.#events.emit;
    // Watch what we call (the services called, each from its first call).
    const registry = this.#registry;
    this.#view = new RegistryView(registry, { ttl: config.registry.ttl, idleWatch: config.registry.idleWatch, pinned: config.calls.services }, log.child({ component: "registry-view" }), emit);
    await this.#view.start();
    // Calls go out over the transport each callee's record names: http always, nats when connected to NATS.
    const nats = config.transport.kind === "nats" || config.registry.kind === "nats" ? await this.#natsClient() : undefined;
    const meshTls = config.mesh.tls ? new MeshTls(config.mesh.tls) : undefined;
    for (const [kind, t] of createTransports({ config, meshTls, nats })) this.#transports.set(kind, t);
    const mesh = new Secret(config.mesh.token);
    // The inbound listener speaks the mesh protocol too (and records say so) unless transport.mesh is off.
    const meshVersion = config.transport.kind === "http" && config.transport.mesh ? MESH_VERSION : undefined;
    // The status page's last minute: calls per service called, deliveries per subscription.
    const callTraffic = new TrafficWindows(systemClock);
    const deliveryTraffic = new TrafficWindows(systemClock);
    const metrics: Metrics = new Metrics({
      nodes: () => this.#view?.services().map((service) => ({ service, count: this.#view!.nodes(service).length })) ?? [],
      subscriptions: () => this.#subscriptions?.list() ?? [],
      natsConnected: () => (nats ? nats.status() === "connected" : undefined),
      appHealthy: () => this.#checker?.state === "passing",
      callsInFlight: (): number => caller.inFlight,
      notTaken: () => this.#broker?.notTaken?.(),
      meshConnections: () => ({ in: this.#meshInbound?.connections ?? 0, out: this.#transports.get("http")?.connections ?? 0 }),
      watchedServices: () => this.#view?.watched().length ?? 0,
    }, callTraffic);
    this.#selector = new Selector(config.selector, systemClock, log.child({ component: "selector" }), (service, node, forMs, failures) => {
      metrics.ejection(service);
      emit({ type: "node-ejected", service, node, forMs, failures });
    });
    const caller: Caller = new Caller(this.#view, this.#selector, this.#transports, config.service.name, metrics);
    const view = this.#view;
    const selector = this.#selector;
    view.onChange((service) => selector.prune(service, view.nodes(service)));
    view.onForget((service) => {
      selector.forget(service);
      metrics.forget(service);
    });

    const broker = (this.#broker = await createBroker({
      config,
      log: log.child({ component: "broker" }),
      // The local broker fans a message out to every subscribed node: from its first publish on, it watches the whole registry.
      subscribers: () => new RegistryView(registry, { ttl: config.registry.ttl, scope: "all" }, log.child({ component: "broker-view" })),
      nats: () => this.#natsClient(),
      meshTls,
      signal: this.#stop.signal,
    }));
    this.#components.push("broker", broker);
    this.#relay = new Relay({ app: config.app, service: config.service.name, appToken: config.app.token, log: log.child({ component: "relay" }), broker: () => broker, traffic: deliveryTraffic });
    this.#components.push("relay", this.#relay);
    this.#subscriptions = new Subscriptions(broker, this.#relay, log.child({ component: "subscriptions" }), emit);
    this.#subscriptions.add(config.subscriptions.map((c) => resolveSpec(c, { service: config.service.name, timeout: config.calls.timeout })));

    this.#checker = new HealthChecker({ host: config.app.host, port: config.app.port, token: config.app.token, ...config.app.health }, log.child({ component: "health" }));
    this.#gate = new InboundGate({ service: config.service.name, accepting: () => this.#checker?.state === "passing", maxConcurrency: config.app.maxConcurrency });
    const { interval, timeout, failureThreshold, successThreshold } = config.app.health;
    const front = (this.#front = new FrontedApps({ registry: this.#registry, ttl: config.registry.ttl, address: () => this.node.address, mesh: meshVersion, ownNode: () => this.#node?.id, health: { interval, timeout, failureThreshold, successThreshold }, maxConcurrency: config.app.maxConcurrency, log: log.child({ component: "front" }) }));
    this.#components.push("front", front);
    this.#appClient = new AppClient({ service: config.service.name, host: config.app.host, port: config.app.port, token: config.app.token });
    this.#components.push("app-client", this.#appClient);
    const inbound = new InboundHandler({
      service: config.service.name,
      app: this.#appClient,
      gate: this.#gate,
      protocol: config.app.protocol,
      fronted: front,
      defaultTimeout: config.calls.timeout,
      deliveries: broker.receive ? (topic, body, headers, caller) => broker.receive!(topic, body, headers, caller) : undefined,
      maxBody: config.api.maxBody,
      mesh,
      allow: config.inbound.allow,
      mutualTls: meshTls?.mutual ?? false,
      log: log.child({ component: "inbound" }),
    });
    const meshInbound = (this.#meshInbound = meshVersion ? new MeshInbound({ serve: (c, r) => inbound.serve(c, r), mutualTls: meshTls?.mutual ?? false, log: log.child({ component: "mesh-inbound" }), accessLog }) : undefined);
    this.#inboundListener = new Listener("inbound", inbound.handle, { tls: meshTls?.serverOptions, accessLog, mesh: meshInbound });
    const bound = await this.#inboundListener.start(config.inbound.host, config.inbound.port);

    const rpc = rpcHandler({ caller, maxBody: config.api.maxBody, defaultTimeout: config.calls.timeout, microErrors: config.micro.errors, log: log.child({ component: "rpc" }) });
    const status: SidecarStatus = {
      app: () => this.#checker?.state ?? "unknown",
      registered: () => this.registered,
      registry: () => this.#registry?.status() ?? "disconnected",
      broker: () => broker.status(),
      subscriptionsHealthy: () => this.#subscriptions?.healthy ?? true,
      draining: () => this.#draining,
    };
    const subscriptions = this.#subscriptions;
    const started = Date.now();
    const about = () => ({
      service: config.service.name,
      version: config.service.version,
      node: this.#node?.id,
      address: this.#node?.address,
      registry: config.registry.kind,
      broker: config.broker.kind,
      transport: config.transport.kind,
      uptimeSeconds: Math.round((Date.now() - started) / 1000),
      fronted: front.list(),
    });
    const mgmt = managementHandler(
      { view, list: () => this.#registry!.list(), lookupTimeout: config.calls.timeout, status, nodeState: (service, id) => selector.state(service, id), subscriptions: () => subscriptions.list(), metrics, about, recent: () => this.#recent.list(), events: (n) => this.#events.recent(n), traffic: () => ({ calls: callTraffic.snapshot(), deliveries: deliveryTraffic.snapshot() }) },
      log.child({ component: "api" }),
    );
    const publish = publishHandler({ broker, service: config.service.name, maxBody: config.api.maxBody, log: log.child({ component: "publish" }) });
    // With api.token, the app's Authorization header is for its sidecar: it does not travel on.
    const proxy = proxyHandler({ caller, defaultTimeout: config.calls.timeout, dropAuthorization: config.api.token !== undefined, log: log.child({ component: "proxy" }) });
    const microPath = microPathHandler({ caller, ...config.micro, maxBody: config.api.maxBody, defaultTimeout: config.calls.timeout, dropAuthorization: config.api.token !== undefined, log: log.child({ component: "micro" }) });
    const microRegistry = microRegistryHandler({ front, view, lookupTimeout: config.calls.timeout, maxBody: config.api.maxBody, log: log.child({ component: "front" }), rules: { hosts: [config.app.host], ownPorts: () => [bound.port, api.port] } });
    const apiToken = new Secret(config.api.token);
    const apiLog = log.child({ component: "api" });
    const microBroker = (this.#microBroker = new MicroBroker({
      broker, service: config.service.name, maxBody: config.api.maxBody, log: log.child({ component: "micro-broker" }),
      // The embedded broker sends a message to the nodes whose records list a matching topic.
      announce: broker.kind === "local" ? (topics) => {
        this.#wsTopics = topics;
        if (!this.#node) return;
        this.#node.subscriptions = [...new Set([...(this.#subscriptions?.topics ?? []), ...topics])];
        this.#registrar?.refresh();
      } : undefined,
    }));
    const router = apiRouter(
      {
        rpc, proxy, publish, broker: microBroker, management: mgmt, events: this.#eventStream.handle,
        microRegistry: { is: isMicroRegistryRoute, handle: microRegistry },
        microPath: { handler: config.micro.handler, handle: microPath },
      },
      apiToken,
      apiLog,
    );
    this.#apiListener!.server.on("upgrade", router.upgrade);
    this.#api = router.request;

    this.#node = {
      id: `${config.service.name.replace(/\./g, "-")}-${randomBytes(4).toString("hex")}`,
      service: config.service.name,
      version: config.service.version,
      address: advertisedAddress(config, bound.port, log),
      transport: config.transport.kind,
      metadata: { ...config.service.metadata },
      endpoints: [],
      subscriptions: [],
      registeredAt: new Date().toISOString(),
      // Callers mark RPC-style calls only for nodes whose record says JSON-RPC.
      ...(config.app.protocol === "jsonrpc" ? { protocol: "jsonrpc" as const } : {}),
      // Peers that speak the mesh protocol call this node with it (its inbound listener serves both).
      ...(meshVersion ? { mesh: meshVersion } : {}),
    };
    this.#registrar = new Registrar(this.#registry, this.#node, config.registry.ttl, log.child({ component: "registrar" }), emit);
    if (config.transport.kind === "nats" && nats) {
      this.#natsInbound = new NatsInbound(nats, { service: config.service.name, nodeId: this.#node.id, app: this.#appClient, gate: this.#gate, protocol: config.app.protocol, defaultTimeout: config.calls.timeout, mesh, allow: config.inbound.allow, log: log.child({ component: "nats-inbound" }) });
    }
    const subscriptionsOf = this.#subscriptions;
    const node = this.#node;
    this.#appState = new AppState({
      askApp: config.broker.askApp ? () => askApp(config.app, log.child({ component: "subscriptions" })) : undefined,
      subscriptions: {
        add: (configs) => subscriptionsOf.add(configs.map((c) => resolveSpec(c, { service: config.service.name, timeout: config.calls.timeout }))),
        start: () => subscriptionsOf.start(),
        pause: () => subscriptionsOf.pause(),
        resume: () => subscriptionsOf.resume(),
      },
      announce: () => {
        node.subscriptions = [...new Set([...subscriptionsOf.topics, ...this.#wsTopics])];
      },
      registrar: this.#registrar,
      natsInbound: this.#natsInbound,
      draining: () => this.#draining,
      log,
    });
    this.#checker.on("change", (state, reason) => emit(state === "passing" ? { type: "app-healthy" } : { type: "app-unhealthy", reason: reason ?? "unknown" }));
    this.#checker.on("change", this.#appState.change);
    // After a NATS reconnection, re-register at once instead of waiting for the next heartbeat.
    if (this.#nats)
      (await this.#nats).onReconnect(() => {
        this.#registrar?.refresh();
        front.refresh();
      });
    const inboundUrl = `${meshTls ? "https" : "http"}://${bound.address}:${bound.port}`;
    log.info("listening", { api: `${api.address}:${api.port}`, inbound: inboundUrl, meshTls: meshTls ? (meshTls.mutual ? "mutual" : "server") : "off", advertise: this.#node.address, node: this.#node.id });
    emit({ type: "listening", api: `${api.address}:${api.port}`, inbound: inboundUrl, advertise: this.#node.address, node: this.#node.id });
    await this.#checker.start();
  }

  #natsClient(): Promise<NatsClient> {
    if (this.#nats) return this.#nats;
    const emit = this.#events.emit;
    let waiting: string | undefined; // say "waiting" once per reason, not at every retry
    const onWaiting = (why: "unreachable" | "refused", error: string) => {
      if (waiting !== why) emit({ type: "backend", backend: "nats", status: why === "refused" ? "refused" : "waiting", error });
      waiting = why;
    };
    this.#nats = NatsClient.connect({ ...this.config.nats, name: this.config.nats.name ?? `sidecar-${this.config.service.name}` }, this.log.child({ component: "nats" }), this.#stop.signal, onWaiting);
    this.#nats.then((client) => {
      emit({ type: "backend", backend: "nats", status: "connected" });
      client.onStatus((status) => emit({ type: "backend", backend: "nats", status }));
    }, () => undefined);
    return this.#nats;
  }

  /** Shut down (see the class comment), letting calls in flight finish within `deadlineMs` (default shutdownTimeout). */
  close(deadlineMs?: number): Promise<void> {
    return this.#lifecycle.close(deadlineMs);
  }

  async #close(deadlineMs?: number): Promise<void> {
    const { log } = this;
    const shutdownTimeout = deadlineMs ?? this.config.shutdownTimeout;
    const components = this.#components;
    /** One shutdown step, listed in closedComponents once done; skipped for a component never made. */
    const step = async (name: string, present: unknown, fn: () => Promise<unknown> | unknown) => (present === undefined ? undefined : components.step(name, fn));
    log.info("shutting down: deregistering, then draining calls in flight", { timeoutMs: shutdownTimeout });
    this.#draining = true;
    this.#events.emit({ type: "draining" });
    this.#stop.abort();
    await this.#starting?.catch(() => undefined);
    // The drain phase: its order is deliberate (deregister before refusing calls, refuse before closing).
    await step("health", this.#checker, () => this.#checker!.close());
    await this.#appState?.settled(); // a health transition in progress finishes (and sees #draining) first
    await step("registrar", this.#registrar, () => this.#registrar!.down("shutdown"));
    await step("front:deregister", this.#front, () => this.#front!.stop());
    // Stop taking messages; deliveries in flight finish and are acknowledged.
    await step("subscriptions", this.#subscriptions, () => this.#subscriptions!.close(shutdownTimeout));
    await step("gate:drain", this.#gate, () => this.#gate!.drain());
    await step("micro-broker", this.#microBroker, () => this.#microBroker!.close());
    await step("nats-inbound", this.#natsInbound, () => this.#natsInbound!.close());
    // Keep the inbound listener open a moment: callers still holding pooled connections get a
    // refusal (and Connection: close) and go elsewhere, instead of a reset they could not tell
    // from a sidecar dying mid-request.
    await new Promise((r) => setTimeout(r, Math.min(DRAIN_GRACE_MS, shutdownTimeout)));
    this.#eventStream.endAll(); // an open GET /events stream would hold the api listener open
    await step("listeners", this.#apiListener, () =>
      Promise.all([
        this.#inboundListener?.close(shutdownTimeout),
        this.#apiListener?.close(shutdownTimeout),
        this.#gate?.idle(shutdownTimeout), // calls that came over NATS
      ]),
    );
    await step("registry-view", this.#view, () => this.#view!.close());
    await step("transports", this.#transports.size > 0 || undefined, () => Promise.all([...this.#transports.values()].map((t) => t.close())));
    // The rest, last started first: app client, front, relay, broker, registry, NATS.
    await components.closeAll();
    log.info("stopped");
    this.#events.emit({ type: "stopped" });
    this.#events.close();
  }
}
