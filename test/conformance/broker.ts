import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp, type ReceivedCall } from "../support/app.js";
import { apiUrl, SidecarProcess, startSidecar, testSettings, waitFor } from "../support/sidecar.js";

type Where = { dir: string } | { nats: string } | { etcd: string };

export interface Unsupported {
  unsupported: string;
}

export interface BrokerBackend {
  /** As the README's broker table names it: local, nats core, jetstream, rabbitmq, redis. */
  name: string;
  /**
   * What the broker promises: at-least-once (every accepted message is delivered or dead-lettered,
   * across crashes and restarts) or at-most-once (never twice, but lost when nobody can take it).
   */
  guarantee: "at-least-once" | "at-most-once";
  /** Whether the suite's subscriptions say `durable: true`. */
  durable: boolean;
  /** Where sidecars find the registry. */
  where: () => Where;
  /** Settings selecting and configuring this broker. */
  settings: () => string[];
  setup: () => Promise<void>;
  teardown: () => Promise<void>;
  /** Stop the broker's server and start it again on the same data. */
  restart: { down(): Promise<void>; up(): Promise<void> } | Unsupported;
}

/** A subscription as the tests write it (sidecar.yaml's shape). */
export interface Sub {
  topic: string;
  path: string;
  name?: string;
  durable?: boolean;
  maxInFlight?: number;
  timeout?: string;
  retry?: { attempts?: number; initial?: string; max?: string };
  deadLetter?: string;
}

const unsupported = (x: object): x is Unsupported => "unsupported" in x;
const numbers = (calls: ReceivedCall[]) => calls.map((c) => (JSON.parse(c.body) as { n: number }).n);
const MESSAGES = 2_000;

/**
 * The broker conformance suite (issue 16): one set of behaviours, run on every broker with its
 * real server. At-most-once brokers are held to their weaker promise (never twice; what arrives
 * while nobody can take it is lost, and counted), which the README's broker table states.
 */
export function brokerConformance(backend: BrokerBackend): void {
  const atLeastOnce = backend.guarantee === "at-least-once";

  describe(`broker conformance: ${backend.name} (${backend.guarantee})`, () => {
    const apps: TestApp[] = [];
    const sidecars: Sidecar[] = [];
    const procs: SidecarProcess[] = [];
    let pub: string;

    const settings = (service: string, app: TestApp, extra: string[] = []) =>
      testSettings({ service, appPort: app.port, registry: backend.where(), extra: [...backend.settings(), ...extra] });
    const subs = (list: Sub[]) => `subscriptions=${JSON.stringify(list.map((s) => ({ durable: backend.durable, ...s })))}`;
    const app = async (name: string) => {
      const a = await TestApp.start(name);
      apps.push(a);
      return a;
    };
    const active = async (base: string, n = 1) =>
      waitFor(async () => {
        const body = (await (await fetch(`${base}/subscriptions`)).json()) as { subscriptions: { state: string }[] };
        return body.subscriptions.length === n && body.subscriptions.every((s) => s.state === "active");
      }, `${n} active subscription(s)`, 15_000);
    const subscriber = async (service: string, list: Sub[], a?: TestApp) => {
      const target = a ?? (await app(service));
      const s = await startSidecar(settings(service, target, [subs(list)]));
      sidecars.push(s);
      await active(apiUrl(s), list.length);
      return { app: target, sidecar: s };
    };
    /** Wait until the publisher's view has the subscribing node (the embedded broker sends by it). */
    const seenBy = async (s: { node: { id: string; service: string } } | { nodeId: string; service: string }) => {
      const id = "node" in s ? s.node.id : s.nodeId;
      const service = "node" in s ? s.node.service : s.service;
      await waitFor(async () => {
        const res = await fetch(`${pub}/registry/${service}`);
        if (res.status !== 200) return false;
        const body = (await res.json()) as { nodes: { id: string; subscriptions: string[] }[] };
        return body.nodes.some((n) => n.id === id && n.subscriptions.length > 0);
      }, `the publisher's view to have ${id}`, 10_000);
    };
    const publish = async (topic: string, body: unknown, headers: Record<string, string> = {}) => {
      const res = await fetch(`${pub}/publish/${topic}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as { id: string; stored: boolean; error?: { code: string } } };
    };
    /** Publish {n} for n in [from, to), 25 at a time (as a busy publisher would); the answers by n. */
    const publishRange = async (topic: string, from: number, to: number) => {
      const answers = new Map<number, { status: number; code?: string }>();
      for (let start = from; start < to; start += 25) {
        const batch = Array.from({ length: Math.min(25, to - start) }, (_, i) => start + i);
        const results = await Promise.all(batch.map((n) => publish(topic, { n })));
        results.forEach((r, i) => answers.set(batch[i]!, { status: r.status, code: r.body.error?.code }));
      }
      return answers;
    };

    before(async () => {
      await backend.setup();
      const s = await startSidecar(settings("publisher", await app("publisher")));
      sidecars.push(s);
      pub = apiUrl(s);
    });

    after(async () => {
      for (const p of procs) if (p.proc.exitCode === null && p.proc.signalCode === null) p.kill("SIGKILL");
      await Promise.all(sidecars.map((s) => s.close()));
      await Promise.all(apps.map((a) => a.stop()));
      await backend.teardown();
    });

    it("a subscriber's app receives the body, its content type, CloudEvents attributes and the x-sidecar-* headers", async () => {
      const { app: a, sidecar } = await subscriber("conf-headers", [{ topic: "conf.headers", path: "/events/headers" }]);
      await seenBy(sidecar);
      const r = await publish("conf.headers", { n: 1, text: "héllo" }, { "ce-type": "com.example.order.created", "ce-source": "/orders" });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      assert.match(r.body.id, /\S/);
      const [call] = await waitFor(() => (a.callsTo("/events/headers").length === 1 ? a.callsTo("/events/headers") : undefined), "the delivery");
      assert.equal(call!.method, "POST");
      assert.deepEqual(JSON.parse(call!.body), { n: 1, text: "héllo" });
      assert.equal(call!.headers["content-type"], "application/json");
      assert.equal(call!.headers["ce-id"], r.body.id);
      assert.equal(call!.headers["ce-type"], "com.example.order.created");
      assert.equal(call!.headers["ce-source"], "/orders");
      assert.equal(call!.headers["ce-specversion"], "1.0");
      assert.equal(call!.headers["x-sidecar-topic"], "conf.headers");
      assert.equal(call!.headers["x-sidecar-attempt"], "1");
      assert.equal(call!.headers["x-sidecar-subscription"], "conf.headers");
    });

    it(`a queue group shares the messages: 100 over two instances, each ${atLeastOnce ? "delivered, none twice on a healthy run" : "at most once"}`, async () => {
      const sub = { topic: "conf.shared", path: "/events/shared" };
      const one = await subscriber("conf-shared", [sub]);
      const two = await subscriber("conf-shared", [sub]);
      await seenBy(one.sidecar);
      await seenBy(two.sidecar);
      for (let n = 0; n < 100; n++) assert.equal((await publish("conf.shared", { n })).status, 202);
      const all = () => [...numbers(one.app.callsTo("/events/shared")), ...numbers(two.app.callsTo("/events/shared"))];
      await waitFor(() => all().length >= 100, "100 deliveries", 10_000);
      assert.deepEqual(all().sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i), "each message once, across the two");
      assert.ok(one.app.callsTo("/events/shared").length > 0 && two.app.callsTo("/events/shared").length > 0, "both instances took some");
    });

    it("a 5xx and a timeout are retried with backoff, then delivered; x-sidecar-attempt counts", async () => {
      const a = await app("conf-retry");
      let calls = 0;
      a.respond = () => (++calls === 1 ? 503 : undefined);
      const { sidecar } = await subscriber("conf-retry", [{ topic: "conf.retry", path: "/events/retry", retry: { attempts: 4, initial: "50ms", max: "200ms" } }], a);
      await seenBy(sidecar);
      assert.equal((await publish("conf.retry", { n: 1 })).status, 202);
      await waitFor(() => a.callsTo("/events/retry").length === 2, "a first attempt (503) and a retry");
      assert.deepEqual(a.callsTo("/events/retry").map((c) => c.headers["x-sidecar-attempt"]), ["1", "2"]);
      const slow = await app("conf-timeout");
      let slowCalls = 0;
      const handler = slow.server.listeners("request")[0] as (...args: unknown[]) => void;
      slow.server.removeAllListeners("request");
      // The first delivery outlives the subscription's timeout (300 ms); the retry is answered at once.
      slow.server.on("request", (req: { url?: string }, res) => (req.url?.startsWith("/events") && ++slowCalls === 1 ? setTimeout(() => handler(req, res), 1_000) : handler(req, res)));
      const { sidecar: timed } = await subscriber("conf-timeout", [{ topic: "conf.timeout", path: "/events/timeout", timeout: "300ms", retry: { attempts: 3, initial: "50ms", max: "100ms" } }], slow);
      await seenBy(timed);
      assert.equal((await publish("conf.timeout", { n: 1 })).status, 202);
      await waitFor(() => slow.callsTo("/events/timeout").some((c) => c.headers["x-sidecar-attempt"] === "2"), "the retry after the timeout");
    });

    it("a 4xx goes to the dead-letter topic exactly once, with the reason", async () => {
      const letters = await subscriber("conf-letters", [{ topic: "conf.poison.dead", path: "/events/dead" }]);
      await seenBy(letters.sidecar);
      const a = await app("conf-poison");
      a.respond = () => 422;
      const { sidecar } = await subscriber("conf-poison", [{ topic: "conf.poison", path: "/events/poison", deadLetter: "conf.poison.dead" }], a);
      await seenBy(sidecar);
      assert.equal((await publish("conf.poison", { n: 7 })).status, 202);
      const [dead] = await waitFor(() => (letters.app.callsTo("/events/dead").length > 0 ? letters.app.callsTo("/events/dead") : undefined), "the dead letter");
      assert.deepEqual(JSON.parse(dead!.body), { n: 7 });
      assert.match(String(dead!.headers["x-sidecar-dead-reason"]), /422/);
      // Once: another message through the same path proves the first is not coming back.
      a.respond = () => undefined;
      assert.equal((await publish("conf.poison", { n: 8 })).status, 202);
      await waitFor(() => a.callsTo("/events/poison").some((c) => JSON.parse(c.body).n === 8), "the next message");
      assert.equal(a.callsTo("/events/poison").filter((c) => JSON.parse(c.body).n === 7).length, 1, "the poisoned message was delivered once");
      assert.equal(letters.app.callsTo("/events/dead").length, 1, "and dead-lettered once");
    });

    it("maxInFlight deliveries at once, never more, while a slow app works through a backlog", async () => {
      const a = await app("conf-slow");
      let now = 0;
      let peak = 0;
      const handler = a.server.listeners("request")[0] as (...args: unknown[]) => void;
      a.server.removeAllListeners("request");
      a.server.on("request", (req: { url?: string }, res: { once(e: string, f: () => void): void }) => {
        if (!req.url?.startsWith("/events")) return handler(req, res);
        now += 1;
        peak = Math.max(peak, now);
        res.once("finish", () => (now -= 1));
        setTimeout(() => handler(req, res), 20);
      });
      const { sidecar } = await subscriber("conf-slow", [{ topic: "conf.slow", path: "/events/slow", maxInFlight: 4 }], a);
      await seenBy(sidecar);
      // All at once: a backlog the app works through.
      for (const [, r] of await publishRange("conf.slow", 0, 60)) assert.equal(r.status, 202);
      let sampledMax = 0;
      await waitFor(async () => {
        const body = (await (await fetch(`${apiUrl(sidecar)}/subscriptions`)).json()) as { subscriptions: { inFlight: number }[] };
        sampledMax = Math.max(sampledMax, body.subscriptions[0]!.inFlight);
        return a.callsTo("/events/slow").length >= 60;
      }, "60 slow deliveries", 15_000);
      assert.equal(peak, 4, "the app saw exactly maxInFlight deliveries at once at the busiest");
      assert.ok(sampledMax <= 4, `GET /subscriptions never showed more than 4 in flight (${sampledMax})`);
    });

    it(`${MESSAGES} numbered messages while the subscriber's sidecar is killed -9 and restarted: ${atLeastOnce ? "none lost" : "none twice; everything sent while it runs arrives"}`, async (t) => {
      const a = await app("conf-crash");
      const sub = subs([{ topic: "conf.crash", path: "/events/crash", maxInFlight: 16, timeout: "2s" }]);
      const first = await SidecarProcess.start(settings("conf-crash", a, [sub]));
      procs.push(first);
      await active(first.apiUrl);
      await seenBy({ nodeId: first.nodeId, service: "conf-crash" });
      const accepted = new Set<number>();
      const take = (answers: Map<number, { status: number }>) => {
        for (const [n, r] of answers) if (r.status === 202) accepted.add(n);
      };
      take(await publishRange("conf.crash", 0, MESSAGES / 4));
      first.kill("SIGKILL");
      await first.exit();
      take(await publishRange("conf.crash", MESSAGES / 4, MESSAGES / 2));
      const second = await SidecarProcess.start(settings("conf-crash", a, [sub]));
      procs.push(second);
      await active(second.apiUrl);
      await seenBy({ nodeId: second.nodeId, service: "conf-crash" });
      const restartedAt = MESSAGES / 2;
      take(await publishRange("conf.crash", MESSAGES / 2, MESSAGES));
      const got = () => numbers(a.callsTo("/events/crash"));
      // One parse of the deliveries per check (the test process also runs the apps and sidecars).
      const allOf = (want: number[]) => () => {
        const have = new Set(got());
        return want.every((n) => have.has(n));
      };
      if (atLeastOnce) await waitFor(allOf([...accepted]), "every accepted message", 30_000);
      else await waitFor(allOf(Array.from({ length: MESSAGES - restartedAt }, (_, i) => restartedAt + i)), "every message sent after the restart", 15_000);
      const distinct = new Set(got());
      const duplicates = got().length - distinct.size;
      const lost = [...accepted].filter((n) => !distinct.has(n)).length;
      t.diagnostic(`${backend.name}: kill -9 run: ${accepted.size} accepted, ${distinct.size} delivered, ${duplicates} duplicates, ${lost} lost`);
      if (atLeastOnce) assert.equal(lost, 0);
      else assert.equal(duplicates, 0, "at most once: never twice");
      second.kill("SIGTERM");
      assert.equal(await second.exit(), 0);
    });

    const restart = backend.restart;
    it(
      `${MESSAGES} numbered messages while the broker's server is stopped and restarted: every 202 delivered, ${atLeastOnce ? "none lost" : "at most once"}`,
      unsupported(restart) ? { skip: `${backend.name}: ${restart.unsupported}` } : {},
      async (t) => {
        if (unsupported(restart)) return;
        const { app: a, sidecar: outageSub } = await subscriber("conf-outage", [{ topic: "conf.outage", path: "/events/outage", maxInFlight: 16 }]);
        const accepted = new Set<number>();
        const refused = new Map<string, number>();
        const take = (answers: Map<number, { status: number; code?: string }>) => {
          for (const [n, r] of answers) {
            if (r.status === 202) accepted.add(n);
            else refused.set(r.code ?? String(r.status), (refused.get(r.code ?? String(r.status)) ?? 0) + 1);
          }
        };
        take(await publishRange("conf.outage", 0, MESSAGES / 4));
        await restart.down();
        take(await publishRange("conf.outage", MESSAGES / 4, MESSAGES / 2));
        await restart.up();
        // Both sidecars back on the broker (an at-most-once broker gives a message to whoever is subscribed at that moment).
        for (const [base, who] of [[pub, "publisher"], [apiUrl(outageSub), "subscriber"]] as const) {
          await waitFor(async () => (await fetch(`${base}/health`)).status === 200, `the ${who} to see the broker again`, 15_000);
        }
        take(await publishRange("conf.outage", MESSAGES / 2, MESSAGES));
        assert.deepEqual([...refused.keys()], refused.size ? ["BROKER_UNAVAILABLE"] : [], "a publish during the outage is refused with 503 BROKER_UNAVAILABLE, never accepted and lost");
        const got = () => numbers(a.callsTo("/events/outage"));
        const upTo = MESSAGES / 2;
        const afterRestart = [...accepted].filter((n) => n >= upTo);
        const expected = atLeastOnce ? [...accepted] : afterRestart;
        const allThere = () => {
          const have = new Set(got());
          return expected.every((n) => have.has(n));
        };
        await waitFor(allThere, atLeastOnce ? "every accepted message" : "every message accepted after the restart", 30_000).catch(async (err: Error) => {
          const have = new Set(got());
          const missing = expected.filter((n) => !have.has(n));
          const state = await (await fetch(`${apiUrl(outageSub)}/subscriptions`)).text();
          throw new Error(`${err.message}: ${missing.length} missing (${missing.slice(0, 20).join(", ")}...), ${have.size} delivered; the subscription: ${state}`);
        });
        const distinct = new Set(got());
        const duplicates = got().length - distinct.size;
        const lost = [...accepted].filter((n) => !distinct.has(n)).length;
        t.diagnostic(`${backend.name}: broker restart run: ${accepted.size} accepted, ${MESSAGES - accepted.size} refused (503), ${distinct.size} delivered, ${duplicates} duplicates, ${lost} lost`);
        if (atLeastOnce) assert.equal(lost, 0);
        else assert.equal(duplicates, 0);
      },
    );
  });
}
