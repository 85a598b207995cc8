import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AppState } from "../../src/lifecycle/app-state.js";
import { silentLogger } from "../../src/log.js";

/** The order of what the app's health steers, recorded (pure logic: no server involved). */
function recorder(o: { draining?: () => boolean; askApp?: boolean } = {}) {
  const calls: string[] = [];
  const state = new AppState({
    askApp: o.askApp === false ? undefined : async () => (calls.push("askApp"), [{ topic: "t", path: "/t" } as never]),
    subscriptions: {
      add: (c) => void calls.push(`add:${c.length}`),
      start: async () => void calls.push("subscriptions.start"),
      pause: async () => void calls.push("subscriptions.pause"),
      resume: () => void calls.push("subscriptions.resume"),
    },
    announce: () => void calls.push("announce"),
    registrar: { up: async () => void calls.push("up"), down: async (r) => void calls.push(`down:${r}`) },
    natsInbound: { start: async () => void calls.push("nats.start"), stop: async () => void calls.push("nats.stop") },
    draining: o.draining ?? (() => false),
    log: silentLogger(),
  });
  return { calls, state };
}

describe("AppState: what the app's health steers, one transition at a time", () => {
  it("first pass: ask the app, announce, start subscriptions, then take traffic and register; later passes resume", async () => {
    const { calls, state } = recorder();
    state.change("passing", undefined);
    state.change("failing", "503");
    state.change("passing", undefined);
    await state.settled();
    assert.deepEqual(calls, [
      "askApp", "add:1", "announce", "subscriptions.start", "nats.start", "up",
      "down:app health check failing: 503", "nats.stop", "subscriptions.pause",
      "subscriptions.resume", "nats.start", "up",
    ]);
  });

  it("without broker.askApp the app is not asked; a shutdown that began meanwhile is never undone by registering", async () => {
    let draining = false;
    const { calls, state } = recorder({ askApp: false, draining: () => draining });
    state.change("passing", undefined);
    await state.settled();
    assert.deepEqual(calls, ["announce", "subscriptions.start", "nats.start", "up"], "no askApp");
    state.change("failing", "x");
    state.change("passing", undefined);
    draining = true;
    await state.settled();
    assert.deepEqual(calls.slice(4), [], "transitions queued when the shutdown began do nothing (the shutdown deregisters itself)");
  });
});
