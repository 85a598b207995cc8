import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { brokerConformance } from "../conformance/broker.js";
import { RedisServer } from "../support/redis.js";

let redis: RedisServer | undefined;
let dir = "";
brokerConformance({
  name: "redis",
  guarantee: "at-least-once",
  durable: true,
  where: () => ({ dir }),
  // A short claim idle: the kill -9 case's pending messages are claimed within the suite's wait
  // (the default, max(30s, 2 × timeout + retry.max), would take 30 s).
  settings: () => ["broker.kind=redis", `redis.url=${redis!.url}`, "redis.claimIdle=3s"],
  setup: async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-broker-redis-"));
    redis = await RedisServer.start();
  },
  teardown: async () => {
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  },
  restart: { down: () => redis!.kill(), up: () => redis!.restart() },
});
