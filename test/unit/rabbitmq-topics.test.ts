import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bindingOf, hostOf } from "../../src/broker/rabbitmq.js";
import { subjectMatches } from "../../src/subjects.js";

describe("RabbitMQ: our subjects on AMQP's topic exchange", () => {
  it("literal words and * bind as they are; > binds as #", () => {
    assert.equal(bindingOf("orders.created"), "orders.created");
    assert.equal(bindingOf("orders.*.eu"), "orders.*.eu");
    assert.equal(bindingOf("orders.>"), "orders.#");
    assert.equal(bindingOf(">"), "#");
  });

  it("# takes zero words where > needs one: the consumer's own match drops `orders` for `orders.>`", () => {
    // AMQP would route `orders` to a queue bound with `orders.#`; the subscription must not take it.
    assert.equal(subjectMatches("orders.>", "orders"), false);
    assert.equal(subjectMatches("orders.>", "orders.created"), true);
  });

  it("a literal # word cannot be bound (it is AMQP's wildcard): refused with the reason", () => {
    assert.throws(() => bindingOf("orders.#"), /'#' word is a wildcard in AMQP's topic exchange/);
    assert.equal(bindingOf("orders.a#b"), "orders.a#b", "a # inside a word is literal in AMQP too");
  });

  it("logs name the host and port, never the credentials", () => {
    assert.equal(hostOf("amqp://user:s3cret-password@rabbit.internal:5673/vhost"), "rabbit.internal:5673");
    assert.equal(hostOf("amqps://u:p@rabbit"), "rabbit:5671");
    assert.equal(hostOf("amqp://rabbit"), "rabbit:5672");
    assert.ok(!hostOf("not a url with password").includes("password"));
  });
});
