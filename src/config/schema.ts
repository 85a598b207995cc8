import { z } from "zod";
import { isValidName } from "../names.js";
import { isValidSubject } from "../subjects.js";
import { parseDuration, parseSize } from "./units.js";

export { DEFAULTS } from "./defaults.js";
import { DEFAULTS } from "./defaults.js";

const duration = (what: string) =>
  z.union([z.number(), z.string()]).transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === undefined) {
      ctx.issues.push({ code: "custom", input: value, message: `expected ${what} as a duration such as "500ms", "5s", "1m" or a number of milliseconds` });
      return z.NEVER;
    }
    return ms;
  });

const positiveDuration = (what: string) =>
  duration(what).refine((ms) => ms > 0, { message: `expected ${what} to be greater than 0` });

const size = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const bytes = parseSize(value);
  if (bytes === undefined || bytes === 0) {
    ctx.issues.push({ code: "custom", input: value, message: `expected a size such as "1MiB", "512KiB" or a positive number of bytes` });
    return z.NEVER;
  }
  return bytes;
});

const port = z.number({ error: "expected a port number (an integer 0-65535)" }).int("expected an integer port 0-65535").min(0, "expected a port 0-65535").max(65535, "expected a port 0-65535");
const host = z.string().min(1, "expected a host name or IP address");
const name = z.string().refine(isValidName, {
  message: "expected a name matching [A-Za-z0-9][A-Za-z0-9._-]{0,62} (no '..', no trailing '.')",
});
const strategy = z.enum(["round_robin", "random", "least_pending", "hash"]);
const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, "expected an HTTP header name");
const subject = (wildcards: boolean) =>
  z.string().refine((v) => isValidSubject(v, wildcards), {
    message: wildcards ? "expected a NATS subject (dot-separated tokens; '*' and a final '>' allowed)" : "expected a NATS subject without wildcards",
  });
const secret = z.string().min(16, "expected a secret of at least 16 characters").regex(/^[\x21-\x7e]+$/, "expected printable characters without spaces");
const file = z.string().min(1, "expected a file path");
const count = (min: number) => z.number().int(`expected an integer >= ${min}`).min(min, `expected an integer >= ${min}`);

const health = z.strictObject({
  /** HTTP path checked with GET (2xx passes). Absent: a TCP connect to the app's port. */
  path: z.string().startsWith("/", "expected a path starting with '/'").optional(),
  interval: positiveDuration("health.interval").default(DEFAULTS.healthInterval),
  timeout: positiveDuration("health.timeout").default(DEFAULTS.healthTimeout),
  failureThreshold: count(1).default(DEFAULTS.failureThreshold),
  successThreshold: count(1).default(DEFAULTS.successThreshold),
});

/** One subscription; the same shape is accepted from the app's GET /sidecar/subscriptions. */
export const subscriptionSchema = z.strictObject({
  /** Unique within the sidecar; names the durable consumer. Default: the topic. */
  name: z.string().regex(/^[A-Za-z0-9_.*>-]{1,100}$/, "expected letters, digits, '.', '_', '-'").optional(),
  topic: subject(true),
  path: z.string().startsWith("/", "expected a path starting with '/'"),
  /** Default: the service name. */
  queue: name.optional(),
  durable: z.boolean().default(false),
  maxInFlight: count(1).default(DEFAULTS.maxInFlight),
  /** One delivery's deadline. Default: calls.timeout. */
  timeout: positiveDuration("timeout").optional(),
  retry: z
    .strictObject({
      attempts: count(1).default(DEFAULTS.retryAttempts),
      initial: positiveDuration("retry.initial").default(DEFAULTS.retryInitial),
      max: positiveDuration("retry.max").default(DEFAULTS.retryMax),
    })
    .prefault({}),
  deadLetter: subject(false).optional(),
  /** JetStream stream to consume from. Default: the stream covering the topic, created if none. */
  stream: z.string().regex(/^[A-Za-z0-9_-]+$/, "expected a stream name").optional(),
});

export const configSchema = z.strictObject({
  service: z.strictObject({
    name,
    version: z.string({ error: "expected a version string (quote numbers in YAML: version: \"1.0\")" }).min(1).default("0.0.0"),
    metadata: z.record(z.string(), z.string()).default({}),
  }),
  app: z.strictObject({
    host: host.default(DEFAULTS.appHost),
    port: port.refine((p) => p > 0, "expected the app's port (1-65535)"),
    health: health.prefault({}),
    /** Sent to the app as x-sidecar-app-token on every call, delivery and health check. */
    token: secret.optional(),
    /** Most calls into the app at once (from peers); beyond it: 503 with Retry-After. Default unlimited. */
    maxConcurrency: count(1).optional(),
    /**
     * How RPC-style calls (/rpc, its raw form, micro's path form) reach the app: `http` (POST to the
     * endpoint's path) or `jsonrpc` (go-micro's JSON-RPC on `/`). Proxied HTTP is always plain HTTP.
     */
    protocol: z.enum(["http", "jsonrpc"]).default("http"),
  }),
  api: z
    .strictObject({
      host: host.default(DEFAULTS.apiHost),
      port: port.default(DEFAULTS.apiPort),
      maxBody: size.default(DEFAULTS.maxBody),
      /** When set, every route but /health* and GET / (static HTML) requires `Authorization: Bearer <token>`. */
      token: secret.optional(),
      /** Time a client has to send its request headers (408 after). */
      headersTimeout: positiveDuration("api.headersTimeout").default(DEFAULTS.headersTimeout),
      /** Time a client has to send its whole request, body included (408 after); bounds streamed uploads through /proxy. */
      requestTimeout: positiveDuration("api.requestTimeout").default(DEFAULTS.requestTimeout),
    })
    .prefault({}),
  inbound: z
    .strictObject({
      /** Defaults: 127.0.0.1 with the local registry, 0.0.0.0 with nats. */
      host: host.optional(),
      /** Defaults: 0 (any free port) with the local registry, 8082 with nats. */
      port: port.optional(),
      /** host:port written to the registry instead of the bound address (containers, NAT). */
      advertise: z.string().regex(/^[^\s:]+:\d{1,5}$/, "expected host:port").optional(),
      /** When set, only these calling services are let in (403 otherwise). */
      allow: z.array(name).optional(),
    })
    .default({}),
  mesh: z
    .strictObject({
      /** Shared by the sidecars of a mesh: required from peers on the inbound paths when set. */
      token: secret.optional(),
      /** TLS between sidecars: the inbound listener's certificate; with `ca`, mutual TLS. */
      tls: z
        .strictObject({
          cert: file,
          key: file,
          /** CA that peers' certificates must chain to. Given: mutual TLS (peers must present a certificate). */
          ca: file.optional(),
          /** Name to verify peers' certificates against instead of the address dialled. */
          serverName: z.string().min(1).optional(),
        })
        .optional(),
    })
    .default({}),
  registry: z
    .strictObject({
      /** Default: etcd when an `etcd` section is given, else nats when a `nats` section is, else local. */
      kind: z.enum(["local", "nats", "etcd"]).optional(),
      ttl: positiveDuration("registry.ttl").default(DEFAULTS.registryTtl),
      /** local: the shared directory. Default: $TMPDIR/sidecar-registry. */
      dir: z.string().min(1).optional(),
      /** nats: the JetStream key-value bucket. */
      bucket: z.string().regex(/^[A-Za-z0-9_-]+$/, "expected a bucket name of letters, digits, '_' and '-'").default(DEFAULTS.registryBucket),
      /** nats: bucket replicas (1, 3 or 5) on a cluster. */
      replicas: z.union([z.literal(1), z.literal(3), z.literal(5)], { error: "expected 1, 3 or 5" }).default(1),
      /** A service this sidecar watches (from its first call) and has not called for this long is no longer watched. */
      idleWatch: positiveDuration("registry.idleWatch").default(DEFAULTS.registryIdleWatch),
    })
    .prefault({}),
  /** How peers reach this node: `http` (its inbound listener) or `nats` (request/reply; needs NATS). */
  transport: z
    .strictObject({
      kind: z.enum(["http", "nats"]).default("http"),
      /**
       * http: also speak the mesh protocol (one multiplexed connection per peer, on the same
       * inbound port) with peers whose records say they do; HTTP/1.1 with the rest. Default true.
       */
      mesh: z.boolean().default(true),
    })
    .prefault({}),
  nats: z
    .strictObject({
      servers: z.array(z.string().min(1)).min(1, "expected at least one server URL").default([...DEFAULTS.natsServers]),
      token: z.string().optional(),
      user: z.string().optional(),
      password: z.string().optional(),
      /** A NATS credentials file (user JWT and nkey seed, as written by `nsc`). */
      credentials: file.optional(),
      /** TLS to the NATS servers: `ca` to verify them, `cert` and `key` when they require a client certificate. */
      tls: z.strictObject({ ca: file.optional(), cert: file.optional(), key: file.optional() }).optional(),
      /** Client name shown by the server; default "sidecar-<service>". */
      name: z.string().optional(),
      /** How often the client pings its server; two pings unanswered and it reconnects (to another server of a cluster). */
      pingInterval: positiveDuration("nats.pingInterval").default(DEFAULTS.natsPingInterval),
    })
    .optional(),
  /** The etcd registry (registry.kind: etcd): etcd's v3 API, records under leases. */
  etcd: z
    .strictObject({
      endpoints: z
        .array(z.string().regex(/^https?:\/\/[^/\s]+$/, "expected an http:// or https:// URL with a host and port, e.g. http://etcd:2379"))
        .min(1, "expected at least one endpoint URL")
        .default([...DEFAULTS.etcdEndpoints]),
      username: z.string().min(1).optional(),
      password: z.string().optional(),
      /** TLS to etcd: `ca` to verify the servers (needed for https:// endpoints), `cert` and `key` when they require a client certificate. */
      tls: z.strictObject({ ca: file.optional(), cert: file.optional(), key: file.optional() }).optional(),
      /** Keys are `<prefix><service>/<nodeId>`. */
      prefix: z.string().regex(/^\/[\x21-\x7e]*\/$/, "expected a key prefix that starts and ends with '/', without spaces").default(DEFAULTS.etcdPrefix),
    })
    .optional(),
  /** The RabbitMQ broker (broker.kind: rabbitmq): a topic exchange, a queue per subscription and queue group. */
  rabbitmq: z
    .strictObject({
      /** amqp:// or amqps://; credentials in it are secrets (never shown). */
      url: z.string().regex(/^amqps?:\/\/[^\s]+$/, "expected an amqp:// or amqps:// URL, e.g. amqp://user:password@rabbitmq:5672").default(DEFAULTS.rabbitmqUrl),
      exchange: z.string().regex(/^[A-Za-z0-9_.:-]{1,127}$/, "expected an exchange name of letters, digits, '_', '.', ':' and '-'").default(DEFAULTS.rabbitmqExchange),
      /** Durable subscriptions' queues: classic (one node) or quorum (replicated; for a cluster). */
      queueType: z.enum(["classic", "quorum"]).default("classic"),
      /** TLS for amqps://: `ca` to verify the server, `cert` and `key` when it requires a client certificate. */
      tls: z.strictObject({ ca: file.optional(), cert: file.optional(), key: file.optional() }).optional(),
    })
    .optional(),
  /** The Redis Streams broker (broker.kind: redis). */
  redis: z
    .strictObject({
      /** `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS. A password here is moved to `password` (never logged). */
      url: z.string().refine(isRedisUrl, "expected a redis:// or rediss:// URL with a host, e.g. redis://127.0.0.1:6379 (optionally /<db>)").default(DEFAULTS.redisUrl),
      password: z.string().optional(),
      /** TLS to Redis (rediss:// URLs): `ca` to verify the server (default: the system CAs), `cert` and `key` for a client certificate. */
      tls: z.strictObject({ ca: file.optional(), cert: file.optional(), key: file.optional() }).optional(),
      /** Every topic is the stream `<prefix><topic>`. */
      prefix: z.string().regex(/^[\x21-\x7e]{0,64}$/, "expected a key prefix of at most 64 printable characters, without spaces").default(DEFAULTS.redisPrefix),
      /** Entries each stream keeps, about (XADD MAXLEN ~): older ones are trimmed, delivered or not. */
      maxLen: count(1).default(DEFAULTS.redisMaxLen),
      /** How long an entry stays pending with a consumer before another claims it (XAUTOCLAIM). Default per subscription: max(30s, 2 × timeout + retry.max). */
      claimIdle: positiveDuration("redis.claimIdle").optional(),
    })
    .optional(),
  broker: z
    .strictObject({
      /** Default: rabbitmq when a `rabbitmq` section is given, else redis when a `redis` section is, else nats when a `nats` section is, else local. */
      kind: z.enum(["local", "nats", "rabbitmq", "redis"]).optional(),
      /** How long streams the sidecar creates keep messages. */
      streamMaxAge: positiveDuration("broker.streamMaxAge").default(DEFAULTS.streamMaxAge),
      streamReplicas: z.union([z.literal(1), z.literal(3), z.literal(5)], { error: "expected 1, 3 or 5" }).default(1),
      /** Ask the app for more subscriptions at start (GET /sidecar/subscriptions; 404 = none). */
      askApp: z.boolean().default(true),
    })
    .prefault({}),
  subscriptions: z.array(subscriptionSchema).default([]),
  selector: z
    .strictObject({
      strategy: strategy.default("round_robin"),
      /** Header carrying the key of the `hash` strategy. */
      hashHeader: headerName.default(DEFAULTS.hashHeader),
      /** Connection errors or 5xx in a row that eject a node. */
      consecutiveFailures: count(1).default(DEFAULTS.consecutiveFailures),
      ejectFor: positiveDuration("selector.ejectFor").default(DEFAULTS.ejectFor),
      maxEjectFor: positiveDuration("selector.maxEjectFor").default(DEFAULTS.maxEjectFor),
      /** Retries as a share of recent calls, per service. */
      retryBudget: z.number().min(0, "expected a share between 0 and 1").max(1, "expected a share between 0 and 1").default(DEFAULTS.retryBudget),
      /** Retries always allowed per second, per service, whatever the traffic. */
      minRetriesPerSecond: z.number().min(0, "expected a number >= 0").default(DEFAULTS.minRetriesPerSecond),
      /** Per-service overrides: `services: { greeter: { strategy: hash } }`. */
      services: z.record(name, z.strictObject({ strategy: strategy.optional(), hashHeader: headerName.optional() })).default({}),
    })
    .prefault({}),
  calls: z
    .strictObject({
      timeout: positiveDuration("calls.timeout").default(DEFAULTS.callTimeout),
      /** Services this sidecar calls, watched from the start (their first call waits for nothing) and kept however idle. At most 256. */
      services: z.array(name).max(256, "at most 256 services").default([]),
    })
    .prefault({}),
  /** Compatibility with the micro toolkit's sidecar (micro/micro `car/`): its path form and error shape. */
  micro: z
    .strictObject({
      /** Prefix of service names in micro's path form: `/greeter/say/hello` calls `<namespace>.greeter`. */
      namespace: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, "expected a dotted name such as go.micro.srv").default(DEFAULTS.microNamespace),
      /** What micro's path form does: `rpc` (call Service.Method) or `proxy` (HTTP to the service), micro's --handler. */
      handler: z.enum(["rpc", "proxy"]).default("rpc"),
      /** Errors in micro's shape ({id, code, detail, status}): `true`, `false`, or `auto` (for micro-style requests only). */
      errors: z.union([z.boolean(), z.literal("auto")]).default("auto"),
    })
    .prefault({}),
  shutdownTimeout: duration("shutdownTimeout").default(DEFAULTS.shutdownTimeout),
  log: z
    .strictObject({
      level: z.enum(["error", "warn", "info", "debug"]).default("info"),
      format: z.enum(["json", "pretty", "auto"]).default("auto"),
      /** One info line per request on the api and inbound listeners (method, path, status, duration, ids). */
      requests: z.boolean().default(false),
    })
    .prefault({}),
});

/** The config as parsed, before defaults that depend on other keys are filled in. */
export type ParsedConfig = z.output<typeof configSchema>;

/** The resolved, frozen config every component receives. */
export type SubscriptionConfig = z.output<typeof subscriptionSchema>;

export type Config = Omit<ParsedConfig, "registry" | "inbound" | "nats" | "broker" | "etcd" | "rabbitmq" | "redis"> & {
  broker: Omit<ParsedConfig["broker"], "kind"> & { kind: "local" | "nats" | "rabbitmq" | "redis" };
  rabbitmq: NonNullable<ParsedConfig["rabbitmq"]>;
  registry: Omit<ParsedConfig["registry"], "kind" | "dir"> & { kind: "local" | "nats" | "etcd"; dir: string };
  etcd: NonNullable<ParsedConfig["etcd"]>;
  inbound: { host: string; port: number; advertise: string | undefined; allow: string[] | undefined };
  nats: NonNullable<ParsedConfig["nats"]>;
  /** Resolved: `url` carries no password (it is in `password`). */
  redis: NonNullable<ParsedConfig["redis"]>;
};

/** redis://host[:port][/db] (userinfo allowed) or rediss://: what the Redis broker can dial. */
export function isRedisUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === "redis:" || u.protocol === "rediss:") && u.hostname !== "" && /^(\/\d{0,2})?$/.test(u.pathname) && u.search === "" && u.hash === "";
  } catch {
    return false;
  }
}
