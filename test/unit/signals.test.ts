import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FirstSignal, SAME_SIGNAL_MS } from "../../src/lifecycle/signals.js";

describe("shutdown signals: npx's forwarded copy of a Ctrl-C is not a second Ctrl-C", () => {
  it("the same signal within SAME_SIGNAL_MS of the first is a copy; later, or another signal, is not", () => {
    const s = new FirstSignal();
    assert.equal(s.isCopy("SIGINT", 1000), false, "nothing came yet");
    assert.equal(s.first("SIGINT", 1000), true);
    assert.equal(s.isCopy("SIGINT", 1000 + SAME_SIGNAL_MS - 1), true);
    assert.equal(s.isCopy("SIGTERM", 1001), false, "another signal is a second request");
    assert.equal(s.isCopy("SIGINT", 1000 + SAME_SIGNAL_MS), false, "a person's second Ctrl-C");
    assert.equal(s.first("SIGINT", 5000), false, "the first stays the first");
  });
});
