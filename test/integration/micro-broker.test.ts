import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

/** A frame as micro's Go clients read it: json.Unmarshal into broker.Message{Header map[string]string; Body []byte}. */
interface Frame {
  Header: Record<string, string>;
  Body: string;
}

/** A WebSocket subscriber as micro's README dials it: ws://host/broker?topic=foo[&queue=q]. */
async function subscriber(base: string, query: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; frames: Frame[]; bodies: () => string[] }> {
  const ws = new WebSocket(`${base.replace("http://", "ws://")}/broker?${query}`, { headers });
  const frames: Frame[] = [];
  ws.on("message", (data) => frames.push(JSON.parse(String(data)) as Frame));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return { ws, frames, bodies: () => frames.map((f) => Buffer.from(f.Body, "base64").toString()) };
}

/** The status an upgrade is refused with (the WebSocket never opens). */
function refusedUpgrade(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once("unexpected-response", (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    ws.once("open", () => reject(new Error("the upgrade was accepted")));
    ws.once("error", () => undefined);
  });
}

const closeAll = async (list: WebSocket[]) => {
  await Promise.all(list.map((ws) => (ws.readyState === ws.CLOSED ? undefined : new Promise((r) => { ws.once("close", r); ws.close(); }))));
};

for (const backbone of ["local", "nats"] as const) {
  describe(`micro's /broker on the ${backbone} broker: POST publishes, a WebSocket subscribes`, () => {
    let dir: string;
    let nats: NatsServer | undefined;
    const apps: TestApp[] = [];
    const sidecars: Sidecar[] = [];
    const sockets: WebSocket[] = [];
    let pub: string;
    let sub: string;
    let events: TestApp;

    const registry = () => (backbone === "local" ? { dir } : { nats: nats!.url });
    const start = async (service: string, extra: string[] = []) => {
      const app = await TestApp.start(service);
      apps.push(app);
      const s = await startSidecar(testSettings({ service, appPort: app.port, registry: registry(), extra }));
      sidecars.push(s);
      return { app, base: apiUrl(s) };
    };

    before(async () => {
      dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-microbroker-"));
      if (backbone === "nats") nats = await NatsServer.start();
      pub = (await start("publisher")).base;
      const s = await start("subscriber", [`subscriptions=${JSON.stringify([{ topic: "ws.frames", path: "/events" }])}`]);
      sub = s.base;
      events = s.app;
      await waitFor(async () => ((await (await fetch(`${sub}/subscriptions`)).json()) as { subscriptions: { state: string }[] }).subscriptions[0]?.state === "active", "the app's subscription active");
    });

    after(async () => {
      await closeAll(sockets);
      await teardown({ sidecars, apps, ...(nats ? { nats } : {}) });
      rmSync(dir, { recursive: true, force: true });
    });

    /** Publish until the subscriber has seen a marker: the WebSocket's subscription has reached the publisher's broker. */
    const ready = async (topic: string, s: { bodies: () => string[] }) => {
      await waitFor(async () => {
        await fetch(`${pub}/broker?topic=${topic}`, { method: "POST", body: "ready?" });
        return s.bodies().includes("ready?");
      }, "the WebSocket subscription in place", 10_000);
    };

    it("POST /broker?topic= publishes with the request's headers as message headers; a WebSocket subscriber gets go-micro's broker.Message frame", async () => {
      const s = await subscriber(sub, "topic=foo");
      sockets.push(s.ws);
      await ready("foo", s);
      const res = await fetch(`${pub}/broker?topic=foo`, { method: "POST", headers: { Timestamp: "1499951537", "content-type": "text/plain" }, body: "Hello World!" });
      assert.equal(res.status, 200);
      const frame = await waitFor(() => s.frames.find((f) => Buffer.from(f.Body, "base64").toString() === "Hello World!"), "the frame");
      assert.deepEqual(Object.keys(frame).sort(), ["Body", "Header"], "go-micro's field names, as Go's json.Marshal writes them");
      assert.equal(frame.Header.Timestamp, "1499951537", "a request header became a message header, in Go's canonical form");
      assert.equal(frame.Header["Content-Type"], "text/plain");
      assert.equal(frame.Header.Authorization, undefined);
      assert.equal(Object.keys(frame.Header).some((k) => k.toLowerCase().startsWith("x-sidecar-")), false, "no internal header reaches a subscriber");
    });

    it("a frame a WebSocket client sends is published to its topic with the upgrade's Content-Type (default text/plain)", async () => {
      const s = await subscriber(sub, "topic=ws.frames");
      sockets.push(s.ws);
      await waitFor(async () => {
        s.ws.send("from the socket");
        return events.callsTo("/events").some((c) => c.body === "from the socket");
      }, "the frame delivered to the app's subscription", 10_000);
      const call = events.callsTo("/events").find((c) => c.body === "from the socket")!;
      assert.equal(call.headers["content-type"], "text/plain");
      assert.equal(call.headers["ce-specversion"], "1.0", "a CloudEvent like every other message");
      const typed = await subscriber(pub, "topic=ws.typed", { "content-type": "application/json" });
      sockets.push(typed.ws);
      const listener = await subscriber(sub, "topic=ws.typed");
      sockets.push(listener.ws);
      await waitFor(async () => {
        typed.ws.send('{"n":1}');
        return listener.bodies().includes('{"n":1}');
      }, "the typed frame at the other subscriber", 10_000);
      assert.equal(listener.frames.find((f) => Buffer.from(f.Body, "base64").toString() === '{"n":1}')!.Header["Content-Type"], "application/json");
    });

    it("queue= spreads messages over the group's subscribers (each message once); without it every subscriber gets every message", async () => {
      const q1 = await subscriber(sub, "topic=jobs&queue=workers");
      const q2 = await subscriber(sub, "topic=jobs&queue=workers");
      const all = await subscriber(sub, "topic=jobs");
      sockets.push(q1.ws, q2.ws, all.ws);
      await ready("jobs", all);
      await waitFor(() => q1.bodies().length + q2.bodies().length >= 1, "the group got the readiness marker");
      const before = q1.bodies().length + q2.bodies().length;
      for (let n = 0; n < 20; n++) assert.equal((await fetch(`${pub}/broker?topic=jobs`, { method: "POST", body: `job ${n}` })).status, 200);
      await waitFor(() => all.bodies().filter((b) => b.startsWith("job ")).length === 20, "all 20 at the queue-less subscriber");
      await waitFor(() => q1.bodies().length + q2.bodies().length - before >= 20, "20 across the group");
      const group = [...q1.bodies(), ...q2.bodies()].filter((b) => b.startsWith("job "));
      assert.equal(group.length, 20, "each message once across the group");
      assert.equal(new Set(group).size, 20);
      assert.ok(q1.bodies().some((b) => b.startsWith("job ")) && q2.bodies().some((b) => b.startsWith("job ")), "both members took some");
    });

    it("a frame over 16 KiB (micro's read limit) closes its WebSocket with 1009 and publishes nothing", async () => {
      const s = await subscriber(sub, "topic=ws.big");
      const closed = new Promise<number>((r) => s.ws.once("close", (c) => r(c)));
      s.ws.send(Buffer.alloc(16_385, "x"));
      assert.equal(await closed, 1009);
    });

    it("bad requests answer a clear 4xx: no topic, a control character, GET without an upgrade, another method, an upgrade elsewhere", async () => {
      const code = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;
      let res = await fetch(`${pub}/broker`, { method: "POST", body: "x" });
      assert.equal(res.status, 400);
      assert.equal(await code(res), "INVALID_TOPIC");
      res = await fetch(`${pub}/broker?topic=a%01b`, { method: "POST", body: "x" });
      assert.equal(res.status, 400);
      assert.equal(await code(res), "INVALID_TOPIC");
      res = await fetch(`${pub}/broker?topic=foo`);
      assert.equal(res.status, 400);
      assert.equal(await code(res), "INVALID_REQUEST");
      res = await fetch(`${pub}/broker?topic=foo`, { method: "PUT", body: "x" });
      assert.equal(res.status, 405);
      res = await fetch(`${pub}/broker?topic=foo`, { method: "POST", headers: { "x-sidecar-caller": "evil" }, body: "x" });
      assert.equal(res.status, 400);
      const ws = pub.replace("http://", "ws://");
      assert.equal(await refusedUpgrade(`${ws}/broker`), 400, "an upgrade without a topic");
      assert.equal(await refusedUpgrade(`${ws}/broker?topic=a%20b`), 400, "an upgrade with a space in the topic");
      assert.equal(await refusedUpgrade(`${ws}/elsewhere`), 404);
    });
  });
}

describe("micro's /broker behind api.token", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-microbroker-token-"));
    const app = await TestApp.start("guarded");
    apps.push(app);
    sidecars.push(await startSidecar(testSettings({ service: "guarded", appPort: app.port, registry: { dir }, extra: ["api.token=broker-test-token-0123456"] })));
  });
  after(async () => {
    await teardown({ sidecars, apps });
    rmSync(dir, { recursive: true, force: true });
  });

  it("a WebSocket upgrade without the token is refused 401; with it, it subscribes", async () => {
    const base = apiUrl(sidecars[0]!);
    assert.equal(await refusedUpgrade(`${base.replace("http://", "ws://")}/broker?topic=foo`), 401);
    const s = await subscriber(base, "topic=foo", { authorization: "Bearer broker-test-token-0123456" });
    assert.equal(s.ws.readyState, s.ws.OPEN);
    await closeAll([s.ws]);
  });
});

describe("micro's /broker: the WebSocket bound", () => {
  it("a 257th WebSocket subscriber is refused 503 OVERLOADED, and a slot comes back when one closes", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-microbroker-bound-"));
    const app = await TestApp.start("bounded");
    const s = await startSidecar(testSettings({ service: "bounded", appPort: app.port, registry: { dir } }));
    const held: WebSocket[] = [];
    try {
      const base = apiUrl(s);
      // Opened together, as a burst of clients would: the bound holds even mid-handshake.
      const opened = await Promise.allSettled(Array.from({ length: 256 }, () => subscriber(base, "topic=crowd")));
      for (const o of opened) if (o.status === "fulfilled") held.push(o.value.ws);
      assert.equal(held.length, 256, "256 subscribers fit");
      assert.equal(await refusedUpgrade(`${base.replace("http://", "ws://")}/broker?topic=crowd`), 503);
      await closeAll([held.pop()!]);
      await waitFor(async () => {
        const r = await subscriber(base, "topic=crowd").catch(() => undefined);
        if (r) held.push(r.ws);
        return r !== undefined;
      }, "a slot free again");
    } finally {
      await closeAll(held);
      await s.close();
      await app.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("micro's /broker and shutdown", () => {
  it("a sidecar shutting down closes its WebSocket subscribers with 1001 (going away) and does not wait on them", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-microbroker-close-"));
    const app = await TestApp.start("closing");
    const s = await startSidecar(testSettings({ service: "closing", appPort: app.port, registry: { dir } }));
    try {
      const sub = await subscriber(apiUrl(s), "topic=bye");
      const code = new Promise<number>((r) => sub.ws.once("close", (c) => r(c)));
      await s.close();
      assert.equal(await code, 1001);
    } finally {
      await s.close();
      await app.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
