import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import winston from "winston";
import { InProcessDeliveries, messageBytes } from "../../src/broker/in-process.js";
import type { Delivery, Outcome, SubscriptionSpec } from "../../src/broker/types.js";

const spec = { name: "burst", topic: "t", path: "/in", maxInFlight: 1, timeout: 1000, retry: { attempts: 1, initial: 10, max: 10 } } as unknown as SubscriptionSpec;
const message = (n: number): Delivery => ({ id: `m${n}`, topic: "t", body: Buffer.from(String(n)), headers: {}, attempt: 1 });

function capture(): { log: winston.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new PassThrough();
  stream.on("data", (c: Buffer) => lines.push(JSON.parse(c.toString()) as Record<string, unknown>));
  return { log: winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] }), lines };
}

describe("in-process deliveries (core NATS, local broker)", () => {
  it("past the queue limit, new messages are dropped and logged once per interval; queued ones are all delivered in order", async () => {
    const { log, lines } = capture();
    const seen: string[] = [];
    let release: (() => void) | undefined;
    const deliver = (d: Delivery): Promise<Outcome> => {
      seen.push(d.id);
      return new Promise((r) => (release = () => r({ kind: "ack" })));
    };
    const q = new InProcessDeliveries(spec, deliver, log, { messages: 2, bytes: 1024 });
    const taken = Array.from({ length: 6 }, (_, n) => q.push(message(n)));
    // One in flight, two waiting, three dropped.
    assert.deepEqual(taken, [true, true, true, false, false, false]);
    assert.equal(q.dropped, 3, "counted for /subscriptions and sidecar_messages_dropped_total");
    await new Promise((r) => setImmediate(r));
    const full = lines.filter((l) => String(l.message).startsWith("subscription queue full"));
    assert.equal(full.length, 1, "one line for the burst, not one per message");
    assert.equal(full[0]!.level, "error");
    assert.equal(full[0]!.id, "m3");
    assert.equal(full[0]!.queued, 2);
    assert.deepEqual(full[0]!.limits, { messages: 2, bytes: 1024 });
    for (let i = 0; i < 3; i++) {
      release!();
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(seen, ["m0", "m1", "m2"]);
    // Room again: a new message is taken.
    assert.equal(q.push(message(9)), true);
    assert.equal(q.push(message(10)), true);
    // Stopping with one in flight (never answered) and one queued: the queued one is lost, and counted.
    await q.stop(50);
    assert.equal(q.dropped, 4);
    assert.ok(lines.some((l) => l.message === "subscription stopped with a message not delivered; dropped (at-most-once)" && l.id === "m10"));
  });

  it("the queue is bounded in bytes too: a large message that does not fit is dropped, smaller ones still queue", async () => {
    const { log, lines } = capture();
    const never = (): Promise<Outcome> => new Promise(() => undefined);
    const q = new InProcessDeliveries(spec, never, log, { messages: 100, bytes: 16 });
    const sized = (n: number, bytes: number): Delivery => ({ ...message(n), body: Buffer.alloc(bytes) });
    // The first goes in flight at once (not queued); then (6 + 3) + (4 + 3) bytes fill the queue
    // (each message also costs its id "mN" and topic "t").
    assert.deepEqual([sized(0, 50), sized(1, 6), sized(2, 4), sized(3, 1)].map((d) => q.push(d)), [true, true, true, false]);
    assert.equal(q.dropped, 1);
    await new Promise((r) => setImmediate(r));
    assert.equal(lines.find((l) => String(l.message).startsWith("subscription queue full"))?.queuedBytes, 16);
    await q.stop(10);
    assert.equal(q.dropped, 3, "the two still queued at stop are lost too");
  });

  it("header bytes count against the byte limit: 1-byte bodies with large x-sidecar-* headers cannot fill memory past it", async () => {
    const { log, lines } = capture();
    const never = (): Promise<Outcome> => new Promise(() => undefined);
    const header = "h".repeat(12 * 1024);
    const heavy = (n: number): Delivery => ({ ...message(n), body: Buffer.from("x"), headers: { "x-sidecar-blob": header } });
    const one = messageBytes(heavy(1));
    assert.equal(one, 1 + "t".length + "m1".length + "x-sidecar-blob".length + header.length, "body, topic, id, header names and values");
    // A header repeated on NATS arrives as a list of values: all of them count.
    const repeated = { ...message(1), headers: { "x-sidecar-blob": ["a".repeat(100), "b".repeat(100)] as unknown as string } };
    assert.ok(messageBytes(repeated) >= 1 + 3 + "x-sidecar-blob".length + 200);
    // Room for 4 such messages; counting bodies only, 100 of them would have fitted in 100 bytes.
    const q = new InProcessDeliveries(spec, never, log, { messages: 1_000, bytes: one * 4 });
    const taken = Array.from({ length: 100 }, (_, n) => q.push(heavy(n)));
    // One in flight, four queued, the rest dropped.
    assert.equal(taken.filter(Boolean).length, 5);
    assert.equal(q.dropped, 95);
    await new Promise((r) => setImmediate(r));
    const full = lines.find((l) => String(l.message).startsWith("subscription queue full"));
    assert.equal(full?.queuedBytes, one * 4);
    await q.stop(10);
  });
});
