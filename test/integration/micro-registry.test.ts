import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { JsonRpcApp } from "../support/jsonrpc-app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, registryNodes, rpc, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

const MESH = "mesh-token-0123456789abcdef";

/** A micro registry.Service with one node per app (micro's JSON shape). */
function service(name: string, nodes: { id: string; port: number; address?: string; metadata?: Record<string, unknown> }[], extra: Record<string, unknown> = {}) {
  return { name, ...extra, nodes: nodes.map((n) => ({ id: n.id, address: n.address ?? "127.0.0.1", port: n.port, ...(n.metadata ? { metadata: n.metadata } : {}) })) };
}

async function registry(base: string, method: "POST" | "DELETE", body: unknown, query = ""): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/registry${query}`, { method, headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

/** Issue 13, items 3 and 4: micro's POST/DELETE/GET /registry, fronted apps, and apps speaking go-micro's JSON-RPC. */
describe("micro's /registry: apps fronted by a sidecar, JSON-RPC apps", () => {
  let dir: string;
  const sidecars: Sidecar[] = [];
  const apps: { stop(): Promise<void> }[] = [];
  let caller: string;
  let front: Sidecar;
  let frontApi: string;
  let greeter: JsonRpcApp;
  let registered: { status: number; body: any };

  const jsonRpcApp = async (name: string) => {
    const a = await JsonRpcApp.start(name);
    apps.push(a);
    return a;
  };
  /** Poll the caller's /rpc until it answers something other than 404/503 (the node is in its view). */
  const callWhenSeen = (envelope: Record<string, unknown>) =>
    waitFor(async () => {
      const r = await rpc(caller, envelope);
      return r.status !== 404 && r.status !== 503 ? r : undefined;
    }, `a call to ${String(envelope.service)} reaching a node`);

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-micro-reg-"));
    const callerApp = await TestApp.start("caller-app");
    const frontApp = await TestApp.start("front-app");
    apps.push(callerApp, frontApp);
    const c = await startSidecar(testSettings({ service: "caller", appPort: callerApp.port, registry: { dir }, extra: [`mesh.token=${MESH}`] }));
    front = await startSidecar(testSettings({ service: "front", appPort: frontApp.port, registry: { dir }, extra: [`mesh.token=${MESH}`] }));
    sidecars.push(c, front);
    caller = apiUrl(c);
    frontApi = apiUrl(front);
    greeter = await jsonRpcApp("greeter");
    // Asserted in the first test, so that each test fails on its own where this is not supported.
    registered = await registry(frontApi, "POST", service("go.micro.srv.greeter", [{ id: "go.micro.srv.greeter-6f1c0e0a-1111-4b7e-9a51-2c1f0a9e0001", port: greeter.port }]), "?ttl=30s").catch((err: Error) => ({ status: 0, body: err.message }));
  });
  after(() => teardown({ sidecars, apps }));

  it("POST /registry fronts a JSON-RPC app: a caller's /rpc gets the result as the body, the app gets go-micro's JSON-RPC on /", async () => {
    assert.equal(registered.status, 200, JSON.stringify(registered.body));
    assert.deepEqual(registered.body.nodes, [{ id: "go.micro.srv.greeter-6f1c0e0a-1111-4b7e-9a51-2c1f0a9e0001", state: "registered" }]);
    const r = await callWhenSeen({ service: "go.micro.srv.greeter", method: "Say.Hello", request: { name: "Ada" } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.match(r.headers.get("content-type") ?? "", /application\/json/);
    assert.deepEqual(r.body, { msg: "hello Ada from greeter" });
    const last = greeter.rpcCalls().at(-1)!;
    const sent = JSON.parse(last.body) as { method: string; params: unknown[]; id: unknown };
    assert.equal(sent.method, "Say.Hello");
    assert.deepEqual(sent.params, [{ name: "Ada" }]);
    assert.equal(typeof sent.id, "number");
    assert.deepEqual(Object.keys(sent).sort(), ["id", "method", "params"]);
    // The raw form is RPC-style too.
    const raw = await fetch(`${caller}/rpc/go.micro.srv.greeter/Say.Hello`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"name":"Bob"}' });
    assert.deepEqual(await raw.json(), { msg: "hello Bob from greeter" });
  });

  it("a JSON-RPC error comes back as 500 APP_ERROR with the app's own message (string or object)", async () => {
    await callWhenSeen({ service: "go.micro.srv.greeter", method: "Say.Hello", request: {} });
    const s = await rpc(caller, { service: "go.micro.srv.greeter", method: "Say.Fail", request: {} });
    assert.equal(s.status, 500);
    assert.equal(s.body.error.code, "APP_ERROR");
    assert.equal(s.body.error.message, "name is required");
    const o = await rpc(caller, { service: "go.micro.srv.greeter", method: "Say.Object", request: {} });
    assert.equal(o.status, 500);
    assert.deepEqual([o.body.error.code, o.body.error.message], ["APP_ERROR", "the greeter is out of words"]);
  });

  it("an answer that is not JSON-RPC is 502 BAD_APP_RESPONSE", async () => {
    await callWhenSeen({ service: "go.micro.srv.greeter", method: "Say.Hello", request: {} });
    const r = await rpc(caller, { service: "go.micro.srv.greeter", method: "Say.Garbage", request: {} });
    assert.equal(r.status, 502);
    assert.equal(r.body.error.code, "BAD_APP_RESPONSE");
  });

  it("GET /registry?service= answers micro's shape, with this sidecar's inbound address as the node's", async () => {
    await callWhenSeen({ service: "go.micro.srv.greeter", method: "Say.Hello", request: {} });
    const res = await fetch(`${caller}/registry?service=go.micro.srv.greeter`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as any[];
    const [host, port] = [front.node.address.slice(0, front.node.address.lastIndexOf(":")), Number(front.node.address.split(":").pop())];
    assert.deepEqual(body, [{ name: "go.micro.srv.greeter", version: "0.0.0", metadata: {}, endpoints: [], nodes: [{ id: "go.micro.srv.greeter-6f1c0e0a-1111-4b7e-9a51-2c1f0a9e0001", address: host, port, metadata: {} }] }]);
    assert.notEqual(port, greeter.port, "the app's own address stays with its sidecar");
    assert.equal((await fetch(`${caller}/registry?service=nobody`)).status, 404);
    // Without ?service= the route keeps our shape.
    const ours = (await (await fetch(`${caller}/registry`)).json()) as { services: unknown[] };
    assert.ok(Array.isArray(ours.services));
  });

  it("DELETE /registry removes the node at once: callers get 503/404", async () => {
    const app = await jsonRpcApp("leaving");
    const svc = service("go.micro.srv.leaving", [{ id: "leaving-1", port: app.port }]);
    assert.equal((await registry(frontApi, "POST", svc)).status, 200);
    assert.equal((await callWhenSeen({ service: "go.micro.srv.leaving", method: "Say.Hello", request: {} })).status, 200);
    const d = await registry(frontApi, "DELETE", svc);
    assert.deepEqual(d, { status: 200, body: { removed: ["leaving-1"] } });
    // Deleted, not expired: gone well within registry.ttl (1.5 s, heartbeats every 0.5 s).
    await waitFor(async () => (await registryNodes(frontApi, "go.micro.srv.leaving")).length === 0, "the record deleted", 1_000);
    const gone = await waitFor(async () => {
      const r = await rpc(caller, { service: "go.micro.srv.leaving", method: "Say.Hello", request: {} });
      return r.status === 503 || r.status === 404 ? r : undefined;
    }, "the caller seeing the node gone", 1_000);
    assert.ok(["NO_HEALTHY_NODE", "SERVICE_NOT_FOUND"].includes(gone.body.error.code));
    const before = app.rpcCalls().length;
    await rpc(caller, { service: "go.micro.srv.leaving", method: "Say.Hello", request: {} });
    assert.equal(app.rpcCalls().length, before, "no call reaches a removed app");
  });

  it("a fronted app whose process goes away is removed once its health check fails, and forgotten after its ttl", async () => {
    const app = await jsonRpcApp("mortal");
    assert.equal((await registry(frontApi, "POST", service("go.micro.srv.mortal", [{ id: "mortal-1", port: app.port }]), "?ttl=300ms")).status, 200);
    assert.deepEqual(await waitFor(() => registryNodes(caller, "go.micro.srv.mortal").then((n) => (n.length ? n : undefined)), "the node registered"), ["mortal-1"]);
    await app.stop();
    await waitFor(async () => (await registryNodes(caller, "go.micro.srv.mortal")).length === 0, "the node deregistered after its app went away");
    await waitFor(async () => {
      const status = (await (await fetch(`${frontApi}/status`)).json()) as { sidecar: { fronted: { id: string }[] } };
      return !status.sidecar.fronted.some((f) => f.id === "mortal-1");
    }, "the node forgotten after ?ttl=300ms");
  });

  it("a fronting sidecar that shuts down deregisters its fronted nodes with its own", async () => {
    const ownApp = await TestApp.start("short-lived-app");
    apps.push(ownApp);
    const app = await jsonRpcApp("short-lived");
    const s = await startSidecar(testSettings({ service: "short", appPort: ownApp.port, registry: { dir }, extra: [`mesh.token=${MESH}`] }));
    sidecars.push(s);
    assert.equal((await registry(apiUrl(s), "POST", service("go.micro.srv.short", [{ id: "short-1", port: app.port }]))).status, 200);
    await waitFor(async () => (await registryNodes(caller, "go.micro.srv.short")).length === 1, "the fronted node in the caller's view");
    await s.close();
    // Deregistered, not expired: gone well within registry.ttl (1.5 s).
    await waitFor(async () => (await registryNodes(caller, "go.micro.srv.short")).length === 0, "the fronted node deregistered at shutdown", 1_000);
  });

  it("two apps fronted by one sidecar, and two nodes of one service, are kept apart", async () => {
    const alpha = await jsonRpcApp("alpha");
    const plain = await TestApp.start("plain");
    apps.push(plain);
    const g1 = await jsonRpcApp("g1");
    const g2 = await jsonRpcApp("g2");
    assert.equal((await registry(frontApi, "POST", service("alpha", [{ id: "alpha-1", port: alpha.port }]))).status, 200);
    // micro's http_server.py registered a plain HTTP app: metadata says so.
    assert.equal((await registry(frontApi, "POST", service("plain", [{ id: "plain-1", port: plain.port, metadata: { protocol: "http" } }]))).status, 200);
    assert.equal((await registry(frontApi, "POST", service("gamma", [{ id: "gamma-1", port: g1.port }, { id: "gamma-2", port: g2.port }]))).status, 200);
    assert.deepEqual((await callWhenSeen({ service: "alpha", method: "Say.Hello", request: { name: "a" } })).body, { msg: "hello a from alpha" });
    const p = await callWhenSeen({ service: "plain", method: "Say.Hello", request: { name: "p" } });
    assert.deepEqual([p.body.app, p.body.path, p.body.body], ["plain", "/Say/Hello", '{"name":"p"}']);
    await waitFor(async () => (await registryNodes(caller, "gamma")).length === 2, "both gamma nodes in the caller's view");
    const seen = new Set<string>();
    for (let i = 0; i < 8; i++) seen.add((await rpc(caller, { service: "gamma", method: "Say.Hello", request: { name: "g" } })).body.msg);
    assert.deepEqual([...seen].sort(), ["hello g from g1", "hello g from g2"]);
    assert.equal(g1.rpcCalls().length + g2.rpcCalls().length, 8);
    assert.equal(alpha.rpcCalls().length, 1, "alpha got only its own call");
    // The sidecar's own app is still its own.
    const own = await rpc(caller, { service: "front", endpoint: "Own.Call", request: {} });
    assert.equal(own.body.app, "front-app");
  });

  it("bad input to POST /registry is a 4xx with a stable code, and at most 64 nodes are fronted", async () => {
    const app = await jsonRpcApp("bounded");
    const post = (body: unknown, query = "") => registry(frontApi, "POST", body, query);
    const codeOf = async (body: unknown, query = "") => {
      const r = await post(body, query);
      return `${r.status} ${r.body.error?.code}`;
    };
    const node = (over: Record<string, unknown>) => ({ name: "bounded", nodes: [{ id: "bounded-1", address: "127.0.0.1", port: app.port, ...over }] });
    assert.equal(await codeOf("{not json"), "400 BAD_JSON");
    assert.equal(await codeOf({ name: "bad name", nodes: [{ id: "x", address: "127.0.0.1", port: app.port }] }), "400 INVALID_NAME");
    assert.equal(await codeOf(node({ id: "bad/id" })), "400 INVALID_NAME");
    assert.equal(await codeOf({ name: "bounded" }), "400 INVALID_REQUEST");
    assert.equal(await codeOf(node({ address: "10.1.2.3" })), "400 INVALID_REQUEST");
    assert.equal(await codeOf(node({ address: "example.com" })), "400 INVALID_REQUEST");
    assert.equal(await codeOf(node({ port: 0 })), "400 INVALID_REQUEST");
    assert.equal(await codeOf(node({ port: 70000 })), "400 INVALID_REQUEST");
    assert.equal(await codeOf(node({ port: Number(front.node.address.split(":").pop()) })), "400 INVALID_REQUEST", "its own inbound port");
    assert.equal(await codeOf(node({ metadata: { n: 1 } })), "400 INVALID_REQUEST");
    assert.equal(await codeOf(node({ metadata: { big: "x".repeat(5000) } })), "400 INVALID_REQUEST");
    assert.equal(await codeOf(node({ metadata: { protocol: "grpc" } })), "400 INVALID_REQUEST");
    // A ttl Go cannot parse was ignored by micro, the node registered all the same: here too, and the answer says so.
    const ttlIgnored = await post(node({ id: "bounded-ttl" }), "?ttl=soon");
    assert.equal(ttlIgnored.status, 200);
    assert.match(ttlIgnored.body.ignored.ttl, /Go duration/);
    assert.equal((await registry(frontApi, "DELETE", { name: "bounded", nodes: [{ id: "bounded-ttl" }] })).body.removed.length, 1);
    assert.equal(await codeOf(node({ id: front.node.id })), "400 INVALID_REQUEST", "the sidecar's own node id");
    const callerNode = (await registryNodes(caller, "caller"))[0]!;
    assert.equal(await codeOf(node({ id: callerNode })), "400 INVALID_REQUEST", "another sidecar's node id");
    const many = (n: number, from = 0) => ({ name: "bounded", nodes: Array.from({ length: n }, (_, i) => ({ id: `bounded-${from + i}`, address: "127.0.0.1", port: app.port })) });
    assert.equal(await codeOf(many(65)), "400 INVALID_REQUEST");
    // Up to the bound across requests (other tests front some nodes already), then one more is refused.
    const status = (await (await fetch(`${frontApi}/status`)).json()) as { sidecar: { fronted: unknown[] } };
    const room = 64 - status.sidecar.fronted.length;
    assert.equal((await post(many(room))).status, 200);
    const over = await post(many(1, 1000));
    assert.deepEqual([over.status, over.body.error.code], [400, "INVALID_REQUEST"]);
    assert.match(over.body.error.message, /at most 64/);
    const removed = await registry(frontApi, "DELETE", { name: "bounded" });
    assert.equal(removed.body.removed.length, room);
    assert.equal((await post(many(1, 1000))).status, 200, "room again once removed");
    await registry(frontApi, "DELETE", { name: "bounded" });
  });

  it("/proxy to a JSON-RPC node stays plain HTTP, and a path endpoint on /rpc too", async () => {
    await callWhenSeen({ service: "go.micro.srv.greeter", method: "Say.Hello", request: {} });
    const res = await fetch(`${caller}/proxy/go.micro.srv.greeter/files/a.txt?x=1`, { headers: { "x-sidecar-rpc": "Say.Hello" } });
    assert.deepEqual(await res.json(), { plain: true, app: "greeter", method: "GET", path: "/files/a.txt?x=1" });
    const r = await rpc(caller, { service: "go.micro.srv.greeter", endpoint: "/v1/hello", request: {} });
    assert.deepEqual(r.body, { plain: true, app: "greeter", method: "POST", path: "/v1/hello" });
  });

  it("x-sidecar-node and x-sidecar-rpc never reach an app, and a peer cannot send them without the mesh token", async () => {
    await callWhenSeen({ service: "go.micro.srv.greeter", method: "Say.Hello", request: {} });
    for (const c of greeter.calls) {
      const internal = Object.keys(c.headers).filter((k) => k.startsWith("x-sidecar-")).sort();
      assert.deepEqual(internal, ["x-sidecar-caller", "x-sidecar-timeout"], `${c.method} ${c.path}`);
    }
    const inbound = `http://${front.node.address}`;
    const forged = await fetch(`${inbound}/Say/Hello`, {
      method: "POST",
      headers: { "x-sidecar-service": "go.micro.srv.greeter", "x-sidecar-node": "go.micro.srv.greeter-6f1c0e0a-1111-4b7e-9a51-2c1f0a9e0001", "x-sidecar-rpc": "Say.Hello", "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(forged.status, 401);
    const withToken = await fetch(`${inbound}/Say/Hello`, {
      method: "POST",
      headers: { "x-sidecar-mesh-token": MESH, "x-sidecar-service": "go.micro.srv.greeter", "x-sidecar-node": "go.micro.srv.greeter-6f1c0e0a-1111-4b7e-9a51-2c1f0a9e0001", "x-sidecar-rpc": "Say.Hello", "content-type": "application/json" },
      body: '{"name":"peer"}',
    });
    assert.deepEqual(await withToken.json(), { msg: "hello peer from greeter" });
  });

  it("the own app with app.protocol=jsonrpc is called with JSON-RPC", async () => {
    const legacyApp = await jsonRpcApp("legacy");
    const legacy = await startSidecar(testSettings({ service: "legacy", appPort: legacyApp.port, registry: { dir }, extra: [`mesh.token=${MESH}`, "app.protocol=jsonrpc"] }));
    sidecars.push(legacy);
    assert.deepEqual((await callWhenSeen({ service: "legacy", method: "Say.Hello", request: { name: "Eve" } })).body, { msg: "hello Eve from legacy" });
    const e = await rpc(caller, { service: "legacy", method: "Say.Fail", request: {} });
    assert.deepEqual([e.status, e.body.error.code, e.body.error.message], [500, "APP_ERROR", "name is required"]);
    const p = await fetch(`${caller}/proxy/legacy/plain`);
    assert.deepEqual(await p.json(), { plain: true, app: "legacy", method: "GET", path: "/plain" });
  });
});

describe("a JSON-RPC app over the NATS transport, and fronted nodes beside it", () => {
  let nats: NatsServer;
  const sidecars: Sidecar[] = [];
  const apps: { stop(): Promise<void> }[] = [];

  after(() => teardown({ sidecars, apps, nats }));

  it("app.protocol=jsonrpc with transport.kind=nats: /rpc is JSON-RPC, /proxy plain; a node it fronts is reached over http", async () => {
    nats = await NatsServer.start();
    const callerApp = await TestApp.start("client");
    const legacyApp = await JsonRpcApp.start("legacy-nats");
    const fronted = await JsonRpcApp.start("fronted-by-nats");
    apps.push(callerApp, legacyApp, fronted);
    const settings = (service: string, port: number, extra: string[] = []) => testSettings({ service, appPort: port, registry: { nats: nats.url }, extra: [`mesh.token=${MESH}`, ...extra] });
    const c = await startSidecar(settings("client", callerApp.port));
    const legacy = await startSidecar(settings("legacy", legacyApp.port, ["transport.kind=nats", "app.protocol=jsonrpc", "inbound.host=127.0.0.1", "inbound.port=0"]));
    sidecars.push(c, legacy);
    const base = apiUrl(c);
    assert.equal(legacy.node.transport, "nats");
    const r = await waitFor(async () => {
      const x = await rpc(base, { service: "legacy", method: "Say.Hello", request: { name: "Nat" } });
      return x.status === 200 ? x : undefined;
    }, "the legacy node over NATS");
    assert.deepEqual(r.body, { msg: "hello Nat from legacy-nats" });
    const e = await rpc(base, { service: "legacy", method: "Say.Object", request: {} });
    assert.deepEqual([e.status, e.body.error.code, e.body.error.message], [500, "APP_ERROR", "the greeter is out of words"]);
    assert.deepEqual(await (await fetch(`${base}/proxy/legacy/p?q=1`)).json(), { plain: true, app: "legacy-nats", method: "GET", path: "/p?q=1" });
    // Fronted nodes are http-transport nodes, even on a NATS-transport sidecar.
    const post = await registry(apiUrl(legacy), "POST", service("go.micro.srv.nfront", [{ id: "nfront-1", port: fronted.port }]));
    assert.equal(post.status, 200);
    const f = await waitFor(async () => {
      const x = await rpc(base, { service: "go.micro.srv.nfront", method: "Say.Hello", request: { name: "F" } });
      return x.status === 200 ? x : undefined;
    }, "the fronted node");
    assert.deepEqual(f.body, { msg: "hello F from fronted-by-nats" });
    const rec = (await (await fetch(`${base}/registry/go.micro.srv.nfront`)).json()) as { nodes: { transport: string }[] };
    assert.equal(rec.nodes[0]!.transport, "http");
  });
});
