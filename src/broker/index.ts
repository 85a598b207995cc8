import type { Config } from "../config/index.js";
import type { Logger } from "../log.js";
import type { NatsClient } from "../nats/connect.js";
import type { RegistryView } from "../registry/view.js";
import type { MeshTls } from "../tls/mesh.js";
import { LocalBroker } from "./local.js";
import { NatsBroker } from "./nats.js";
import { loadTls } from "../tls/files.js";
import type { Broker } from "./types.js";

export type { ActiveSubscription, Broker, Delivery, Outcome, SubscriptionSpec } from "./types.js";

export interface BrokerDeps {
  config: Config;
  log: Logger;
  /** A view of every node of every service, not started (the local broker starts it at its first publish, and closes it). */
  subscribers: () => RegistryView;
  nats: () => Promise<NatsClient>;
  /** mesh.tls, loaded: the local broker posts to peers' inbound listeners with it. */
  meshTls?: MeshTls | undefined;
  /** Aborted when the sidecar stops during start-up (a broker waiting for its server gives up). */
  signal?: AbortSignal | undefined;
}

/** Broker factories keyed by `broker.kind`. */
export const BROKERS: Record<Config["broker"]["kind"], (deps: BrokerDeps) => Promise<Broker>> = {
  local: async ({ config, subscribers, log, meshTls }) => new LocalBroker(subscribers, log, { meshToken: config.mesh.token, tls: meshTls, service: config.service.name }),
  nats: async ({ config, log, nats }) => NatsBroker.open(await nats(), { maxAge: config.broker.streamMaxAge, replicas: config.broker.streamReplicas }, log),
  // Loaded only when configured: sidecars on another broker do not load amqplib.
  rabbitmq: async ({ config, log, signal }) => {
    const { RabbitBroker } = await import("./rabbitmq.js");
    const { tls, ...rabbitmq } = config.rabbitmq;
    return RabbitBroker.open({ ...rabbitmq, tls: tls ? loadTls(tls, "rabbitmq.tls") : undefined }, log, signal);
  },
  // Loaded only when configured: a NATS or local sidecar does not load ioredis.
  redis: async ({ config, log, signal }) => {
    const { RedisBroker } = await import("./redis/broker.js");
    const { tls, ...redis } = config.redis;
    return RedisBroker.open({ ...redis, tls: tls ? loadTls(tls, "redis.tls") : undefined, service: config.service.name }, log, signal);
  },
};

export function createBroker(deps: BrokerDeps): Promise<Broker> {
  const factory = BROKERS[deps.config.broker.kind];
  if (!factory) throw new Error(`unknown broker kind '${deps.config.broker.kind}' (known: ${Object.keys(BROKERS).join(", ")})`);
  return factory(deps);
}
