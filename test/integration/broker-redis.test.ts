import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { createBroker, type Broker, type Delivery, type Outcome, type SubscriptionSpec } from "../../src/broker/index.js";
import type { ActiveSubscription } from "../../src/broker/types.js";
import { loadConfig } from "../../src/config/index.js";
import { SidecarError } from "../../src/errors.js";
import { createLogger, silentLogger, type Logger } from "../../src/log.js";
import { TestCa } from "../support/certs.js";
import { RedisServer } from "../support/redis.js";
import { waitFor } from "../support/sidecar.js";

/**
 * What the Redis broker does beyond the conformance suite (broker-conformance-redis.test.ts), on
 * the broker itself: wildcards refused, durable: false (at-most-once), pending entries claimed
 * from a dead consumer with their attempt number, pause and resume, the lifecycle, a password
 * never logged, and a publish refused at once while Redis is down.
 */
describe("the Redis Streams broker", () => {
  let redis: RedisServer;
  let raw: Redis;
  const brokers: Broker[] = [];
  const subs: ActiveSubscription[] = [];

  before(async () => {
    redis = await RedisServer.start();
    raw = new Redis(redis.url);
  });
  after(async () => {
    await Promise.all(subs.map((s) => s.stop(1_000)));
    await Promise.all(brokers.map((b) => b.close()));
    raw.disconnect();
    await redis.stop();
  });

  const open = async (extra: string[] = [], log: Logger = silentLogger(), url = redis.url) => {
    const { config } = loadConfig({ set: ["service.name=rb", "app.port=1", `redis.url=${url}`, "redis.claimIdle=500ms", ...extra], env: {} });
    assert.equal(config.broker.kind, "redis", "a redis section selects the redis broker");
    const b = await createBroker({ config, log, subscribers: () => assert.fail("the redis broker watches no registry"), nats: () => Promise.reject(new Error("no NATS here")) });
    brokers.push(b);
    return b;
  };
  const spec = (o: Partial<SubscriptionSpec> & { topic: string }): SubscriptionSpec => ({
    name: o.topic, path: "/e", queue: "rb", durable: true, maxInFlight: 8, timeout: 1_000, retry: { attempts: 3, initial: 20, max: 50 }, deadLetter: undefined, stream: undefined, ...o,
  });
  const collect = () => {
    const got: Delivery[] = [];
    const deliver = async (d: Delivery): Promise<Outcome> => {
      got.push(d);
      return { kind: "ack" };
    };
    return { got, deliver };
  };
  const subscribe = async (b: Broker, s: SubscriptionSpec, deliver: (d: Delivery) => Promise<Outcome>) => {
    const sub = await b.subscribe(s, deliver);
    subs.push(sub);
    return sub;
  };
  const body = (d: Delivery) => JSON.parse(d.body.toString()) as { n: number };

  it("refuses a subscription with wildcards: Redis Streams has no subject wildcards", async () => {
    const b = await open();
    for (const topic of ["orders.*", "orders.>"]) {
      await assert.rejects(b.subscribe(spec({ topic }), async () => ({ kind: "ack" })), /Redis Streams has no subject wildcards/);
    }
  });

  it("publishes with XADD (MAXLEN ~): id, headers and body in the stream <prefix><topic>; 202 means stored", async () => {
    const b = await open(["redis.maxLen=50"]);
    const r = await b.publish("rb.stored", Buffer.from("héllo"), { "content-type": "text/plain", "ce-id": "m-1" });
    assert.deepEqual(r, { id: "m-1", stored: true, stream: "sidecar:rb.stored" });
    const [[, fields]] = (await raw.xrange("sidecar:rb.stored", "-", "+")) as [string, string[]][];
    assert.deepEqual(fields!.filter((_, i) => i % 2 === 0), ["id", "headers", "body"]);
    assert.equal(fields![5], "héllo");
    assert.equal(JSON.parse(fields![3]!)["ce-id"], "m-1");
    for (let i = 0; i < 400; i++) await b.publish("rb.stored", Buffer.from(String(i)), {});
    const len = await raw.xlen("sidecar:rb.stored");
    assert.ok(len < 200, `approximate trimming keeps about redis.maxLen entries (${len})`);
  });

  it("claims what a dead consumer left pending after claimIdle, and delivers it with its attempt number", async () => {
    const key = "sidecar:rb.claim";
    await raw.xgroup("CREATE", key, "rb:rb.claim", "$", "MKSTREAM");
    const b = await open();
    for (let n = 0; n < 3; n++) await b.publish("rb.claim", Buffer.from(JSON.stringify({ n })), {});
    // A consumer that read them and died.
    await raw.xreadgroup("GROUP", "rb:rb.claim", "dead-1", "COUNT", 10, "STREAMS", key, ">");
    const { got, deliver } = collect();
    await subscribe(b, spec({ topic: "rb.claim" }), deliver);
    await waitFor(() => got.length === 3, "the three claimed messages", 5_000);
    assert.deepEqual(got.map(body).map((m) => m.n).sort(), [0, 1, 2]);
    assert.deepEqual(got.map((d) => d.attempt), [2, 2, 2], "the second delivery of each");
    await waitFor(async () => ((await raw.xpending(key, "rb:rb.claim")) as [number])[0] === 0, "all acknowledged");
  });

  it("a pending entry trimmed away before it was acknowledged (redis.maxLen) is counted as dropped and leaves the pending list", async () => {
    const key = "sidecar:rb.trim";
    await raw.xgroup("CREATE", key, "rb:rb.trim", "$", "MKSTREAM");
    const b = await open();
    await b.publish("rb.trim", Buffer.from("{}"), {});
    await raw.xreadgroup("GROUP", "rb:rb.trim", "dead-2", "COUNT", 10, "STREAMS", key, ">");
    await raw.xtrim(key, "MAXLEN", 0);
    const { got, deliver } = collect();
    const sub = await subscribe(b, spec({ topic: "rb.trim" }), deliver);
    await waitFor(() => sub.dropped === 1, "the trimmed entry counted");
    await waitFor(async () => ((await raw.xpending(key, "rb:rb.trim")) as [number])[0] === 0, "the pending list empty");
    assert.equal(got.length, 0);
  });

  it("retries: held, then delivered again with the next attempt; acknowledged once done", async () => {
    const b = await open();
    const seen: number[] = [];
    await subscribe(b, spec({ topic: "rb.retry" }), async (d) => {
      seen.push(d.attempt);
      return d.attempt < 3 ? { kind: "retry", delay: 30 } : { kind: "ack" };
    });
    await b.publish("rb.retry", Buffer.from("{}"), {});
    await waitFor(() => seen.length === 3, "three attempts");
    assert.deepEqual(seen, [1, 2, 3]);
    await waitFor(async () => ((await raw.xpending("sidecar:rb.retry", "rb:rb.retry")) as [number])[0] === 0, "acknowledged");
  });

  it("durable: false is at-most-once: one queue group shares the messages, none pending, none twice; nothing kept once all have left", async () => {
    const [one, two] = [await open(), await open()];
    const a = collect();
    const c = collect();
    const s = spec({ topic: "rb.fast", durable: false });
    const subA = await one.subscribe(s, a.deliver);
    const subC = await two.subscribe(s, c.deliver);
    for (let n = 0; n < 50; n++) await one.publish("rb.fast", Buffer.from(JSON.stringify({ n })), {});
    await waitFor(() => a.got.length + c.got.length === 50, "50 deliveries");
    assert.deepEqual([...a.got, ...c.got].map((d) => body(d).n).sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
    assert.ok(a.got.length > 0 && c.got.length > 0, "both instances took some");
    assert.equal(((await raw.xpending("sidecar:rb.fast", "rb:rb.fast")) as [number])[0], 0, "NOACK: nothing pending");
    await subA.stop(1_000);
    await subC.stop(1_000);
    assert.deepEqual(await raw.xinfo("GROUPS", "sidecar:rb.fast"), [], "the group is removed with its last consumer");
    await one.publish("rb.fast", Buffer.from(JSON.stringify({ n: 99 })), {});
    const late = collect();
    await subscribe(one, s, late.deliver);
    await one.publish("rb.fast", Buffer.from(JSON.stringify({ n: 100 })), {});
    await waitFor(() => late.got.length === 1, "the message published after subscribing");
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(late.got.map((d) => body(d).n), [100], "what was published while nobody was subscribed is not kept");
  });

  it("pause stops reading (messages wait in the stream); resume delivers them", async () => {
    const b = await open();
    const { got, deliver } = collect();
    const sub = await subscribe(b, spec({ topic: "rb.pause" }), deliver);
    const t0 = Date.now();
    await sub.pause();
    assert.ok(Date.now() - t0 < 1_000, "the blocking read is cut short");
    assert.equal(sub.paused, true);
    for (let n = 0; n < 5; n++) await b.publish("rb.pause", Buffer.from(JSON.stringify({ n })), {});
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(got.length, 0, "nothing delivered while paused");
    sub.resume();
    await waitFor(() => got.length === 5, "the five after resume");
  });

  it("logs host:port, never the password from the URL; a wrong password is refused", async () => {
    const secured = await RedisServer.start({ args: ["--requirepass", "s3cret-pa55word"] });
    try {
      const out = new PassThrough();
      let text = "";
      out.on("data", (c: Buffer) => (text += c.toString()));
      const log = createLogger({ level: "debug", format: "json", stream: out });
      const url = `redis://:s3cret-pa55word@127.0.0.1:${secured.port}`;
      const b = await open([], log, url);
      assert.equal(b.status(), "connected");
      await b.publish("rb.auth", Buffer.from("x"), {});
      await b.close();
      assert.match(text, new RegExp(`127\\.0\\.0\\.1:${secured.port}`));
      assert.doesNotMatch(text, /s3cret/);
      const { config } = loadConfig({ set: ["service.name=rb", "app.port=1", `redis.url=${url}`], env: {} });
      assert.equal(config.redis.url, `redis://127.0.0.1:${secured.port}`, "the password is moved out of the URL");
      assert.equal(config.redis.password, "s3cret-pa55word");
      // A wrong password: the broker keeps waiting, and says why, until the sidecar stops.
      text = "";
      const stop = new AbortController();
      const wrong = loadConfig({ set: ["service.name=rb", "app.port=1", `redis.url=redis://127.0.0.1:${secured.port}`, "redis.password=not-the-password"], env: {} }).config;
      const opening = createBroker({ config: wrong, log, subscribers: () => assert.fail("the redis broker watches no registry"), nats: () => Promise.reject(new Error("no NATS")), signal: stop.signal });
      await waitFor(() => /refused this sidecar's credentials/.test(text), "the credentials error", 5_000);
      stop.abort();
      await assert.rejects(opening, /stopped while waiting for Redis/);
      assert.doesNotMatch(text, /not-the-password/);
    } finally {
      await secured.stop();
    }
  });

  it("rediss:// with redis.tls: the server verified against redis.tls.ca, this sidecar by its client certificate", async () => {
    const ca = TestCa.create("redis-ca");
    const server = ca.issue("redis-server");
    const client = ca.issue("rb");
    const secured = await RedisServer.start({ tls: { ...server, ca: ca.cert } });
    try {
      const b = await open([`redis.tls.ca=${ca.cert}`, `redis.tls.cert=${client.cert}`, `redis.tls.key=${client.key}`], silentLogger(), secured.url);
      const { got, deliver } = collect();
      const sub = await b.subscribe(spec({ topic: "rb.tls" }), deliver);
      await b.publish("rb.tls", Buffer.from(JSON.stringify({ n: 1 })), {});
      await waitFor(() => got.length === 1, "the message over TLS");
      await sub.stop(1_000);
      await b.close();
    } finally {
      await secured.stop();
      ca.remove();
    }
  });

  it("while Redis is down: status disconnected, a publish rejected at once; after a restart the subscription reads again", async () => {
    const b = await open();
    const { got, deliver } = collect();
    await subscribe(b, spec({ topic: "rb.down" }), deliver);
    await b.publish("rb.down", Buffer.from(JSON.stringify({ n: 1 })), {});
    await waitFor(() => got.length === 1, "the first message");
    await redis.kill();
    await waitFor(() => b.status() === "disconnected", "disconnected");
    const t0 = Date.now();
    await assert.rejects(b.publish("rb.down", Buffer.from("x"), {}));
    assert.ok(Date.now() - t0 < 200, "no wait in an offline queue");
    await redis.restart();
    raw.disconnect();
    raw = new Redis(redis.url);
    await waitFor(() => b.status() === "connected", "connected again", 10_000);
    await b.publish("rb.down", Buffer.from(JSON.stringify({ n: 2 })), {});
    await waitFor(() => got.length === 2, "the message after the restart", 10_000);
  });

  it("close is idempotent; afterwards publish and subscribe reject with CLOSED and status() is closed", async () => {
    const b = await open();
    await Promise.all([b.close(), b.close()]);
    assert.equal(b.status(), "closed");
    const isClosed = (err: unknown) => err instanceof SidecarError && err.code === "CLOSED";
    await assert.rejects(b.publish("rb.after", Buffer.from("x"), {}), isClosed);
    await assert.rejects(b.subscribe(spec({ topic: "rb.after" }), async () => ({ kind: "ack" })), isClosed);
  });
});
