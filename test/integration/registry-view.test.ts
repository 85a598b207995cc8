import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/log.js";
import { LocalRegistry } from "../../src/registry/local.js";
import type { NodeRecord } from "../../src/registry/types.js";
import { RegistryView } from "../../src/registry/view.js";
import { waitFor } from "../support/sidecar.js";

/** The view's own rules for what it watches (scope "called"), on a real registry: the local one, in a temp directory. */
describe("registry view: watch what you call", () => {
  const log = silentLogger();
  let dir: string;
  let registry: LocalRegistry;
  const node = (service: string, id: string): NodeRecord => ({ id, service, version: "1", address: "127.0.0.1:1", transport: "http", metadata: {}, endpoints: [], subscriptions: [], registeredAt: new Date().toISOString() });
  const views: RegistryView[] = [];
  const view = async (o: Partial<ConstructorParameters<typeof RegistryView>[1]> = {}) => {
    const v = new RegistryView(registry, { ttl: 60_000, ...o }, log);
    views.push(v);
    await v.start();
    return v;
  };
  const watched = (v: RegistryView) => v.watched().map((w) => w.service);

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-view-"));
    registry = await LocalRegistry.open({ dir, ttl: 60_000 }, log);
    for (const s of ["a", "b", "c", "p"]) await registry.register(node(s, `${s}-1`));
    await registry.register(node("a.b", "ab-1"));
  });

  after(async () => {
    await Promise.all(views.map((v) => v.close()));
    await registry.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("watches nothing until asked; the first want() waits for the service's listing, later ones return nothing to wait for", async () => {
    const v = await view();
    assert.deepEqual(watched(v), []);
    assert.deepEqual(v.nodes("a"), [], "not watched: nothing known");
    const pending = v.want("a");
    assert.ok(pending, "the first use has a listing to wait for");
    await pending;
    assert.deepEqual(v.nodes("a").map((n) => n.id), ["a-1"], "a's node, not a.b's (a key prefix of another service)");
    assert.equal(v.known("a"), true);
    assert.equal(v.want("a"), undefined, "watched: the hot path waits for nothing");
    assert.deepEqual(watched(v), ["a"]);
    assert.deepEqual(v.nodes("b"), [], "b was never used: not watched");
  });

  it("a name with no node: the listing is empty, and the service unknown (not an endless wait)", async () => {
    const v = await view();
    await v.want("nobody");
    assert.equal(v.known("nobody"), false);
    assert.deepEqual(watched(v), ["nobody"]);
  });

  it("at most maxWatched services: one more drops the least recently used (not a pinned one), and forgets it", async () => {
    const v = await view({ maxWatched: 3, pinned: ["p"] });
    const forgotten: string[] = [];
    v.onForget((s) => forgotten.push(s));
    assert.deepEqual(watched(v), ["p"], "pinned: watched from the start");
    assert.equal(v.known("p"), true, "and listed before any use");
    await v.want("a");
    await v.want("b");
    await v.want("c");
    assert.deepEqual(watched(v), ["b", "c", "p"]);
    assert.deepEqual(forgotten, ["a"]);
    assert.deepEqual(v.nodes("a"), [], "a dropped: its nodes with it");
  });

  it("names nobody registered are dropped before services with nodes, however recently used", async () => {
    const v = await view({ maxWatched: 3 });
    await v.want("a");
    for (let i = 0; i < 10; i++) await v.want(`nobody-${i}`);
    assert.deepEqual(watched(v), ["a", "nobody-8", "nobody-9"], "a flood of unknown names churns among itself");
    assert.equal(v.want("a"), undefined, "a is still watched: its next call waits for nothing");
  });

  it("a service unused for idleWatch is no longer watched and is forgotten; a pinned one stays; the next use lists it again", async () => {
    const v = await view({ idleWatch: 150, pinned: ["p"], ttl: 600 });
    const forgotten: string[] = [];
    v.onForget((s) => forgotten.push(s));
    await v.want("a");
    await waitFor(() => !watched(v).includes("a"), "the idle watch of a to close", 5_000);
    assert.deepEqual(forgotten, ["a"]);
    assert.deepEqual(watched(v), ["p"], "the pinned service stays");
    assert.ok(v.want("a"), "used again: listed again");
    await v.want("a");
    assert.deepEqual(v.nodes("a").map((n) => n.id), ["a-1"]);
  });

  it("a service in use is kept however long: each use since the last sweep counts", async () => {
    const v = await view({ idleWatch: 150, ttl: 600 });
    await v.want("b");
    const t0 = Date.now();
    // Used every 50 ms for four idle periods: never dropped.
    while (Date.now() - t0 < 600) {
      assert.equal(v.want("b"), undefined, "still watched");
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(watched(v), ["b"]);
  });

  it("after close(), want() rejects: nothing is watched by a closed view", async () => {
    const v = await view();
    await v.close();
    await assert.rejects(v.want("a")!, /closed/);
    assert.deepEqual(watched(v), []);
  });
});
