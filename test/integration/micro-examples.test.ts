import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { JsonRpcApp } from "../support/jsonrpc-app.js";
import { apiUrl, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

const MESH = "micro-examples-mesh-token-01";
const ID = "go.micro.srv.greeter-017da09a-734f-11e5-8136-68a86d0d36b6";

/**
 * A micro user's session, on the wire as micro's own example servers, clients and README sent it
 * (micro/micro `car/README.md`, the Python and Ruby sidecar examples): a JSON-RPC server registers
 * itself through one sidecar, clients call it through another in every envelope micro took, the
 * server deregisters on exit; then the proxy handler, and pub/sub through `/broker`.
 */
describe("micro's examples, as they were: register, call in every shape, deregister, proxy, broker", () => {
  let dir: string;
  const sidecars: Sidecar[] = [];
  const apps: { stop(): Promise<void> }[] = [];
  let server: JsonRpcApp;
  let serverSide: string;
  let client: string;
  let proxySide: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-micro-examples-"));
    const a = await TestApp.start("a");
    const b = await TestApp.start("b");
    const c = await TestApp.start("c");
    server = await JsonRpcApp.start("greeter");
    apps.push(a, b, c, server);
    const mesh = [`mesh.token=${MESH}`];
    const s1 = await startSidecar(testSettings({ service: "server-side", appPort: a.port, registry: { dir }, extra: mesh }));
    const s2 = await startSidecar(testSettings({ service: "client-side", appPort: b.port, registry: { dir }, extra: mesh }));
    const s3 = await startSidecar(testSettings({ service: "proxy-side", appPort: c.port, registry: { dir }, extra: [...mesh, "micro.handler=proxy"] }));
    sidecars.push(s1, s2, s3);
    [serverSide, client, proxySide] = [apiUrl(s1), apiUrl(s2), apiUrl(s3)];
  });

  after(async () => {
    await teardown({ sidecars, apps });
    rmSync(dir, { recursive: true, force: true });
  });

  it("the server registers as micro's README does ({\"Name\", \"Nodes\": [{\"Port\", \"Address\", \"Id\"}]}, ?ttl=10s) and every client shape reaches it as JSON-RPC", async () => {
    const reg = await fetch(`${serverSide}/registry?ttl=10s`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ Name: "go.micro.srv.greeter", Nodes: [{ Port: server.port, Address: "127.0.0.1", Id: ID }] }),
    });
    assert.equal(reg.status, 200, await reg.clone().text());
    // micro's GET /registry?service= from the client's side: its shape, once the node is in the view.
    const listed = await waitFor(async () => {
      const r = await fetch(`${client}/registry?service=go.micro.srv.greeter`);
      return r.status === 200 ? ((await r.json()) as { name: string; nodes: { id: string; port: number }[] }[]) : undefined;
    }, "the greeter in the client's view");
    assert.equal(listed[0]!.name, "go.micro.srv.greeter");
    assert.equal(listed[0]!.nodes[0]!.id, ID);

    const shapes: [string, RequestInit][] = [
      ["JSON, request an object (greeter/cli/python/sidecar_client.py)", { headers: { "content-type": "application/json" }, body: JSON.stringify({ service: "go.micro.srv.greeter", method: "Say.Hello", request: { name: "John" } }) }],
      ["JSON, request a JSON-encoded string", { headers: { "content-type": "application/json" }, body: JSON.stringify({ service: "go.micro.srv.greeter", method: "Say.Hello", request: JSON.stringify({ name: "John" }) }) }],
      ["form-encoded (car/README.md's curl -d)", { headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ service: "go.micro.srv.greeter", method: "Say.Hello", request: '{"name": "John"}' }).toString() }],
      ["JSON, Go-cased field names", { headers: { "content-type": "application/json" }, body: JSON.stringify({ Service: "go.micro.srv.greeter", Method: "Say.Hello", Request: { name: "John" } }) }],
    ];
    for (const [what, init] of shapes) {
      const res = await fetch(`${client}/rpc`, { method: "POST", ...init });
      assert.equal(res.status, 200, `${what}: ${await res.clone().text()}`);
      assert.deepEqual(await res.json(), { msg: "hello John from greeter" }, what);
    }
    // The path form (sidecar/python/sidecar.py): /greeter/say/hello is go.micro.srv.greeter Say.Hello.
    const res = await fetch(`${client}/greeter/say/hello`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"name": "John"}' });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), { msg: "hello John from greeter" });
    const calls = server.rpcCalls().map((c) => JSON.parse(c.body) as { method: string; params: unknown[] });
    assert.equal(calls.length, 5);
    for (const c of calls) {
      assert.equal(c.method, "Say.Hello");
      assert.deepEqual(c.params, [{ name: "John" }]);
    }
  });

  it("micro's proxy handler: POST /greeter with a form body reaches the greeter's POST /greeter as plain HTTP", async () => {
    const res = await fetch(`${proxySide}/greeter`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "name=John" });
    assert.equal(res.status, 200, await res.clone().text());
    const got = server.calls.at(-1)!;
    assert.equal(got.method, "POST");
    assert.equal(got.path, "/greeter");
    assert.equal(got.headers["content-type"], "application/x-www-form-urlencoded");
    assert.equal(got.body, "name=John");
  });

  it("/broker: a WebSocket subscriber gets what a client POSTs, as go-micro's broker.Message", async () => {
    const ws = new WebSocket(`${serverSide.replace("http://", "ws://")}/broker?topic=greetings`);
    const frames: { Header: Record<string, string>; Body: string }[] = [];
    ws.on("message", (d) => frames.push(JSON.parse(String(d)) as (typeof frames)[number]));
    await new Promise<void>((resolve, reject) => ws.once("open", () => resolve()).once("error", reject));
    try {
      await waitFor(async () => {
        const r = await fetch(`${client}/broker?topic=greetings`, { method: "POST", headers: { Timestamp: "1499951537" }, body: "Hello World!" });
        assert.equal(r.status, 200);
        return frames.length > 0;
      }, "a frame at the subscriber (its topic announced to the publisher)", 10_000);
      assert.equal(Buffer.from(frames[0]!.Body, "base64").toString(), "Hello World!");
      assert.equal(frames[0]!.Header.Timestamp, "1499951537");
    } finally {
      ws.close();
    }
  });

  it("the server deregisters on exit (DELETE /registry, micro's shape): calls to it stop at once", async () => {
    const res = await fetch(`${serverSide}/registry`, {
      method: "DELETE",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ Name: "go.micro.srv.greeter", Nodes: [{ Port: server.port, Address: "127.0.0.1", Id: ID }] }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    await waitFor(async () => {
      const r = await fetch(`${client}/rpc`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ service: "go.micro.srv.greeter", method: "Say.Hello", request: {} }) });
      return r.status === 503 || r.status === 404;
    }, "the greeter gone from the client's view");
  });
});
