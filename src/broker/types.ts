/** A subscription as configured, resolved: every default filled in. */
export interface SubscriptionSpec {
  /** Unique per sidecar; names the JetStream consumer with the queue. Default: the topic. */
  name: string;
  /** NATS subject, wildcards allowed. */
  topic: string;
  /** App endpoint that receives the POSTs. */
  path: string;
  /** One instance of the queue group gets each message. Default: the service name. */
  queue: string;
  /** JetStream (at-least-once, survives restarts) rather than core NATS (at-most-once). */
  durable: boolean;
  /** Deliveries to the app at once. */
  maxInFlight: number;
  /** Deadline of one delivery (ms). */
  timeout: number;
  retry: { attempts: number; initial: number; max: number };
  /** Topic that receives messages after the last attempt or a 4xx. */
  deadLetter: string | undefined;
  /** JetStream stream to consume from; default: the stream covering the topic (created if none). */
  stream: string | undefined;
}

/** One message on its way to the app. */
export interface Delivery {
  /** The message id (ce-id): the publisher's, or assigned at publish. */
  id: string;
  /** The subject it was published on. */
  topic: string;
  body: Buffer;
  /** Headers the publisher sent (content-type, ce-*, x-sidecar-*). */
  headers: Record<string, string>;
  /** 1 for the first delivery. */
  attempt: number;
  /**
   * The publishing service, when the broker could vouch for it (embedded broker: the mesh token or
   * a client certificate checked by the inbound listener); the relay shows only this one to the app.
   */
  caller?: string | undefined;
}

/** What the relay decided: acknowledge, try again after `delay` ms, or give up (dead-lettered). */
export type Outcome = { kind: "ack" } | { kind: "retry"; delay: number } | { kind: "dead" };

export type DeliverFn = (d: Delivery) => Promise<Outcome>;

export interface SubscriptionCounters {
  delivered: number;
  retried: number;
  deadLettered: number;
  inFlight: number;
}

/** A running subscription, whatever the backend. */
export interface ActiveSubscription {
  readonly spec: SubscriptionSpec;
  /** Stop taking messages (the app is unhealthy); messages wait (durable) or go to other instances. */
  pause(): Promise<void>;
  resume(): void;
  readonly paused: boolean;
  /** Stop taking messages and let deliveries in flight finish, up to `timeout` ms. Idempotent. */
  stop(timeout: number): Promise<void>;
  /** Messages lost before delivery (at-most-once subscriptions: a full queue, or a stop). */
  readonly dropped: number;
}

export interface PublishResult {
  id: string;
  /** True when JetStream stored the message (a stream covers the topic). */
  stored: boolean;
  /** The stream that stored it. */
  stream?: string | undefined;
  /**
   * Local broker: subscribed services none of whose nodes took the message (a full queue, a node
   * unreachable or shutting down). It is lost for them: the local broker keeps nothing.
   */
  notTakenBy?: string[] | undefined;
}

export type BrokerStatus = "connected" | "disconnected" | "closed";

/** A broker backend. Implementations: NatsBroker (nats.ts: core + JetStream), LocalBroker (local.ts). */
export interface Broker {
  readonly kind: string;
  /** Resolves once the broker has the message (for a stored topic: once JetStream stored it). */
  publish(topic: string, body: Buffer, headers: Record<string, string>): Promise<PublishResult>;
  subscribe(spec: SubscriptionSpec, deliver: DeliverFn): Promise<ActiveSubscription>;
  status(): BrokerStatus;
  /** Optional (the local broker): messages a subscribed service did not take, counted once per service. */
  notTaken?(): number;
  /**
   * Optional (the embedded broker, which has no server): a message a peer's sidecar delivered to
   * this node's inbound listener, handed to the matching subscriptions; how many took it.
   */
  receive?(topic: string, body: Buffer, headers: Record<string, string>, caller: string | undefined): number;
  /**
   * Idempotent. After it, publish and subscribe reject with CLOSED and status() is "closed".
   * (A backend's factory is its start: what BROKERS returns is ready to use.)
   */
  close(): Promise<void>;
}
