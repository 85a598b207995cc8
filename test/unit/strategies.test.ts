import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { backoffDelay } from "../../src/outbound/backoff.js";
import { ManualClock } from "../support/clock.js";
import { silentLogger } from "../../src/log.js";
import type { NodeRecord } from "../../src/registry/types.js";
import { RetryBudget } from "../../src/selector/budget.js";
import { HashStrategy } from "../../src/selector/hash.js";
import { Selector, type SelectorOptions } from "../../src/selector/index.js";
import { LeastPending } from "../../src/selector/least-pending.js";
import { OutlierDetector } from "../../src/selector/outlier.js";
import { RandomStrategy } from "../../src/selector/random.js";

const node = (id: string): NodeRecord => ({
  id, service: "s", version: "1", address: "127.0.0.1:1", transport: "http",
  metadata: {}, endpoints: [], subscriptions: [], registeredAt: "",
});
const nodes = (...ids: string[]) => Object.freeze(ids.map(node));

/** A deterministic PRNG (mulberry32) so distribution tests do not flake. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function counts(pick: () => string, n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const id = pick();
    m.set(id, (m.get(id) ?? 0) + 1);
  }
  return m;
}

describe("random", () => {
  it("spreads calls evenly and never picks an excluded node", () => {
    const s = new RandomStrategy(seeded(1));
    const list = nodes("a", "b", "c", "d");
    const c = counts(() => s.pick(list, { exclude: new Set(["d"]) })!.id, 3000);
    assert.equal(c.get("d"), undefined);
    for (const id of ["a", "b", "c"]) assert.ok(Math.abs(c.get(id)! - 1000) < 120, `${id}: ${c.get(id)}`);
    assert.equal(s.pick(list, { exclude: new Set(["a", "b", "c", "d"]) }), undefined);
  });
});

describe("least_pending (power of two choices)", () => {
  it("prefers the idle node over a busy one", () => {
    const s = new LeastPending(seeded(2));
    const list = nodes("busy", "idle");
    const inFlight = (id: string) => (id === "busy" ? 10 : 0);
    const c = counts(() => s.pick(list, { inFlight })!.id, 200);
    assert.equal(c.get("idle"), 200);
  });

  it("never picks the most loaded of three nodes, and spreads over the others", () => {
    const s = new LeastPending(seeded(3));
    const list = nodes("a", "b", "c");
    const load: Record<string, number> = { a: 1, b: 1, c: 50 };
    const c = counts(() => s.pick(list, { inFlight: (id) => load[id]! })!.id, 3000);
    assert.equal(c.get("c"), undefined, "c loses every comparison it is drawn into");
    assert.ok(c.get("a")! > 1200 && c.get("b")! > 1200, JSON.stringify([...c]));
  });

  it("picks evenly among equally loaded nodes and honours exclusions", () => {
    const s = new LeastPending(seeded(4));
    const list = nodes("a", "b", "c");
    const c = counts(() => s.pick(list, { inFlight: () => 0, exclude: new Set(["b"]) })!.id, 2000);
    assert.equal(c.get("b"), undefined);
    assert.ok(c.get("a")! > 800 && c.get("c")! > 800, JSON.stringify([...c]));
  });
});

describe("hash (consistent hashing)", () => {
  const keys = Array.from({ length: 2000 }, (_, i) => `user-${i}`);

  it("is sticky: a key always lands on the same node, whatever the list order", () => {
    const s = new HashStrategy();
    const a = nodes("n1", "n2", "n3");
    const b = nodes("n3", "n1", "n2");
    for (const key of keys.slice(0, 200)) {
      const first = s.pick(a, { key })!.id;
      assert.equal(s.pick(a, { key })!.id, first);
      assert.equal(s.pick(b, { key })!.id, first);
    }
  });

  it("spreads keys over the nodes", () => {
    const s = new HashStrategy();
    const list = nodes("n1", "n2", "n3", "n4");
    let i = 0;
    const c = counts(() => s.pick(list, { key: keys[i++]! })!.id, keys.length);
    for (const id of ["n1", "n2", "n3", "n4"]) assert.ok(c.get(id)! > 350 && c.get(id)! < 650, `${id}: ${c.get(id)}`);
  });

  it("moves only the keys of a node that leaves, and about 1/n when one joins", () => {
    const s = new HashStrategy();
    const four = nodes("n1", "n2", "n3", "n4");
    const three = nodes("n1", "n2", "n3");
    const five = nodes("n1", "n2", "n3", "n4", "n5");
    let movedOnLeave = 0;
    let movedOnJoin = 0;
    for (const key of keys) {
      const before = s.pick(four, { key })!.id;
      const after = s.pick(three, { key })!.id;
      if (before !== "n4") assert.equal(after, before, "a key of a remaining node stays put");
      else movedOnLeave += 1;
      const joined = s.pick(five, { key })!.id;
      if (joined !== before) {
        movedOnJoin += 1;
        assert.equal(joined, "n5", "keys move only to the new node");
      }
    }
    assert.ok(movedOnLeave > 350 && movedOnLeave < 650, `moved ${movedOnLeave} on leave`);
    assert.ok(movedOnJoin > 250 && movedOnJoin < 550, `moved ${movedOnJoin} of ${keys.length} on join (ideal 400)`);
  });

  it("skips an excluded node to the next one on the ring, and rotates when there is no key", () => {
    const s = new HashStrategy();
    const list = nodes("n1", "n2", "n3");
    const home = s.pick(list, { key: "k" })!.id;
    const next = s.pick(list, { key: "k", exclude: new Set([home]) })!.id;
    assert.notEqual(next, home);
    assert.equal(s.pick(list, { key: "k", exclude: new Set(["n1", "n2", "n3"]) }), undefined);
    assert.deepEqual([1, 2, 3].map(() => s.pick(list)!.id), ["n1", "n2", "n3"]);
  });
});

describe("outlier ejection", () => {
  const opts = { consecutiveFailures: 3, ejectFor: 10_000, maxEjectFor: 25_000 };
  const live = ["a", "b", "c"];

  it("ejects after N failures in a row, for ejectFor, then lets the node back", () => {
    const clock = new ManualClock();
    const ejections: [string, number][] = [];
    const o = new OutlierDetector(opts, clock, (id, ms) => ejections.push([id, ms]));
    o.failure("a", live);
    o.failure("a", live);
    o.success("a");
    o.failure("a", live);
    o.failure("a", live);
    assert.equal(o.isEjected("a"), false, "a success resets the count");
    o.failure("a", live);
    assert.equal(o.isEjected("a"), true);
    assert.deepEqual(ejections, [["a", 10_000]]);
    assert.deepEqual([...o.ejected(live)], ["a"]);
    clock.advance(9_999);
    assert.equal(o.isEjected("a"), true);
    clock.advance(1);
    assert.equal(o.isEjected("a"), false);
  });

  it("doubles the ejection on repeat, capped at maxEjectFor, and forgets after a success", () => {
    const clock = new ManualClock();
    const lengths: number[] = [];
    const o = new OutlierDetector(opts, clock, (_id, ms) => lengths.push(ms));
    const failN = () => {
      for (let i = 0; i < 3; i++) o.failure("a", live);
    };
    failN();
    clock.advance(10_000);
    failN();
    clock.advance(20_000);
    failN();
    assert.deepEqual(lengths, [10_000, 20_000, 25_000]);
    clock.advance(25_000);
    o.success("a");
    failN();
    assert.deepEqual(lengths, [10_000, 20_000, 25_000, 10_000]);
  });

  it("never ejects the last node standing", () => {
    const clock = new ManualClock();
    const o = new OutlierDetector(opts, clock);
    for (let i = 0; i < 3; i++) o.failure("only", ["only"]);
    assert.equal(o.isEjected("only"), false);
    for (let i = 0; i < 3; i++) o.failure("a", ["a", "b"]);
    for (let i = 0; i < 3; i++) o.failure("b", ["a", "b"]);
    assert.equal(o.isEjected("a"), true);
    assert.equal(o.isEjected("b"), false, "b is the last one not ejected");
  });
});

describe("retry budget", () => {
  it("allows retries up to ratio × calls plus the floor, within the window", () => {
    const clock = new ManualClock();
    const b = new RetryBudget({ ratio: 0.2, minPerSecond: 0, window: 10_000 }, clock);
    for (let i = 0; i < 100; i++) b.recordCall();
    let allowed = 0;
    for (let i = 0; i < 50; i++) if (b.tryRetry()) allowed += 1;
    assert.equal(allowed, 20);
    // The window slides: after it, old calls and retries no longer count.
    clock.advance(11_000);
    assert.equal(b.tryRetry(), false);
    for (let i = 0; i < 10; i++) b.recordCall();
    assert.equal(b.tryRetry(), true);
    assert.equal(b.tryRetry(), true);
    assert.equal(b.tryRetry(), false);
  });

  it("lets a quiet service retry a little (the floor)", () => {
    const b = new RetryBudget({ ratio: 0.2, minPerSecond: 1, window: 10_000 }, new ManualClock());
    let allowed = 0;
    for (let i = 0; i < 30; i++) if (b.tryRetry()) allowed += 1;
    assert.equal(allowed, 10);
  });
});

describe("backoff", () => {
  it("is exponential with full jitter, capped", () => {
    assert.equal(backoffDelay(0, () => 0.999999), 25);
    assert.equal(backoffDelay(3, () => 0.999999), 200);
    assert.equal(backoffDelay(10, () => 0.999999), 1000);
    assert.equal(backoffDelay(5, () => 0), 0);
    assert.equal(backoffDelay(2, () => 0.5), 50);
  });
});

describe("Selector", () => {
  const options: SelectorOptions = {
    strategy: "round_robin", hashHeader: "x-sidecar-hash-key", consecutiveFailures: 2, ejectFor: 1000, maxEjectFor: 5000,
    retryBudget: 0.2, minRetriesPerSecond: 1, services: { sticky: { strategy: "hash", hashHeader: "X-User" } },
  };

  it("keeps one balancer per service, with per-service strategy overrides", () => {
    const sel = new Selector(options, new ManualClock(), silentLogger());
    const list = nodes("a", "b");
    assert.equal(sel.service("x").pick(list, new Set())!.id, "a");
    assert.equal(sel.service("y").pick(list, new Set())!.id, "a");
    assert.equal(sel.service("x").pick(list, new Set())!.id, "b");
    assert.equal(sel.service("sticky").hashHeader, "x-user");
    const first = sel.service("sticky").pick(list, new Set(), "u1")!.id;
    for (let i = 0; i < 5; i++) assert.equal(sel.service("sticky").pick(list, new Set(), "u1")!.id, first);
  });

  it("routes around an ejected node, tracks calls in flight, and reports node state", () => {
    const clock = new ManualClock();
    const sel = new Selector(options, clock, silentLogger());
    const b = sel.service("svc");
    const list = nodes("a", "b");
    for (let i = 0; i < 2; i++) {
      b.start("a");
      b.end("a", "failure", list);
    }
    assert.equal(sel.state("svc", "a")!.ejected, true);
    for (let i = 0; i < 4; i++) assert.equal(b.pick(list, new Set())!.id, "b");
    b.start("b");
    assert.equal(sel.state("svc", "b")!.inFlight, 1);
    clock.advance(1000);
    assert.equal(sel.state("svc", "a")!.ejected, false);
    assert.equal(sel.state("never", "a"), undefined);
  });

  it("rejects an unknown strategy, listing the known ones", () => {
    assert.throws(() => new Selector({ ...options, strategy: "nope" as "hash" }, new ManualClock(), silentLogger()), /unknown selector strategy 'nope' for \* \(known: round_robin, random, least_pending, hash\)/);
  });
});
