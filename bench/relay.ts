/**
 * The subscription relay: messages published to NATS, delivered by a sidecar to an app that
 * answers 204 at once, with 1 and 64 deliveries in flight, for core NATS, JetStream, RabbitMQ and Redis Streams.
 * Real servers (Debian's nats-server, rabbitmq-server and redis-server) on loopback; every run is bounded by its message count.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { randomUUID } from "node:crypto";
import amqp from "amqplib";
import { Redis } from "ioredis";
import { encodeEntry } from "../src/broker/redis/entries.js";
import { RedisServer } from "../test/support/redis.js";
import { NatsServer } from "../test/support/nats.js";
import { RabbitServer } from "../test/support/rabbitmq.js";
import { cpuSeconds, startPrinting, startSidecar } from "./lib.js";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 10_000);

interface RelayResult {
  name: string;
  inFlight: number;
  rate: number;
  seconds: number;
  /** CPU µs per message of the relay, nats-server and the app while the messages went through. */
  cpu: { relay: number; nats: number; app: number };
}

/** CPU time of the three processes from now until `stop()`, in µs per message. */
function cpuMeter(relayPid: number, natsPid: number, appPid: number): () => RelayResult["cpu"] {
  const read = () => [cpuSeconds(relayPid), cpuSeconds(natsPid), cpuSeconds(appPid)] as const;
  const start = read();
  return () => {
    const end = read();
    const per = (i: 0 | 1 | 2) => ((end[i] - start[i]) * 1e6) / MESSAGES;
    return { relay: per(0), nats: per(1), app: per(2) };
  };
}


async function count(port: number): Promise<{ count: number; last: number }> {
  return (await (await fetch(`http://127.0.0.1:${port}/count`)).json()) as { count: number; last: number };
}

async function waitForCount(port: number, n: number): Promise<{ count: number; last: number }> {
  const deadline = Date.now() + 120_000;
  let c = await count(port);
  while (c.count < n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    c = await count(port);
  }
  if (c.count < n) throw new Error(`only ${c.count} of ${n} delivered`);
  return c;
}

/**
 * Core NATS: the subscriber runs, the messages are published in one burst, the clock runs from
 * the first publish to the last delivery. JetStream: the messages are stored first (subscriber
 * stopped), then the subscriber starts and the clock runs from its subscription to the last
 * delivery, so only the relay is measured.
 */
async function runCase(nats: NatsServer, durable: boolean, inFlight: number, tmp: string): Promise<RelayResult> {
  const app = await startPrinting("bench/count-app.mjs", []);
  const topic = `bench.${durable ? "js" : "core"}.m${inFlight}`;
  const settings = [
    `service.name=relay-${durable ? "js" : "core"}-${inFlight}`, `app.port=${app.port}`, "app.health.path=/health", "api.port=0", "inbound.host=127.0.0.1", "inbound.port=0",
    `nats.servers=${nats.url}`, `registry.dir=${tmp}`, `subscriptions=${JSON.stringify([{ topic, path: "/in", durable, maxInFlight: inFlight }])}`,
  ];
  const nc = await connect({ servers: nats.url });
  const body = new TextEncoder().encode(JSON.stringify({ hello: "world" }));
  let sidecar = await startSidecar(settings, "subscribed");
  try {
    let t0: number;
    let meter: () => RelayResult["cpu"];
    if (durable) {
      sidecar.proc.kill("SIGTERM");
      await new Promise((r) => sidecar.proc.once("exit", r));
      const js = jetstream(nc);
      for (let i = 0; i < MESSAGES; i += 200) await Promise.all(Array.from({ length: Math.min(200, MESSAGES - i) }, () => js.publish(topic, body)));
      sidecar = await startSidecar(settings, "subscribed");
      meter = cpuMeter(sidecar.proc.pid!, nats.pid!, app.proc.pid!);
      t0 = Date.now();
    } else {
      meter = cpuMeter(sidecar.proc.pid!, nats.pid!, app.proc.pid!);
      t0 = Date.now();
      for (let i = 0; i < MESSAGES; i++) nc.publish(topic, body);
      await nc.flush();
    }
    const c = await waitForCount(app.port, MESSAGES);
    const seconds = (c.last - t0) / 1000;
    return { name: durable ? "JetStream (durable: true)" : "core NATS (durable: false)", inFlight, rate: MESSAGES / seconds, seconds, cpu: meter() };
  } finally {
    await nc.close();
    sidecar.proc.kill("SIGTERM");
    app.proc.kill("SIGTERM");
  }
}

/** The same case through bench/minimal-relay.mjs (the floor), measured the same way. */
async function runFloor(nats: NatsServer, durable: boolean, inFlight: number): Promise<RelayResult> {
  const app = await startPrinting("bench/count-app.mjs", []);
  const topic = `bench.floor.${durable ? "js" : "core"}.m${inFlight}`;
  const nc = await connect({ servers: nats.url });
  const body = new TextEncoder().encode(JSON.stringify({ hello: "world" }));
  const stream = `FLOOR_M${inFlight}`;
  let relay: Awaited<ReturnType<typeof startPrinting>> | undefined;
  try {
    let t0: number;
    let meter: () => RelayResult["cpu"];
    if (durable) {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: stream, subjects: [topic] });
      const js = jetstream(nc);
      for (let i = 0; i < MESSAGES; i += 200) await Promise.all(Array.from({ length: Math.min(200, MESSAGES - i) }, () => js.publish(topic, body)));
      relay = await startPrinting("bench/minimal-relay.mjs", [nats.url, "js", topic, String(app.port), String(inFlight), stream]);
      meter = cpuMeter(relay.proc.pid!, nats.pid!, app.proc.pid!);
      t0 = Date.now();
    } else {
      relay = await startPrinting("bench/minimal-relay.mjs", [nats.url, "core", topic, String(app.port), String(inFlight)]);
      meter = cpuMeter(relay.proc.pid!, nats.pid!, app.proc.pid!);
      t0 = Date.now();
      for (let i = 0; i < MESSAGES; i++) nc.publish(topic, body);
      await nc.flush();
    }
    const c = await waitForCount(app.port, MESSAGES);
    const seconds = (c.last - t0) / 1000;
    return { name: `floor: minimal relay, ${durable ? "JetStream" : "core NATS"}`, inFlight, rate: MESSAGES / seconds, seconds, cpu: meter() };
  } finally {
    await nc.close();
    relay?.proc.kill("SIGTERM");
    app.proc.kill("SIGTERM");
  }
}

/**
 * RabbitMQ, as JetStream: the sidecar declares its durable queue and stops, the messages are
 * published (persistent, confirmed) into the queue, then the sidecar starts and the clock runs
 * from its subscription to the last delivery. The broker column is RabbitMQ's Erlang VM.
 */
async function runRabbit(rabbit: RabbitServer, inFlight: number, tmp: string): Promise<RelayResult> {
  const app = await startPrinting("bench/count-app.mjs", []);
  const topic = `bench.amqp.m${inFlight}`;
  const settings = [
    `service.name=relay-amqp-${inFlight}`, `app.port=${app.port}`, "app.health.path=/health", "api.port=0", "inbound.host=127.0.0.1", "inbound.port=0",
    "broker.kind=rabbitmq", `rabbitmq.url=${rabbit.url}`, `registry.dir=${tmp}`, `subscriptions=${JSON.stringify([{ topic, path: "/in", durable: true, maxInFlight: inFlight }])}`,
  ];
  let sidecar = await startSidecar(settings, "subscribed");
  const model = await amqp.connect(rabbit.url);
  try {
    sidecar.proc.kill("SIGTERM");
    await new Promise((r) => sidecar.proc.once("exit", r));
    const channel = await model.createConfirmChannel();
    const body = Buffer.from(JSON.stringify({ hello: "world" }));
    for (let i = 0; i < MESSAGES; i += 200) {
      for (let j = i; j < Math.min(i + 200, MESSAGES); j++) channel.publish("sidecar", topic, body, { persistent: true, contentType: "application/json" });
      await channel.waitForConfirms();
    }
    sidecar = await startSidecar(settings, "subscribed");
    const meter = cpuMeter(sidecar.proc.pid!, rabbit.vmPid!, app.proc.pid!);
    const t0 = Date.now();
    const c = await waitForCount(app.port, MESSAGES);
    const seconds = (c.last - t0) / 1000;
    return { name: "RabbitMQ (durable: true)", inFlight, rate: MESSAGES / seconds, seconds, cpu: meter() };
  } finally {
    await model.close().catch(() => undefined);
    sidecar.proc.kill("SIGTERM");
    app.proc.kill("SIGTERM");
  }
}

/** Redis Streams, as RabbitMQ: the group is made by a first start, the entries added, then the clock runs from the second start. */
async function runRedis(redis: RedisServer, inFlight: number, tmp: string): Promise<RelayResult> {
  const app = await startPrinting("bench/count-app.mjs", []);
  const topic = `bench.redis.m${inFlight}`;
  const settings = [
    `service.name=relay-redis-${inFlight}`, `app.port=${app.port}`, "app.health.path=/health", "api.port=0", "inbound.host=127.0.0.1", "inbound.port=0",
    "broker.kind=redis", `redis.url=${redis.url}`, `registry.dir=${tmp}`, `subscriptions=${JSON.stringify([{ topic, path: "/in", durable: true, maxInFlight: inFlight }])}`,
  ];
  let sidecar = await startSidecar(settings, "subscribed");
  const client = new Redis(redis.url, { lazyConnect: true });
  try {
    await client.connect();
    sidecar.proc.kill("SIGTERM");
    await new Promise((r) => sidecar.proc.once("exit", r));
    const body = Buffer.from(JSON.stringify({ hello: "world" }));
    for (let i = 0; i < MESSAGES; i += 200) {
      const batch = client.pipeline();
      for (let j = i; j < Math.min(i + 200, MESSAGES); j++) batch.xadd(`sidecar:${topic}`, "*", ...encodeEntry(randomUUID(), { "content-type": "application/json" }, body));
      await batch.exec();
    }
    sidecar = await startSidecar(settings, "subscribed");
    const meter = cpuMeter(sidecar.proc.pid!, redis.pid!, app.proc.pid!);
    const t0 = Date.now();
    const c = await waitForCount(app.port, MESSAGES);
    const seconds = (c.last - t0) / 1000;
    return { name: "Redis Streams (durable: true)", inFlight, rate: MESSAGES / seconds, seconds, cpu: meter() };
  } finally {
    client.disconnect();
    sidecar.proc.kill("SIGTERM");
    app.proc.kill("SIGTERM");
  }
}

export async function relayBench(): Promise<string[]> {
  const nats = await NatsServer.start();
  const tmp = mkdtempSync(path.join(os.tmpdir(), "sidecar-bench-relay-"));
  const results: RelayResult[] = [];
  try {
    for (const durable of [false, true]) {
      for (const inFlight of [1, 64]) results.push(await runCase(nats, durable, inFlight, tmp));
      for (const inFlight of [1, 64]) results.push(await runFloor(nats, durable, inFlight));
    }
    const rabbit = await RabbitServer.start();
    try {
      for (const inFlight of [1, 64]) results.push(await runRabbit(rabbit, inFlight, tmp));
    } finally {
      await rabbit.stop();
    }
    const redis = await RedisServer.start();
    try {
      for (const inFlight of [1, 64]) results.push(await runRedis(redis, inFlight, tmp));
    } finally {
      await redis.stop();
    }
  } finally {
    await nats.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  const lines = [
    `## Subscription relay (${MESSAGES} messages, app answers 204 at once)`,
    "",
    "Core NATS: published in one burst while the sidecar is subscribed; the rate counts from the first publish to the last delivery. JetStream, RabbitMQ and Redis: stored first, then the sidecar starts; the rate counts from its subscription to the last delivery (the relay alone). RabbitMQ and Redis have no minimal relay of their own: their ÷ floor is against the JetStream floor. Redis runs with appendfsync always, as in the tests.",
    "",
    "| relay | in flight | messages/s | vs 1 in flight | ÷ floor | seconds | CPU µs/message: relay | broker server | app | all three |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    const one = results.find((x) => x.name === r.name && x.inFlight === 1)!;
    const isFloor = r.name.startsWith("floor");
    // RabbitMQ has no floor of its own: its ÷ floor column is against the JetStream floor (both durable, stored first).
    const floor = results.find((x) => x.name.startsWith("floor") && x.inFlight === r.inFlight && x.name.includes(r.name.includes("core") ? "core" : "JetStream"));
    lines.push(`| ${r.name} | ${r.inFlight} | ${Math.round(r.rate)} | ${(r.rate / one.rate).toFixed(1)}× | ${isFloor || !floor ? "" : (r.rate / floor.rate).toFixed(2)} | ${r.seconds.toFixed(2)} | ${Math.round(r.cpu.relay)} | ${Math.round(r.cpu.nats)} | ${Math.round(r.cpu.app)} | ${Math.round(r.cpu.relay + r.cpu.nats + r.cpu.app)} |`);
  }
  const at = (kind: string, n: number) => results.find((x) => !x.name.startsWith("floor") && x.name.includes(kind) && x.inFlight === n)!;
  const floorAt = (kind: string, n: number) => results.find((x) => x.name.startsWith("floor") && x.name.includes(kind) && x.inFlight === n)!;
  const check = (ok: boolean) => (ok ? "holds" : "**misses**");
  lines.push(
    "",
    "The floor (`bench/minimal-relay.mjs`) is a bare subscription that POSTs each message over a keep-alive agent and acks after a 2xx: no retries, headers or health.",
    "",
    "Targets (issue 6):",
    "",
    `- core NATS at 64 in flight: ${Math.round(at("core", 64).rate)}/s (target ≥ 10,000): ${check(at("core", 64).rate >= 10_000)}`,
    `- JetStream at 64 in flight: ${Math.round(at("JetStream", 64).rate)}/s (target ≥ 5,000): ${check(at("JetStream", 64).rate >= 5_000)}`,
    `- JetStream 64 in flight ÷ 1 in flight: ${(at("JetStream", 64).rate / at("JetStream", 1).rate).toFixed(1)}× (target ≥ 5×): ${check(at("JetStream", 64).rate / at("JetStream", 1).rate >= 5)}; the floor's own ratio in this run: ${(floorAt("JetStream", 64).rate / floorAt("JetStream", 1).rate).toFixed(1)}×`,
    "",
    "Targets (issue 17):",
    "",
    `- JetStream at 64 in flight ÷ the bare relay (floor) at 64: ${(at("JetStream", 64).rate / floorAt("JetStream", 64).rate).toFixed(2)} (target ≥ 0.9): ${check(at("JetStream", 64).rate >= 0.9 * floorAt("JetStream", 64).rate)}`,
    `- core NATS at 64 in flight ÷ the bare relay (floor) at 64: ${(at("core", 64).rate / floorAt("core", 64).rate).toFixed(2)} (target ≥ 0.9): ${check(at("core", 64).rate >= 0.9 * floorAt("core", 64).rate)}`,
    "",
    "At 1 in flight each message crosses nats-server, the relay and the app one after the other, so the rate is one over their summed per-message time; at 64 in flight the three share the machine's cores, so the rate is at most cores ÷ their summed CPU per message (the last column). The ratio of the two is bounded by the machine, whatever the relay does: read it against the floor's.",
    "",
  );
  return lines;
}
