import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Listener } from "../../src/http/listener.js";
import { silentLogger } from "../../src/log.js";
import { LocalRegistry } from "../../src/registry/local.js";
import type { Sidecar } from "../../src/sidecar.js";
import { Deadline } from "../../src/http/deadline.js";
import { MeshConnection } from "../../src/transport/mesh/connection.js";
import { MeshTransport } from "../../src/transport/mesh/transport.js";
import { END_STREAM, FrameReader, FrameType, headFrame, numberFrame, PREFACE, splitHead, type Frame, type ResponseHead } from "../../src/transport/mesh/frames.js";
import { TransportError } from "../../src/transport/types.js";
import { TestApp } from "../support/app.js";
import { apiUrl, rpc, startSidecar, testSettings, waitFor } from "../support/sidecar.js";

/** sidecar_mesh_connections{direction} from a sidecar's /metrics. */
async function meshConnections(base: string, direction: "in" | "out"): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = new RegExp(`^sidecar_mesh_connections\\{direction="${direction}"\\} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}

/** A raw connection to an inbound port: write bytes, read frames, see it closed. */
class RawPeer {
  readonly frames: Frame[] = [];
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  constructor(port: number) {
    this.socket = net.connect(port, "127.0.0.1");
    const reader = new FrameReader((f) => this.frames.push({ ...f, payload: Buffer.from(f.payload) }));
    this.socket.on("data", (c: Buffer) => reader.push(c));
    this.socket.on("error", () => undefined);
    this.closed = new Promise((r) => this.socket.once("close", () => r()));
  }
}

describe("the mesh protocol between sidecars (local registry)", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let echoApp: TestApp;
  let legacyApp: TestApp;
  let echo: Sidecar;
  let mesh: string;
  let plain: string;

  const start = async (service: string, app: TestApp, extra: string[] = []) => {
    const s = await startSidecar(testSettings({ service, appPort: app.port, registry: { dir }, extra }));
    sidecars.push(s);
    return s;
  };
  const known = (base: string, service: string, count = 1) =>
    waitFor(async () => {
      const r = await fetch(`${base}/registry/${service}`);
      return r.status === 200 && ((await r.json()) as { nodes: unknown[] }).nodes.length >= count;
    }, `'${service}' in the view`);

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-mesh-"));
    echoApp = await TestApp.start("echo");
    legacyApp = await TestApp.start("legacy");
    const callerApp = await TestApp.start("caller");
    apps.push(echoApp, legacyApp, callerApp);
    echo = await start("echo", echoApp);
    await start("legacy", legacyApp, ["transport.mesh=false"]);
    mesh = apiUrl(await start("meshcaller", callerApp));
    plain = apiUrl(await start("plaincaller", callerApp, ["transport.mesh=false"]));
    for (const base of [mesh, plain]) for (const s of ["echo", "legacy"]) await known(base, s);
  });

  after(async () => {
    await Promise.all(sidecars.map((s) => s.close()));
    await Promise.all(apps.map((a) => a.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("records say which nodes speak mesh, and concurrent calls share one connection to the peer", async () => {
    const nodes = async (service: string) => ((await (await fetch(`${mesh}/registry/${service}`)).json()) as { nodes: { mesh?: number }[] }).nodes;
    assert.equal((await nodes("echo"))[0]!.mesh, 1);
    assert.equal((await nodes("legacy"))[0]!.mesh, undefined);
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => rpc(mesh, { service: "echo", endpoint: "Echo.Call", request: { i } })));
    for (const [i, a] of answers.entries()) {
      assert.equal(a.status, 200);
      assert.deepEqual(JSON.parse(a.body.body), { i });
    }
    assert.equal(await meshConnections(mesh, "out"), 1);
    assert.equal(await meshConnections(apiUrl(echo), "in"), 1);
  });

  it("answers over mesh are the ones HTTP/1.1 gives: status, headers, body", async () => {
    for (const endpoint of ["/status/418", "/headers", "Echo.Call"]) {
      const [a, b] = await Promise.all([mesh, plain].map((base) => rpc(base, { service: "echo", endpoint, request: { x: 1 } })));
      assert.equal(a!.status, b!.status, endpoint);
      assert.deepEqual(a!.body, b!.body, endpoint);
      for (const h of ["content-type", "set-cookie", "x-private", "x-end", "x-app"]) assert.equal(a!.headers.get(h), b!.headers.get(h), `${endpoint}: ${h}`);
    }
    const r = await rpc(mesh, { service: "echo", endpoint: "/headers" });
    assert.equal(r.headers.get("set-cookie"), "a=1, b=2");
    assert.equal(r.headers.get("x-private"), null, "a header the app named in Connection does not travel");
  });

  it("a response larger than the stream window streams through whole (flow control), over HTTP/1.1 too", async () => {
    const bytes = 3 * 1024 * 1024 + 17;
    for (const base of [mesh, plain]) {
      const res = await fetch(`${base}/rpc/echo/big?bytes=${bytes}`, { method: "POST", body: "{}" });
      assert.equal(res.status, 200);
      const body = Buffer.from(await res.arrayBuffer());
      assert.equal(body.length, bytes);
      assert.ok(body.every((b) => b === 0x7a));
    }
  });

  it("/proxy: no body, a small body, a large one and a chunked upload all arrive whole (small ones over mesh, the rest streamed over HTTP/1.1)", async () => {
    const get = await fetch(`${mesh}/proxy/echo/things?q=1`);
    assert.equal(get.status, 200);
    assert.deepEqual(await get.json(), { app: "echo", method: "GET", path: "/things?q=1", body: "" });
    for (const size of [100, 64 * 1024, 64 * 1024 + 1, 300_000]) {
      const body = "b".repeat(size);
      const r = await fetch(`${mesh}/proxy/echo/put`, { method: "PUT", body });
      assert.equal(r.status, 200, String(size));
      assert.equal(((await r.json()) as { body: string }).body, body, String(size));
    }
    const chunks = ["one,", "two,", "three"];
    const stream = new ReadableStream({ pull(c) { const next = chunks.shift(); if (next === undefined) c.close(); else c.enqueue(new TextEncoder().encode(next)); } });
    const r = await fetch(`${mesh}/proxy/echo/up`, { method: "POST", body: stream, duplex: "half" } as RequestInit);
    assert.equal(((await r.json()) as { body: string }).body, "one,two,three");
  });

  it("a call past its deadline is cancelled at the callee's app too (RESET)", async () => {
    const before = echoApp.aborted;
    const r = await rpc(mesh, { service: "echo", endpoint: "/slow?ms=5000", timeout: 300 });
    assert.equal(r.status, 504);
    assert.equal(r.body.error.code, "TIMEOUT");
    await waitFor(() => echoApp.aborted > before, "the app to see its request abandoned");
    const after = await rpc(mesh, { service: "echo", endpoint: "Echo.Call" });
    assert.equal(after.status, 200, "the connection still carries calls");
  });

  it("a node without mesh (older sidecar, transport.mesh: false) and a caller without it talk HTTP/1.1", async () => {
    const before = legacyApp.calls.length;
    assert.equal((await rpc(mesh, { service: "legacy", endpoint: "Echo.Call" })).status, 200);
    assert.equal((await rpc(plain, { service: "echo", endpoint: "Echo.Call" })).status, 200);
    assert.equal(legacyApp.calls.length, before + 1);
    assert.equal(await meshConnections(mesh, "out"), 1, "no mesh connection to the legacy node");
    assert.equal(await meshConnections(plain, "out"), 0);
  });

  it("a record that claims mesh for a listener that speaks only HTTP gets its call over HTTP/1.1, once", async () => {
    const impostor = await TestApp.start("impostor");
    apps.push(impostor);
    const registry = await LocalRegistry.open({ dir, ttl: 1500 }, silentLogger());
    const record = { id: "plain-1", service: "plain", version: "1", address: `127.0.0.1:${impostor.port}`, transport: "http", mesh: 1, metadata: {}, endpoints: [], subscriptions: [], registeredAt: new Date().toISOString() };
    await registry.register(record);
    try {
      await known(mesh, "plain");
      const r = await rpc(mesh, { service: "plain", endpoint: "Plain.Call", request: { n: 1 } });
      assert.equal(r.status, 200);
      assert.equal(r.body.app, "impostor");
      assert.equal(impostor.callsTo("/Plain/Call").length, 1, "the call ran once, over HTTP/1.1");
    } finally {
      await registry.deregister(record.id);
      await registry.close();
    }
  });

  it("hostile bytes on the inbound port close that connection only; HTTP and mesh calls go on", async () => {
    const port = Number(new URL(`http://${echo.node.address}`).port);
    const cases: Buffer[] = [
      Buffer.from("\0not the preface\n"),
      Buffer.concat([PREFACE, Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 1])]), // a 2 GiB frame
      Buffer.concat([PREFACE, (() => { const f = headFrame(FrameType.REQUEST, END_STREAM, 1, { m: "POST", p: "/", h: {} }); f.write("@", 14); return f; })()]), // head not JSON
      Buffer.concat([PREFACE, headFrame(FrameType.REQUEST, END_STREAM, 2, { m: "POST", p: "/", h: {} })]), // an even (callee-side) stream id
      Buffer.concat([PREFACE, headFrame(FrameType.RESPONSE, END_STREAM, 1, { s: 200, h: {} })]), // a frame only callees send
    ];
    for (const bytes of cases) {
      const peer = new RawPeer(port);
      peer.socket.write(bytes);
      await peer.closed;
    }
    // A well-formed call with a header node:http would refuse: a 400 answer, the connection kept.
    const peer = new RawPeer(port);
    peer.socket.write(Buffer.concat([PREFACE, headFrame(FrameType.REQUEST, END_STREAM, 1, { m: "POST", p: "/", h: { "bad name": "x" } })]));
    await waitFor(() => peer.frames.length > 0, "an answer");
    const { head, body } = splitHead<ResponseHead>(peer.frames[0]!.payload);
    assert.equal(head.s, 400);
    assert.equal(JSON.parse(body.toString()).error.code, "BAD_REQUEST");
    assert.ok(!peer.socket.destroyed);
    // A content-length that lies about the body: the app is told the body's real length.
    peer.socket.write(headFrame(FrameType.REQUEST, END_STREAM, 3, { m: "POST", p: "/lied", h: { "x-sidecar-service": "echo", "content-length": "999", "transfer-encoding": "chunked" } }, Buffer.from("abc")));
    await waitFor(() => peer.frames.some((f) => f.stream === 3 && (f.type === FrameType.END || (f.type === FrameType.RESPONSE && f.flags & END_STREAM))), "the second answer, whole");
    const frames = peer.frames.filter((f) => f.stream === 3);
    const second = splitHead<ResponseHead>(frames[0]!.payload);
    assert.equal(second.head.s, 200);
    const text = Buffer.concat([second.body, ...frames.filter((f) => f.type === FrameType.DATA).map((f) => f.payload)]).toString();
    assert.equal(JSON.parse(text).body, "abc");
    assert.equal(echoApp.callsTo("/lied")[0]!.headers["content-length"], "3");
    peer.socket.destroy();
    assert.equal((await rpc(mesh, { service: "echo", endpoint: "Echo.Call" })).status, 200);
    assert.equal((await rpc(plain, { service: "echo", endpoint: "Echo.Call" })).status, 200);
  });

  it("the listener: a connection that never sends a byte is closed after headersTimeout; HTTP/1.1 keep-alive is untouched", async () => {
    const taken: Buffer[] = [];
    const listener = new Listener("inbound", (_req, res) => void res.end("ok"), {
      headersTimeout: 300,
      mesh: { take: (socket, first) => (taken.push(first), socket.destroy()), close: async () => undefined },
    });
    const { port } = await listener.start("127.0.0.1", 0);
    try {
      const t0 = Date.now();
      await new RawPeer(port).closed;
      assert.ok(Date.now() - t0 >= 250, "not before the timeout");
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      for (let i = 0; i < 3; i++) {
        const body = await new Promise<string>((resolve, reject) => {
          http.get({ host: "127.0.0.1", port, path: "/", agent }, (res) => {
            let text = "";
            res.on("data", (c: Buffer) => (text += c));
            res.on("end", () => resolve(text));
          }).on("error", reject);
        });
        assert.equal(body, "ok");
      }
      agent.destroy();
      const peer = new RawPeer(port);
      peer.socket.write(PREFACE);
      await peer.closed;
      assert.deepEqual(taken.map((b) => b[0]), [0], "the connection that began with 0 went to the mesh side, with its first bytes");
    } finally {
      await listener.close(1000);
    }
  });
});

describe("the mesh protocol when a callee shuts down (local registry)", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];

  after(async () => {
    await Promise.all(sidecars.map((s) => s.close()));
    await Promise.all(apps.map((a) => a.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("calls in flight on a draining node finish; new calls go to the other node (GOAWAY), none fail", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-mesh-drain-"));
    const a = await TestApp.start("a");
    const b = await TestApp.start("b");
    const c = await TestApp.start("c");
    apps.push(a, b, c);
    const start = async (service: string, app: TestApp) => {
      const s = await startSidecar(testSettings({ service, appPort: app.port, registry: { dir } }));
      sidecars.push(s);
      return s;
    };
    const sa = await start("work", a);
    await start("work", b);
    const base = apiUrl(await start("boss", c));
    await waitFor(async () => ((await (await fetch(`${base}/registry/work`)).json()) as { nodes?: unknown[] }).nodes?.length === 2, "both nodes in the view");
    // Warm both connections, then hold slow calls on both nodes.
    await Promise.all(Array.from({ length: 8 }, () => rpc(base, { service: "work", endpoint: "Echo.Call" })));
    const slow = Array.from({ length: 6 }, () => rpc(base, { service: "work", endpoint: "/slow?ms=700" }));
    await waitFor(() => a.callsTo("/slow?ms=700").length > 0 && b.callsTo("/slow?ms=700").length > 0, "slow calls on both nodes");
    const closing = sa.close();
    const during = await Promise.all(Array.from({ length: 20 }, () => rpc(base, { service: "work", endpoint: "Echo.Call" })));
    await closing;
    for (const r of await Promise.all(slow)) assert.equal(r.status, 200, "a call in flight on the draining node finished");
    for (const r of during) assert.equal(r.status, 200, JSON.stringify(r.body));
  });
});

/** A peer on 127.0.0.1:0 that reads frames and answers as `onFrame` says (`n`: which connection, from 1). */
async function peer(onFrame: (f: Frame, socket: net.Socket, n: number) => void): Promise<{ port: number; server: net.Server }> {
  let connections = 0;
  const server = net.createServer((socket) => {
    const n = ++connections;
    let preface = true;
    const reader = new FrameReader((f) => onFrame(f, socket, n));
    socket.on("data", (c: Buffer) => {
      if (preface) {
        preface = false;
        c = c.subarray(PREFACE.length);
      }
      reader.push(c);
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { port: (server.address() as net.AddressInfo).port, server };
}

describe("MeshConnection against a hand-written peer: what each failure means for resending", () => {
  const call = (c: MeshConnection) => c.send({ method: "POST", path: "/x", headers: {}, body: Buffer.from("{}"), deadline: new Deadline(2000) }, undefined);
  const failure = async (p: Promise<unknown>) => {
    const err = await p.then(() => assert.fail("expected a failure"), (e: unknown) => e);
    assert.ok(err instanceof TransportError, String(err));
    return err;
  };
  const connect = (port: number) => new MeshConnection({ host: "127.0.0.1", port, onRetire: () => undefined });

  it("GOAWAY: calls up to the peer's last id are answered, later ones fail as never delivered", async () => {
    const { port, server } = await peer((f, socket) => {
      if (f.stream !== 3) return;
      socket.write(numberFrame(FrameType.GOAWAY, 0, 1));
      socket.write(headFrame(FrameType.RESPONSE, END_STREAM, 1, { s: 200, h: { "content-type": "text/plain" } }, Buffer.from("one")));
    });
    try {
      const c = connect(port);
      const first = call(c);
      const second = call(c);
      const res = await first;
      assert.equal(res.statusCode, 200);
      assert.equal((await failure(second)).delivered, false);
      assert.equal((await failure(second)).code, "GOAWAY");
      assert.equal(c.usable, false, "no new calls on a connection told to go away");
    } finally {
      server.close();
    }
  });

  it("a refused connection: never delivered; a peer that closes with a call on it: delivered (not resent)", async () => {
    const { port, server } = await peer((_f, socket) => socket.destroy());
    await new Promise((r) => server.close(r));
    const refused = await failure(call(connect(port)));
    assert.equal(refused.delivered, false);
    assert.equal(refused.code, "ECONNREFUSED");
    const closing = await peer((_f, socket) => socket.destroy());
    try {
      const lost = await failure(call(connect(closing.port)));
      assert.equal(lost.delivered, true);
    } finally {
      closing.server.close();
    }
  });

  it("a peer that answers the preface as HTTP does not speak mesh: never delivered, MESH_UNSUPPORTED", async () => {
    const server = net.createServer((socket) => socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    try {
      const err = await failure(call(connect((server.address() as net.AddressInfo).port)));
      assert.equal(err.delivered, false);
      assert.equal(err.code, "MESH_UNSUPPORTED");
    } finally {
      server.close();
    }
  });
});

describe("MeshTransport: a call caught by a peer's GOAWAY", () => {
  it("goes once more on a new connection (the peer never saw it), and is answered there", async () => {
    let connections = 0;
    const { port, server } = await peer((f, socket, n) => {
      if (f.type !== FrameType.REQUEST) return;
      connections = n;
      // The first connection closes as if idle, having taken no call; the second answers.
      if (n === 1) socket.end(numberFrame(FrameType.GOAWAY, 0, 0));
      else socket.write(headFrame(FrameType.RESPONSE, END_STREAM, f.stream, { s: 200, h: {} }, Buffer.from(`connection ${n}`)));
    });
    const transport = new MeshTransport();
    try {
      const node = { id: "n-1", service: "s", version: "", address: `127.0.0.1:${port}`, transport: "http", mesh: 1, metadata: {}, endpoints: [], subscriptions: [], registeredAt: "" };
      const res = await transport.send(node, { method: "POST", path: "/", headers: {}, body: Buffer.from("{}"), deadline: new Deadline(2000) });
      assert.equal(res.statusCode, 200);
      assert.equal(res.whole?.toString(), "connection 2", "a whole answer (head and body in one frame) comes as one buffer");
      assert.equal(connections, 2);
    } finally {
      await transport.close();
      server.close();
    }
  });
});
