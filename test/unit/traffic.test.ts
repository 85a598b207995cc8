import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LATENCY_BOUNDS_MS, OTHER, quantile, TrafficWindow, TrafficWindows, WINDOW_SECONDS } from "../../src/traffic/window.js";
import { ManualClock } from "../support/clock.js";

describe("TrafficWindow: the status page's last minute", () => {
  it("counts per second, oldest first, with the current second last", () => {
    const clock = new ManualClock(1_000_000);
    const w = new TrafficWindow(clock);
    w.record(true, 1);
    w.record(false, 1);
    clock.advance(1_000);
    w.record(true, 1);
    const s = w.snapshot();
    assert.equal(s.perSecond.length, WINDOW_SECONDS);
    assert.deepEqual(s.perSecond.slice(-2), [2, 1]);
    assert.deepEqual(s.failedPerSecond.slice(-2), [1, 0]);
    assert.equal(s.total, 3);
    assert.equal(s.failed, 1);
    assert.equal(s.success, 2 / 3);
    assert.equal(s.rate, 3 / 2, "per second since the first request, when under a minute");
  });

  it("forgets what is older than a minute, and a slot reused a minute later starts from zero", () => {
    const clock = new ManualClock(1_000_000);
    const w = new TrafficWindow(clock);
    for (let i = 0; i < 10; i++) w.record(false, 100);
    clock.advance(WINDOW_SECONDS * 1_000); // the same ring slot, one minute on
    w.record(true, 1);
    const s = w.snapshot();
    assert.equal(s.total, 1);
    assert.equal(s.failed, 0);
    assert.equal(s.rate, 1 / WINDOW_SECONDS, "over the whole minute once the window is full");
    assert.equal(s.perSecond.reduce((a, b) => a + b, 0), 1);
    clock.advance(WINDOW_SECONDS * 1_000);
    assert.deepEqual(w.snapshot(), { ...w.snapshot(), total: 0, success: null, p50Ms: null, p99Ms: null });
  });

  it("p50 and p99 come from the latency buckets, interpolated inside one", () => {
    const clock = new ManualClock();
    const w = new TrafficWindow(clock);
    for (let i = 0; i < 98; i++) w.record(true, 4); // bucket (3, 5]
    w.record(true, 400); // (250, 500]
    w.record(true, 400);
    const s = w.snapshot();
    assert.ok(s.p50Ms! > 3 && s.p50Ms! <= 5, String(s.p50Ms));
    assert.ok(s.p99Ms! > 250 && s.p99Ms! <= 500, String(s.p99Ms));
  });

  it("quantile: empty is null; the unbounded last bucket answers its lower bound", () => {
    const buckets = new Array<number>(LATENCY_BOUNDS_MS.length).fill(0);
    assert.equal(quantile(buckets, 0, 0.5), null);
    buckets[buckets.length - 1] = 5;
    assert.equal(quantile(buckets, 5, 0.99), LATENCY_BOUNDS_MS.at(-2));
  });
});

describe("TrafficWindows: a window per key, bounded", () => {
  it(`lists only keys with traffic in the last minute, sorted; past the bound new keys share '${OTHER}'`, () => {
    const clock = new ManualClock();
    const ws = new TrafficWindows(clock, 2);
    ws.record("b", true, 1);
    ws.record("a", true, 1);
    ws.record("c", true, 1);
    ws.record("d", false, 1);
    assert.deepEqual(ws.snapshot().map((t) => [t.key, t.total]), [["a", 1], ["b", 1], [OTHER, 2]]);
    assert.equal(ws.size, 3);
    ws.forget("a");
    clock.advance(WINDOW_SECONDS * 1_000);
    assert.deepEqual(ws.snapshot(), []);
  });
});
