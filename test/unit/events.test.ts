import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EventHub } from "../../src/events/hub.js";
import { sseFrame } from "../../src/events/stream.js";

describe("EventHub", () => {
  it("numbers events from 1 and keeps only the last `capacity`", () => {
    const hub = new EventHub(3);
    for (let i = 0; i < 5; i++) hub.emit({ type: "app-unhealthy", reason: `r${i}` });
    assert.equal(hub.seq, 5);
    assert.deepEqual(hub.recent().map((e) => e.seq), [5, 4, 3]);
    assert.deepEqual(hub.since(0).events.map((e) => e.seq), [3, 4, 5]);
    assert.equal(hub.since(0).lagged, 2, "events 1 and 2 are no longer kept");
    assert.deepEqual(hub.since(4), { events: [hub.recent(1)[0]], lagged: 0 });
    assert.ok(!Number.isNaN(Date.parse(hub.recent(1)[0]!.time)));
  });

  it("an iterator yields events in order and ends after close(), once drained", async () => {
    const hub = new EventHub();
    const it = hub.events();
    hub.emit({ type: "app-healthy" });
    hub.emit({ type: "draining" });
    hub.close();
    hub.emit({ type: "stopped" }); // after close: nothing
    const got: string[] = [];
    for await (const e of it) got.push(e.type);
    assert.deepEqual(got, ["app-healthy", "draining"]);
  });

  it("a reader waiting on next() is woken by the next event", async () => {
    const hub = new EventHub();
    const it = hub.events();
    const next = it.next();
    hub.emit({ type: "app-healthy" });
    assert.equal((await next).value?.type, "app-healthy");
  });

  it("replay starts with the kept events; without it, only new ones", async () => {
    const hub = new EventHub();
    hub.emit({ type: "app-healthy" });
    const replayed = hub.events({ replay: true });
    const fresh = hub.events();
    hub.emit({ type: "draining" });
    hub.close();
    const types = async (it: AsyncIterable<{ type: string }>) => {
      const out: string[] = [];
      for await (const e of it) out.push(e.type);
      return out;
    };
    assert.deepEqual(await types(replayed), ["app-healthy", "draining"]);
    assert.deepEqual(await types(fresh), ["draining"]);
  });

  it("a reader more than its buffer behind gets one lagged event with the count, then the newest", async () => {
    const hub = new EventHub();
    const it = hub.events({ buffer: 4 });
    for (let i = 0; i < 10; i++) hub.emit({ type: "app-unhealthy", reason: String(i) });
    hub.close();
    const got: unknown[] = [];
    for await (const e of it) got.push(e.type === "lagged" ? `lagged ${e.dropped}` : e.type === "app-unhealthy" ? e.reason : e.type);
    assert.deepEqual(got, ["lagged 6", "6", "7", "8", "9"]);
  });

  it("return() unsubscribes: later events are not buffered for a reader that left", async () => {
    const hub = new EventHub();
    const it = hub.events();
    await it.return!();
    hub.emit({ type: "app-healthy" });
    assert.deepEqual(await it.next(), { value: undefined, done: true });
  });

  it("an iterator made after close() is already done", async () => {
    const hub = new EventHub();
    hub.close();
    assert.deepEqual(await hub.events().next(), { value: undefined, done: true });
  });

  it("a listener that throws does not stop the others or the emitter", () => {
    const hub = new EventHub();
    const got: number[] = [];
    hub.listen(() => {
      throw new Error("bug");
    });
    hub.listen((e) => got.push(e.seq));
    hub.emit({ type: "app-healthy" });
    assert.deepEqual(got, [1]);
  });
});

describe("sseFrame (text/event-stream)", () => {
  it("writes id (the seq), event (the type) and one data line of JSON, ended by a blank line", () => {
    const frame = sseFrame({ type: "app-unhealthy", reason: "line1\nline2", seq: 7, time: "2026-01-01T00:00:00.000Z" });
    assert.equal(frame, `id: 7\nevent: app-unhealthy\ndata: {"type":"app-unhealthy","reason":"line1\\nline2","seq":7,"time":"2026-01-01T00:00:00.000Z"}\n\n`);
  });

  it("a lagged event carries no id (it is not one of the sidecar's numbered events)", () => {
    assert.equal(sseFrame({ type: "lagged", dropped: 3 }), `event: lagged\ndata: {"type":"lagged","dropped":3}\n\n`);
  });
});
