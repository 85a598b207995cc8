import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "../../src/config/index.js";
import { parseDuration, parseSize } from "../../src/config/units.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-config-"));
function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}
function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return [...err.problems];
  }
  assert.fail("expected the config to be rejected");
}

describe("durations and sizes", () => {
  it("parses durations", () => {
    assert.equal(parseDuration("500ms"), 500);
    assert.equal(parseDuration("5s"), 5000);
    assert.equal(parseDuration("1.5s"), 1500);
    assert.equal(parseDuration("2m"), 120_000);
    assert.equal(parseDuration("1h"), 3_600_000);
    assert.equal(parseDuration(250), 250);
    for (const bad of ["5", "five", "-1s", "5 sec", "", null, -3]) assert.equal(parseDuration(bad), undefined, String(bad));
  });
  it("parses sizes", () => {
    assert.equal(parseSize("1MiB"), 1024 * 1024);
    assert.equal(parseSize("64KiB"), 65536);
    assert.equal(parseSize("1MB"), 1_000_000);
    assert.equal(parseSize(100), 100);
    assert.equal(parseSize("100"), 100);
    for (const bad of ["1 mb", "lots", -1, 1.5]) assert.equal(parseSize(bad), undefined, String(bad));
  });
});

describe("loadConfig", () => {
  it("loads a good file and fills the design's defaults", () => {
    const f = file("good.yaml", "service: { name: greeter, version: 1.0.0, metadata: { zone: a } }\napp: { port: 5000, health: { path: /health } }\n");
    const { config, file: used } = loadConfig({ file: f, env: {} });
    assert.equal(used, f);
    assert.equal(config.service.name, "greeter");
    assert.deepEqual(config.service.metadata, { zone: "a" });
    assert.deepEqual(config.app, { host: "127.0.0.1", port: 5000, protocol: "http", health: { path: "/health", interval: 5000, timeout: 1000, failureThreshold: 3, successThreshold: 1 } });
    assert.deepEqual(config.micro, { namespace: "go.micro.srv", handler: "rpc", errors: "auto" });
    assert.deepEqual(config.api, { host: "127.0.0.1", port: 8081, maxBody: 1024 * 1024, headersTimeout: 10_000, requestTimeout: 60_000 });
    assert.equal(config.registry.kind, "local", "no nats section: the embedded default");
    assert.deepEqual(config.inbound, { host: "127.0.0.1", port: 0, advertise: undefined, allow: undefined });
    assert.equal(config.registry.ttl, 15_000);
    assert.equal(config.calls.timeout, 5000);
    assert.equal(config.shutdownTimeout, 10_000);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.app.health), "frozen");
  });

  it("a nats section selects the nats registry and the production inbound defaults", () => {
    const f = file("nats.yaml", "service: { name: greeter }\napp: { port: 5000 }\nnats: { servers: [nats://10.0.0.1:4222] }\n");
    const { config } = loadConfig({ file: f, env: {} });
    assert.equal(config.registry.kind, "nats");
    assert.deepEqual(config.nats.servers, ["nats://10.0.0.1:4222"]);
    assert.deepEqual(config.inbound, { host: "0.0.0.0", port: 8082, advertise: undefined, allow: undefined });
  });

  it("an etcd section selects the etcd registry, the production inbound defaults and the direct broker; endpoints from the environment", () => {
    const f = file("etcd.yaml", "service: { name: greeter }\napp: { port: 5000 }\netcd: { prefix: /reg/ }\n");
    const { config } = loadConfig({ file: f, env: { SIDECAR_ETCD_ENDPOINTS: "http://etcd-1:2379,http://etcd-2:2379" } });
    assert.equal(config.registry.kind, "etcd");
    assert.equal(config.broker.kind, "local", "without NATS, messages go straight to the subscribers' sidecars");
    assert.deepEqual(config.etcd.endpoints, ["http://etcd-1:2379", "http://etcd-2:2379"]);
    assert.equal(config.etcd.prefix, "/reg/");
    assert.deepEqual(config.inbound, { host: "0.0.0.0", port: 8082, advertise: undefined, allow: undefined });
    const defaults = loadConfig({ set: ["service.name=g", "app.port=1", "registry.kind=etcd"], env: {}, cwd: dir }).config;
    assert.deepEqual([defaults.etcd.endpoints, defaults.etcd.prefix], [["http://127.0.0.1:2379"], "/sidecar/registry/"]);
  });

  it("etcd settings are checked: endpoint URLs, https needs a CA, a username needs its password (never shown), a prefix between slashes", () => {
    const base = ["service.name=g", "app.port=1", "registry.kind=etcd"];
    const p = problems(() => loadConfig({ set: [...base, "etcd.endpoints=etcd:2379", "etcd.prefix=reg", "etcd.password=hunter2-secret-value"], env: {}, cwd: dir }));
    assert.ok(p.some((l) => /etcd\.endpoints\.0: got "etcd:2379": expected an http:\/\/ or https:\/\/ URL/.test(l)), p.join("\n"));
    assert.ok(p.some((l) => /etcd\.prefix: got "reg": expected a key prefix that starts and ends with '\/'/.test(l)), p.join("\n"));
    const q = problems(() => loadConfig({ set: [...base, "etcd.endpoints=https://etcd:2379", "etcd.password=hunter2-secret-value"], env: {}, cwd: dir }));
    assert.ok(q.some((l) => /etcd\.endpoints: https:\/\/ endpoints need etcd\.tls\.ca/.test(l)), q.join("\n"));
    assert.ok(q.some((l) => /etcd\.password: expected etcd\.username as well/.test(l)), q.join("\n"));
    assert.ok(!q.join("\n").includes("hunter2"), "the password is never shown");
    const r = problems(() => loadConfig({ set: [...base, "etcd.endpoints=http://a:2379,https://b:2379", "transport.kind=nats"], env: {}, cwd: dir }));
    assert.ok(r.some((l) => /expected all http:\/\/ or all https:\/\//.test(l)), r.join("\n"));
    assert.ok(r.some((l) => /transport\.kind: got 'nats': expected a nats section as well/.test(l)), r.join("\n"));
  });

  it("a rabbitmq section selects the RabbitMQ broker; its URL is checked and, carrying credentials, never shown", () => {
    const base = ["service.name=g", "app.port=1"];
    const { config } = loadConfig({ set: [...base, "rabbitmq.url=amqp://u:p@rabbit:5672", "rabbitmq.queueType=quorum"], env: {}, cwd: dir });
    assert.equal(config.broker.kind, "rabbitmq");
    assert.deepEqual([config.rabbitmq.exchange, config.rabbitmq.queueType], ["sidecar", "quorum"]);
    assert.equal(loadConfig({ set: [...base, "broker.kind=rabbitmq"], env: {}, cwd: dir }).config.rabbitmq.url, "amqp://127.0.0.1:5672");
    const p = problems(() => loadConfig({ set: [...base, "rabbitmq.url=http://user:hunter2-secret@rabbit", "rabbitmq.queueType=mirrored"], env: {}, cwd: dir }));
    assert.ok(p.some((l) => /rabbitmq\.url: got "http:\/\/user:\(hidden\)@rabbit": expected an amqp:\/\/ or amqps:\/\/ URL/.test(l)), p.join("\n"));
    assert.ok(p.some((l) => /rabbitmq\.queueType: got "mirrored"/.test(l)), p.join("\n"));
    assert.ok(!p.join("\n").includes("hunter2"));
    const q = problems(() => loadConfig({ set: [...base, "rabbitmq.url=amqp://rabbit", `rabbitmq.tls.ca=${path.join(dir, "nope.pem")}`], env: {}, cwd: dir }));
    assert.ok(q.some((l) => /rabbitmq\.tls: expected an amqps:\/\/ rabbitmq\.url/.test(l)), q.join("\n"));
  });

  it("a redis section selects the Redis broker (registry unchanged); its defaults; a password in the URL is moved out of it", () => {
    const base = ["service.name=g", "app.port=1"];
    assert.equal(loadConfig({ set: base, env: {}, cwd: dir }).config.broker.kind, "local", "no redis or nats section: the embedded broker");
    const { config } = loadConfig({ file: file("redis.yaml", "service: { name: greeter }\napp: { port: 5000 }\nredis: {}\n"), env: {} });
    assert.equal(config.broker.kind, "redis");
    assert.equal(config.registry.kind, "local");
    assert.deepEqual({ ...config.redis }, { url: "redis://127.0.0.1:6379", prefix: "sidecar:", maxLen: 100_000, password: undefined, tls: undefined });
    const withNats = loadConfig({ set: [...base, "nats.servers=nats://n:4222", "redis.url=redis://r:6380/2"], env: {}, cwd: dir }).config;
    assert.deepEqual([withNats.registry.kind, withNats.broker.kind], ["nats", "redis"], "a redis section beside nats: NATS for the registry, Redis for pub/sub");
    assert.equal(loadConfig({ set: [...base, "redis.url=redis://r:6380", "broker.kind=nats"], env: {}, cwd: dir }).config.broker.kind, "nats", "broker.kind says otherwise");
    const env = loadConfig({ set: base, env: { SIDECAR_REDIS_URL: "rediss://app:pa%40ss@r.example:6380/1", SIDECAR_REDIS_CLAIM_IDLE: "5s", SIDECAR_REDIS_MAX_LEN: "500" }, cwd: dir }).config;
    assert.deepEqual([env.redis.url, env.redis.password, env.redis.claimIdle, env.redis.maxLen], ["rediss://app@r.example:6380/1", "pa@ss", 5_000, 500]);
    assert.equal(loadConfig({ set: base, env: { SIDECAR_REDIS_PASSWORD: "from-env" }, cwd: dir }).config.redis.password, "from-env");
  });

  it("redis settings are checked: the URL (its password never shown), the password once, TLS with rediss://, no wildcard subscriptions", () => {
    const base = ["service.name=g", "app.port=1"];
    const p = problems(() => loadConfig({ set: [...base, "redis.url=http://:hunter2@r:6379", "redis.maxLen=0", "redis.prefix=a b"], env: {}, cwd: dir }));
    assert.ok(p.some((l) => /redis\.url: got "http:\/\/:\(hidden\)@r:6379": expected a redis:\/\/ or rediss:\/\/ URL/.test(l)), p.join("\n"));
    assert.ok(!p.some((l) => l.includes("hunter2")), p.join("\n"));
    assert.ok(p.some((l) => /redis\.maxLen: got 0: expected an integer >= 1/.test(l)), p.join("\n"));
    assert.ok(p.some((l) => /redis\.prefix: got "a b": expected a key prefix/.test(l)), p.join("\n"));
    const q = problems(() => loadConfig({ set: [...base, "redis.url=redis://:pw@r:6379", "redis.password=other", `redis.tls.ca=${path.join(dir, "nope.pem")}`], env: {}, cwd: dir }));
    assert.ok(q.some((l) => /redis\.password: expected the password once: in redis\.url or in redis\.password, not both/.test(l)), q.join("\n"));
    assert.ok(q.some((l) => /redis\.tls: expected a rediss:\/\/ URL with TLS settings/.test(l)), q.join("\n"));
    const t = problems(() => loadConfig({ set: [...base, "redis.url=rediss://r:6380", `redis.tls.ca=${path.join(dir, "nope.pem")}`], env: {}, cwd: dir }));
    assert.ok(t.some((l) => /redis\.tls\.ca: cannot read '.*nope\.pem'/.test(l)), t.join("\n"));
    const subs = 'subscriptions=[{"topic": "orders.*", "path": "/e"}, {"topic": "orders.created", "path": "/c"}, {"topic": "audit.>", "path": "/a"}]';
    const w = problems(() => loadConfig({ set: [...base, "broker.kind=redis", subs], env: {}, cwd: dir }));
    assert.deepEqual(w.map((l) => l.replace(/: Redis Streams has no subject wildcards.*/, "")), ['--set subscriptions: subscriptions.0.topic: got "orders.*"', '--set subscriptions: subscriptions.2.topic: got "audit.>"'], w.join("\n"));
    assert.ok(w.every((l) => /Redis Streams has no subject wildcards/.test(l)));
    assert.doesNotThrow(() => loadConfig({ set: [...base, subs], env: {}, cwd: dir }), "wildcards are fine on the other brokers");
  });

  it("environment overrides the file and --set overrides the environment", () => {
    const f = file("layers.yaml", "service: { name: greeter }\napp: { port: 5000 }\n");
    const { config } = loadConfig({
      file: f,
      env: { SIDECAR_APP_PORT: "6000", SIDECAR_APP_HEALTH_FAILURE_THRESHOLD: "7", SIDECAR_SERVICE_METADATA_ZONE: "b", SIDECAR_NATS_SERVERS: "nats://a:1,nats://b:2", SIDECAR_SERVICE_VERSION: "2.0" },
      set: ["app.port=7000", "registry.ttl=3s", "log.level=debug"],
    });
    assert.equal(config.app.port, 7000);
    assert.equal(config.app.health.failureThreshold, 7);
    assert.deepEqual(config.service.metadata, { zone: "b" });
    assert.deepEqual(config.nats.servers, ["nats://a:1", "nats://b:2"]);
    assert.equal(config.service.version, "2.0", "a version stays a string");
    assert.equal(config.registry.ttl, 3000);
    assert.equal(config.log.level, "debug");
  });

  it("finds the file through SIDECAR_CONFIG", () => {
    const f = file("env.yaml", "service: { name: fromenv }\napp: { port: 5000 }\n");
    assert.equal(loadConfig({ env: { SIDECAR_CONFIG: f } }).config.service.name, "fromenv");
  });

  it("SIDECAR_URL (the client commands' sidecar, what `sidecar run` gives its app) is not taken for a config key", () => {
    const { config } = loadConfig({ env: { SIDECAR_URL: "http://127.0.0.1:9", SIDECAR_APP_PORT: "5000" }, cwd: dir, set: ["service.name=a"] });
    assert.equal(config.app.port, 5000);
  });

  it("reports every problem at once, each naming the file, the key, the value and what was expected", () => {
    const f = file("bad.yaml", [
      "service: { name: 'bad name' }",
      "app: { port: abc, health: { interval: 5x, bogus: 1 } }",
      "registry: { kind: consul, ttl: 0s }",
      "api: { maxBody: lots }",
      "extra: 1",
    ].join("\n"));
    const p = problems(() => loadConfig({ file: f, env: {} }));
    const expect = [
      /bad\.yaml: service\.name: got "bad name": expected a name matching/,
      /bad\.yaml: app\.port: got "abc": expected a port number/,
      /bad\.yaml: app\.health\.interval: got "5x": expected health\.interval as a duration/,
      /bad\.yaml: app\.health\.bogus: unknown key \(expected one of: path, interval, timeout, failureThreshold, successThreshold\)/,
      /bad\.yaml: registry\.kind: got "consul": .*"local"\|"nats"\|"etcd"/,
      /bad\.yaml: registry\.ttl: got "0s": expected registry\.ttl to be greater than 0/,
      /bad\.yaml: api\.maxBody: got "lots": expected a size/,
      /bad\.yaml: extra: unknown key \(expected one of: service, app,/,
    ];
    for (const re of expect) assert.ok(p.some((line) => re.test(line)), `no problem matching ${re}:\n${p.join("\n")}`);
    assert.equal(p.length, expect.length, p.join("\n"));
  });

  it("names the environment variable or flag a bad value came from", () => {
    const f = file("ok.yaml", "service: { name: greeter }\napp: { port: 5000 }\n");
    const p = problems(() => loadConfig({ file: f, env: { SIDECAR_API_PORT: "99999", SIDECAR_NOPE: "1" }, set: ["log.level=loud", "novalue"] }));
    assert.ok(p.some((l) => /^environment SIDECAR_API_PORT: api\.port: got 99999: expected a port 0-65535$/.test(l)), p.join("\n"));
    assert.ok(p.some((l) => /^environment SIDECAR_NOPE: not a config key/.test(l)), p.join("\n"));
    assert.ok(p.some((l) => /^--set log\.level: log\.level: got "loud"/.test(l)), p.join("\n"));
    assert.ok(p.some((l) => /^--set novalue: expected key\.path=value$/.test(l)), p.join("\n"));
  });

  it("api.headersTimeout may not exceed api.requestTimeout", () => {
    const p = problems(() => loadConfig({ env: {}, cwd: dir, set: ["service.name=a", "app.port=1", "api.headersTimeout=30s", "api.requestTimeout=5s"] }));
    assert.ok(p.some((l) => /^--set api\.headersTimeout: api\.headersTimeout: got 30000ms: expected at most api\.requestTimeout \(5000ms\)$/.test(l)), p.join("\n"));
  });

  it("names missing required keys by their full path", () => {
    const p = problems(() => loadConfig({ env: {}, cwd: dir }));
    assert.ok(p.some((l) => /service\.name: required key is missing/.test(l)), p.join("\n"));
    assert.ok(p.some((l) => /app\.port: required key is missing/.test(l)), p.join("\n"));
  });

  it("reports YAML syntax errors and non-mapping documents with the file name", () => {
    const a = file("syntax.yaml", "service: { name: [unclosed\n");
    assert.ok(problems(() => loadConfig({ file: a, env: {} })).some((l) => l.startsWith(`${a}: YAML syntax error`)));
    const b = file("list.yaml", "- a\n- b\n");
    assert.ok(problems(() => loadConfig({ file: b, env: {} })).some((l) => l.startsWith(`${b}: expected a mapping`)));
    const missing = path.join(dir, "missing.yaml");
    assert.ok(problems(() => loadConfig({ file: missing, env: {} })).some((l) => l.startsWith(`${missing}: cannot read the config file`)));
  });

  it("a YAML alias bomb (billion laughs) is a config problem naming the file, not a crash", () => {
    const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 9; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(",")}]`);
    const bomb = file("laughs.yaml", `${lines.join("\n")}\n`);
    const p = problems(() => loadConfig({ file: bomb, env: {} }));
    assert.ok(p.some((l) => l.startsWith(`${bomb}: YAML cannot be read:`) && /alias/i.test(l)), p.join("\n"));
  });

  it("rejects invalid service names, quoted versions aside", () => {
    for (const name of ["../x", "a b", "x".repeat(64), "a..b"]) {
      const p = problems(() => loadConfig({ env: {}, set: [`service.name=${name}`, "app.port=1"] }));
      assert.ok(p.some((l) => l.includes("service.name")), name);
    }
    const p = problems(() => loadConfig({ file: file("ver.yaml", "service: { name: a, version: 1.0 }\napp: { port: 1 }\n"), env: {} }));
    assert.ok(p.some((l) => /service\.version: got 1: expected a version string \(quote numbers/.test(l)), p.join("\n"));
  });
});
