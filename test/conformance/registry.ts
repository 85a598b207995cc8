import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { EventLog } from "../support/events.js";
import { apiUrl, registryNodes, rpc, SidecarProcess, startSidecar, testSettings, waitFor } from "../support/sidecar.js";

const INTERVAL = 100;
const FAILURES = 2;

type Where = { dir: string } | { nats: string } | { etcd: string };

/** A behaviour a backend cannot offer, with the reason (the README's registry table says the same). */
export interface Unsupported {
  unsupported: string;
}

/** A cluster of the backend's servers, started for one test: sidecars get `where`, `kill(i)` takes member i away. */
export interface Cluster {
  where: Where;
  /** Extra settings for a clustered backend (replicas, a longer TTL for leader elections). */
  extra: string[];
  kill(i: number): Promise<void>;
  stop(): Promise<void>;
}

export interface RegistryBackend {
  name: string;
  /** Where sidecars find the registry (the backend's server, or the local directory). */
  where: () => Where;
  /** registry.ttl for this backend, in ms (etcd's leases count whole seconds). Default 1500. */
  ttl?: number;
  setup: () => Promise<void>;
  teardown: () => Promise<void>;
  /** Stop the backend's server, and start it again on the same data. */
  restart: { down(): Promise<void>; up(): Promise<void> } | Unsupported;
  cluster: { start(): Promise<Cluster> } | Unsupported;
  /** The key filters of every watch open on the backend's server now (as `<service>.*`, `<service>.<id>` or `>`). */
  watches: (() => Promise<string[]>) | Unsupported;
}

const unsupported = (x: object): x is Unsupported => "unsupported" in x;

/**
 * The registry conformance suite (issue 15): one set of behaviours, run on every registry backend
 * with its real server. A backend that cannot offer a behaviour says why (`Unsupported`), and the
 * test is reported as skipped with that reason.
 */
export function registryConformance(backend: RegistryBackend): void {
  const TTL = backend.ttl ?? 1500;
  const HEARTBEAT = Math.floor(TTL / 3);
  const ttlSetting = `registry.ttl=${TTL}ms`;

  describe(`registry conformance: ${backend.name}`, () => {
    const apps: TestApp[] = [];
    const sidecars: Sidecar[] = [];
    let caller: Sidecar;
    let a1: TestApp;
    let a2: TestApp;
    let s1: Sidecar;
    let s2: Sidecar;
    let base: string;

    const settings = (service: string, app: TestApp, extra: string[] = [], where: Where = backend.where()) =>
      testSettings({ service, appPort: app.port, registry: where, extra: [ttlSetting, ...extra] });
    const app = async (name: string) => {
      const a = await TestApp.start(name);
      apps.push(a);
      return a;
    };
    const sidecar = async (service: string, a: TestApp, extra: string[] = [], where?: Where) => {
      const s = await startSidecar(settings(service, a, extra, where));
      sidecars.push(s);
      return s;
    };

    before(async () => {
      await backend.setup();
      a1 = await app("a1");
      a2 = await app("a2");
      s1 = await sidecar("greeter", a1);
      s2 = await sidecar("greeter", a2);
      caller = await sidecar("client", await app("caller"));
      base = apiUrl(caller);
      await waitFor(async () => (await registryNodes(base, "greeter")).length === 2 && (await registryNodes(base, "client")).length === 1, "both greeter nodes and the caller itself in the caller's view");
    });

    after(async () => {
      await Promise.all(sidecars.map((s) => s.close()));
      await Promise.all(apps.map((a) => a.stop()));
      await backend.teardown();
    });

    it("registers and lists: both instances with their records, every service in GET /registry", async () => {
      const res = await fetch(`${base}/registry/greeter`);
      assert.equal(res.status, 200);
      const body = (await res.json()) as { service: string; nodes: Record<string, unknown>[] };
      assert.equal(body.service, "greeter");
      assert.deepEqual(body.nodes.map((n) => n.id).sort(), [s1.node.id, s2.node.id].sort());
      for (const n of body.nodes) {
        assert.match(String(n.address), /^127\.0\.0\.1:\d+$/);
        assert.notEqual(n.address, "127.0.0.1:0", "the bound port is registered, not 0");
        assert.equal(n.transport, "http");
        assert.ok(!Number.isNaN(Date.parse(String(n.registeredAt))));
      }
      const all = (await (await fetch(`${base}/registry`)).json()) as { services: { service: string }[]; source: string };
      assert.deepEqual(all.services.map((s) => s.service).sort(), ["client", "greeter"]);
      assert.equal(all.source, "listing", "GET /registry says it is a listing of the registry, not this sidecar's view");
    });

    it("watches what it calls: a service never called is not watched, and its first call waits for its listing and succeeds", async () => {
      const fresh = await sidecar("fresh", await app("fresh"));
      await waitFor(() => fresh.registered, "fresh to register");
      const watched = async (b: string) => ((await (await fetch(`${b}/status`)).json()) as { watching: { services: { service: string }[] } }).watching.services.map((w) => w.service);
      assert.ok(!(await watched(base)).includes("fresh"), "a service nobody called is not watched");
      // GET /registry lists it all the same: a listing of the backend.
      const all = (await (await fetch(`${base}/registry`)).json()) as { services: { service: string; nodes: { id: string }[] }[] };
      assert.deepEqual(all.services.find((s) => s.service === "fresh")?.nodes.map((n) => n.id), [fresh.node.id]);
      const r = await rpc(base, { service: "fresh", endpoint: "Fresh.Hello" });
      assert.equal(r.status, 200, `the first call to a service not watched yet is answered: ${JSON.stringify(r.body)}`);
      assert.ok((await watched(base)).includes("fresh"), "watched from its first call");
      await fresh.close();
      await waitFor(async () => (await registryNodes(base, "fresh")).length === 0, "fresh to leave");
    });

    it("a name nobody registered: its empty listing answers 404 SERVICE_NOT_FOUND, not a wait for the deadline", async () => {
      const t0 = Date.now();
      const r = await rpc(base, { service: "nobody-here", endpoint: "No.Body", timeout: 3_000 });
      assert.equal(r.status, 404, JSON.stringify(r.body));
      assert.equal(r.body.error.code, "SERVICE_NOT_FOUND");
      assert.ok(Date.now() - t0 < 3_000, "answered before the call's deadline");
    });

    it("calls.services are watched from the start; another service's watch closes after registry.idleWatch and opens again on the next call", async () => {
      const c2 = await sidecar("client2", await app("client2"), ["calls.services=greeter", "registry.idleWatch=300ms"]);
      const b2 = apiUrl(c2);
      type Watching = { services: { service: string; pinned: boolean }[] };
      const status = async () => (await (await fetch(`${b2}/status`)).json()) as { watching: Watching; services: { service: string; nodes: unknown[] }[] };
      const first = await status();
      const g = first.watching.services.find((w) => w.service === "greeter");
      assert.equal(g?.pinned, true, "greeter (calls.services) is watched from the start, pinned");
      assert.equal(first.services.find((s) => s.service === "greeter")?.nodes.length, 2, "both greeters known before any call");
      const events = EventLog.of(c2.events());
      assert.equal((await rpc(b2, { service: "client", endpoint: "Client.Ping" })).status, 200);
      await waitFor(async () => !(await status()).watching.services.some((w) => w.service === "client"), "the idle watch of client to close", 5_000);
      assert.ok((await status()).watching.services.some((w) => w.service === "greeter"), "a pinned service stays watched however idle");
      // Watched again from the next call, which waits for the listing again.
      assert.equal((await rpc(b2, { service: "client", endpoint: "Client.Ping" })).status, 200);
      const joined = events.all("node-joined").filter((e) => e.service === "client");
      assert.equal(joined.length, 2, "the caller's node joined this view once per watch");
      events.close();
      await c2.close();
    });

    const watches = backend.watches;
    it(
      "no sidecar watches the whole registry: its watches are of the services it calls and of its own key",
      unsupported(watches) ? { skip: `${backend.name}: ${watches.unsupported}` } : {},
      async () => {
        if (unsupported(watches)) return;
        assert.equal((await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" })).status, 200);
        // A listing (GET /registry) reads everything once; what it leaves behind goes within seconds. A standing watch would stay.
        let filters: string[] = [];
        await waitFor(async () => !(filters = await watches()).includes(">"), "no watch of everything (the listings' consumers gone)", 15_000).catch(() => assert.fail(`a watch of everything stays: ${filters.join(", ")}`));
        assert.ok(filters.includes("greeter.*"), `the caller watches greeter: ${filters.join(", ")}`);
        for (const s of [s1, s2, caller]) assert.ok(filters.includes(`${s.config.service.name}.${s.node.id}`), `each sidecar's canary watches its own key: ${filters.join(", ")}`);
      },
    );

    it("balances calls over both instances in a real rotation", async () => {
      const before1 = a1.callCount();
      const before2 = a2.callCount();
      for (let i = 0; i < 10; i++) assert.equal((await rpc(base, { service: "greeter", endpoint: "Greeter.Hello", request: { i } })).status, 200);
      assert.equal(a1.callCount() - before1, 5);
      assert.equal(a2.callCount() - before2, 5);
    });

    it("keeps nested dotted names apart: shop, shop.cart and shop.cart.v2 are three services", async () => {
      const names = ["shop", "shop.cart", "shop.cart.v2"];
      const nodes = new Map<string, { s: Sidecar; a: TestApp }>();
      for (const name of names) {
        const a = await app(name);
        nodes.set(name, { s: await sidecar(name, a), a });
      }
      for (const name of names) {
        await waitFor(async () => (await registryNodes(base, name)).length > 0, `${name} in the view`);
        assert.deepEqual(await registryNodes(base, name), [nodes.get(name)!.s.node.id], `${name} holds its own node only`);
        const before = nodes.get(name)!.a.callCount();
        assert.equal((await rpc(base, { service: name, endpoint: "Shop.Get" })).status, 200);
        assert.equal(nodes.get(name)!.a.callCount(), before + 1, `a call to ${name} reaches ${name}'s app`);
      }
      for (const { s } of nodes.values()) await s.close();
      for (const name of names) await waitFor(async () => (await registryNodes(base, name)).length === 0, `${name} to leave`);
    });

    it("a watch sees a join and a leave as they happen (events from the backend, not a poll of it)", async (t) => {
      const events = EventLog.of(caller.events());
      // Looked up first: the caller watches it from now on, as from a first call.
      assert.deepEqual(await registryNodes(base, "watched"), []);
      const s = await sidecar("watched", await app("watched"));
      const t0 = Date.now();
      const joined = await events.next("node-joined", (e) => e.node === s.node.id);
      const joinMs = Date.now() - t0;
      assert.equal(joined.service, "watched");
      await s.close();
      const left = await events.next("node-left", (e) => e.node === s.node.id);
      assert.equal(left.reason, "deleted", "a graceful stop arrives as the backend's delete, not found by age");
      t.diagnostic(`${backend.name}: join seen by the caller ${joinMs} ms after the joiner's start() resolved`);
      events.close();
    });

    it("an app failing its health check leaves within interval × threshold, gets no calls, and returns", async () => {
      a2.healthy = false;
      const t0 = Date.now();
      await waitFor(async () => !(await registryNodes(base, "greeter")).includes(s2.node.id), "a2 to leave the caller's view");
      const took = Date.now() - t0;
      // interval × threshold, plus one check in progress and the registry's propagation.
      assert.ok(took <= INTERVAL * (FAILURES + 1) + 700, `left after ${took}ms`);
      assert.equal(s2.registered, false);
      const before2 = a2.callCount();
      for (let i = 0; i < 6; i++) assert.equal((await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" })).status, 200);
      assert.equal(a2.callCount(), before2, "an unhealthy app receives no calls");

      a2.healthy = true;
      await waitFor(async () => (await registryNodes(base, "greeter")).includes(s2.node.id), "a2 to return");
      const back = a2.callCount();
      for (let i = 0; i < 4; i++) await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" });
      assert.ok(a2.callCount() > back, "a recovered app receives calls again");
    });

    it("a SIGTERM'd sidecar deregisters at once and exits 0", async () => {
      const a = await app("term");
      const p = await SidecarProcess.start(settings("terminated", a));
      await waitFor(async () => (await registryNodes(base, "terminated")).includes(p.nodeId), "the child's node in the caller's view");
      const t0 = Date.now();
      p.kill("SIGTERM");
      await waitFor(async () => (await registryNodes(base, "terminated")).length === 0, "the node to leave", TTL);
      const took = Date.now() - t0;
      assert.ok(took < TTL / 2, `removed after ${took}ms, well before the TTL (${TTL}ms)`);
      assert.equal(await p.exit(), 0);
    });

    it("a sidecar killed with -9 vanishes from callers' views within TTL + one heartbeat", async (t) => {
      const a = await app("nine");
      const p = await SidecarProcess.start(settings("killed", a));
      await waitFor(async () => (await registryNodes(base, "killed")).includes(p.nodeId), "the child's node in the caller's view");
      p.kill("SIGKILL");
      const t0 = Date.now();
      await p.exit();
      // Until it leaves the record points at a dead listener: callers get 502, not a hang.
      const r = await rpc(base, { service: "killed", endpoint: "Any.Thing" });
      assert.equal(r.status, 502);
      assert.equal(r.body.error.code, "UPSTREAM_UNREACHABLE");
      await waitFor(async () => (await registryNodes(base, "killed")).length === 0, "the killed node to leave", TTL + HEARTBEAT + 2_000);
      const took = Date.now() - t0;
      t.diagnostic(`${backend.name}: a kill -9'd node left the caller's view ${took} ms after the kill (TTL ${TTL} ms, heartbeat ${HEARTBEAT} ms)`);
      assert.ok(took <= TTL + HEARTBEAT, `left after ${took}ms (TTL ${TTL} + heartbeat ${HEARTBEAT})`);
      assert.ok(took >= TTL - HEARTBEAT - 100, `left after ${took}ms: not before its TTL`);
      // Known but gone: 503, not 404.
      const gone = await rpc(base, { service: "killed", endpoint: "Any.Thing" });
      assert.equal(gone.status, 503);
      assert.equal(gone.body.error.code, "NO_HEALTHY_NODE");
    });

    const restart = backend.restart;
    it(
      "the backend's server stopped and restarted: calls flow on the cached view, the node is registered again, the watch resumes",
      unsupported(restart) ? { skip: `${backend.name}: ${restart.unsupported}` } : {},
      async () => {
        if (unsupported(restart)) return;
        const events = EventLog.of(caller.events());
        await restart.down();
        await waitFor(async () => (await fetch(`${base}/health`)).status === 503, "/health to report the outage");
        // Calls keep going to the nodes the view knew, for longer than a TTL.
        const t0 = Date.now();
        let calls = 0;
        for (; Date.now() - t0 < TTL + HEARTBEAT && calls < 500; calls++) {
          assert.equal((await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" })).status, 200);
          assert.equal((await registryNodes(base, "greeter")).length, 2, "no node is forgotten during the outage");
        }
        // A service this sidecar never watched cannot be listed now: a clear 503 at the call's deadline, the call not sent.
        const unlisted = await rpc(base, { service: "never-watched", endpoint: "N.W", timeout: 800 });
        assert.equal(unlisted.status, 503, JSON.stringify(unlisted.body));
        assert.equal(unlisted.body.error.code, "REGISTRY_UNAVAILABLE");
        await restart.up();
        await waitFor(async () => (await fetch(`${base}/health`)).status === 200, "/health to recover", 15_000);
        // The watch resumed: a node registered after the restart appears, and a leave is seen.
        assert.deepEqual(await registryNodes(base, "late"), []);
        const late = await sidecar("late", await app("late"));
        await events.next("node-joined", (e) => e.node === late.node.id, 10_000);
        // A view built from scratch after the restart (the late sidecar's) lists both greeters: their records are in the backend.
        await waitFor(async () => (await registryNodes(apiUrl(late), "greeter")).length === 2, "both greeters in a fresh view", 10_000);
        // Heartbeats after the restart keep the records alive beyond a TTL.
        const t1 = Date.now();
        await waitFor(() => Date.now() - t1 > TTL + HEARTBEAT, "a TTL and a heartbeat to pass", 3 * TTL);
        assert.deepEqual((await registryNodes(base, "greeter")).sort(), [s1.node.id, s2.node.id].sort());
        await late.close();
        await events.next("node-left", (e) => e.node === late.node.id);
        events.close();
      },
    );

    const clustered = backend.cluster;
    it(
      "one server of a three-server cluster killed: nothing visible to callers",
      unsupported(clustered) ? { skip: `${backend.name}: ${clustered.unsupported}` } : {},
      async () => {
        if (unsupported(clustered)) return;
        const cluster = await clustered.start();
        const mine: Sidecar[] = [];
        try {
          const own = async (service: string) => {
            const s = await startSidecar(settings(service, await app(`c-${service}`), cluster.extra, cluster.where));
            mine.push(s);
            return s;
          };
          const c = await own("c-client");
          const cbase = apiUrl(c);
          const [g1, g2] = [await own("c-greeter"), await own("c-greeter")];
          await waitFor(async () => (await registryNodes(cbase, "c-greeter")).length === 2, "two greeters in the view", 20_000);
          const events = EventLog.of(c.events());
          await cluster.kill(0);
          const t0 = Date.now();
          let calls = 0;
          for (; Date.now() - t0 < 2 * TTL && calls < 1_000; calls++) {
            assert.equal((await rpc(cbase, { service: "c-greeter", endpoint: "G.Hello" })).status, 200);
          }
          assert.equal(events.all("node-left").length, 0, "no live node left a view");
          assert.deepEqual((await registryNodes(cbase, "c-greeter")).sort(), [g1.node.id, g2.node.id].sort());
          const g3 = await own("c-greeter");
          await events.next("node-joined", (e) => e.node === g3.node.id, 10_000);
          events.close();
        } finally {
          await Promise.all(mine.map((s) => s.close()));
          await cluster.stop();
        }
      },
    );
  });
}
