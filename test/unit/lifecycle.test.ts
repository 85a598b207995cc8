import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SidecarError } from "../../src/errors.js";
import { HealthChecker } from "../../src/health/checker.js";
import { Listener } from "../../src/http/listener.js";
import { AppClient } from "../../src/inbound/app-client.js";
import { InboundGate } from "../../src/inbound/gate.js";
import { silentLogger } from "../../src/log.js";
import { ComponentStack, Lifecycle } from "../../src/lifecycle/component.js";
import { waitIdle, withDeadline } from "../../src/lifecycle/wait-idle.js";

/** A handle count of active timers, to check nothing is left behind. */
const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

describe("Lifecycle: one start, one close, no reopening", () => {
  it("start twice runs the start hook once; concurrent callers share the promise", async () => {
    let starts = 0;
    const l = new Lifecycle("thing", { start: async () => void (starts += 1) });
    const [a, b] = [l.start(), l.start()];
    assert.equal(a, b);
    await a;
    await l.start();
    assert.equal(starts, 1);
    assert.equal(l.started, true);
  });

  it("a double close returns the same promise and closes once", async () => {
    let closes = 0;
    const l = new Lifecycle("thing", { close: () => void (closes += 1) });
    await l.start();
    const first = l.close();
    assert.equal(l.close(), first);
    await first;
    await l.close();
    assert.equal(closes, 1);
    assert.equal(l.closed, true);
  });

  it("a caller arriving mid-close waits for the same close", async () => {
    let release!: () => void;
    const order: string[] = [];
    const l = new Lifecycle("thing", { close: () => new Promise<void>((r) => (release = r)).then(() => void order.push("closed")) });
    const first = l.close().then(() => order.push("first"));
    await new Promise((r) => setImmediate(r));
    const second = l.close().then(() => order.push("second"));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, [], "nobody returns before the close is done");
    release();
    await Promise.all([first, second]);
    assert.deepEqual(order, ["closed", "first", "second"]);
  });

  it("the close hook gets the deadline", async () => {
    let got: number | undefined;
    await new Lifecycle("thing", { close: (d) => void (got = d) }).close(1234);
    assert.equal(got, 1234);
  });

  it("start after close rejects with CLOSED (503) and does not run the start hook", async () => {
    let starts = 0;
    for (const started of [false, true]) {
      const l = new Lifecycle("widget", { start: () => void (starts += 1) });
      if (started) await l.start();
      await l.close();
      await assert.rejects(l.start(), (err: unknown) => {
        assert.ok(err instanceof SidecarError);
        assert.equal(err.code, "CLOSED");
        assert.equal(err.status, 503);
        assert.match(err.message, /the widget was closed and cannot be started again/);
        return true;
      });
    }
    assert.equal(starts, 1);
  });

  it("a start hook that fails: start rejects, and so does every later start (no retry on the same component)", async () => {
    let starts = 0;
    const l = new Lifecycle("thing", { start: () => { starts += 1; throw new Error("no port"); } });
    await assert.rejects(l.start(), /no port/);
    await assert.rejects(l.start(), /no port/);
    assert.equal(starts, 1);
    await l.close();
  });
});

describe("ComponentStack: closes in reverse start order", () => {
  it("closes last pushed first, one at a time, records the order, and closes each once", async () => {
    const calls: string[] = [];
    const stack = new ComponentStack();
    for (const name of ["a", "b", "c"]) {
      const l = new Lifecycle(name, { close: async (d) => { calls.push(`${name}:${d}`); await new Promise((r) => setImmediate(r)); } });
      await l.start();
      stack.push(name, l);
    }
    await stack.step("drain", () => calls.push("drain"));
    await stack.closeAll(50);
    await stack.closeAll(50);
    assert.deepEqual(calls, ["drain", "c:50", "b:50", "a:50"]);
    assert.deepEqual(stack.closed, ["drain", "c", "b", "a"]);
  });
});

describe("waitIdle and withDeadline", () => {
  it("resolves true at once when already idle", async () => {
    let registered = false;
    assert.equal(await waitIdle(() => true, () => (registered = true), 10_000), true);
    assert.equal(registered, false);
  });

  it("resolves true when the component goes idle, and clears its timer", async () => {
    const before = timers();
    let wake!: () => void;
    const p = waitIdle(() => false, (w) => (wake = w), 60_000);
    assert.equal(timers(), before + 1);
    setImmediate(() => wake());
    assert.equal(await p, true);
    assert.equal(timers(), before, "no timer left behind");
  });

  it("resolves false at the deadline", async () => {
    const before = timers();
    const t0 = Date.now();
    assert.equal(await waitIdle(() => false, () => undefined, 30), false);
    assert.ok(Date.now() - t0 >= 25);
    assert.equal(timers(), before);
  });

  it("withDeadline: the promise's value, or the fallback at the deadline; the timer cleared either way", async () => {
    const before = timers();
    assert.equal(await withDeadline(Promise.resolve("done"), 60_000, "late"), "done");
    assert.equal(await withDeadline(new Promise<string>(() => undefined), 20, "late"), "late");
    await assert.rejects(withDeadline(Promise.reject(new Error("boom")), 60_000, "late"), /boom/);
    assert.equal(timers(), before);
  });
});

describe("the components have the one lifecycle", () => {
  const isClosed = (err: unknown) => err instanceof SidecarError && err.code === "CLOSED";

  it("HealthChecker, AppClient, InboundGate, Listener: close twice is one close; start after close rejects CLOSED", async () => {
    const checker = new HealthChecker({ host: "127.0.0.1", port: 1, interval: 60_000, timeout: 100, failureThreshold: 1, successThreshold: 1 }, silentLogger());
    await checker.start();
    await checker.start();
    const app = new AppClient({ service: "s", host: "127.0.0.1", port: 1 });
    const gate = new InboundGate({ service: "s", accepting: () => true });
    const listener = new Listener("test", (_req, res) => res.end());
    await listener.start("127.0.0.1", 0);
    for (const c of [checker, app, gate]) {
      const first = c.close();
      assert.equal(c.close(), first);
      await first;
      await assert.rejects(c.start(), isClosed);
    }
    await listener.close(100);
    await assert.rejects(listener.start("127.0.0.1", 0), isClosed);
  });

  it("InboundGate.close(deadline) drains (refuses new calls) and waits for the call in flight", async () => {
    const gate = new InboundGate({ service: "s", accepting: () => true });
    assert.equal(gate.enter(), undefined);
    let done = false;
    const closing = gate.close(5_000).then(() => (done = true));
    assert.equal(gate.enter()?.code, "SHUTTING_DOWN");
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(done, false, "still waiting for the call in flight");
    gate.leave();
    await closing;
    assert.equal(done, true);
  });
});
