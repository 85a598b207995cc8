import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { NodeRecord } from "../../src/registry/types.js";
import { RoundRobin } from "../../src/selector/round-robin.js";

const node = (id: string): NodeRecord => ({
  id, service: "s", version: "1", address: `127.0.0.1:${id.length}`, transport: "http",
  metadata: {}, endpoints: [], subscriptions: [], registeredAt: "",
});

describe("round robin", () => {
  it("rotates across calls, each node in turn", () => {
    const rr = new RoundRobin();
    const nodes = [node("a"), node("b"), node("c")];
    assert.deepEqual(Array.from({ length: 7 }, () => rr.pick(nodes)!.id), ["a", "b", "c", "a", "b", "c", "a"]);
  });

  it("skips excluded (already tried) nodes and returns undefined when all are excluded", () => {
    const rr = new RoundRobin();
    const nodes = [node("a"), node("b"), node("c")];
    assert.equal(rr.pick(nodes, { exclude: new Set(["a"]) })!.id, "b");
    assert.equal(rr.pick(nodes, { exclude: new Set(["c"]) })!.id, "a");
    assert.equal(rr.pick(nodes, { exclude: new Set(["a", "b", "c"]) }), undefined);
  });

  it("keeps rotating fairly when the node set changes", () => {
    const rr = new RoundRobin();
    const three = [node("a"), node("b"), node("c")];
    rr.pick(three);
    rr.pick(three);
    const two = [node("a"), node("c")];
    const counts = new Map<string, number>();
    for (let i = 0; i < 10; i++) {
      const id = rr.pick(two)!.id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(counts), { a: 5, c: 5 });
  });

  it("returns undefined for an empty node list", () => {
    assert.equal(new RoundRobin().pick([]), undefined);
  });

});
