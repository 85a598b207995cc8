import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { brokerConformance } from "../conformance/broker.js";
import { RabbitServer } from "../support/rabbitmq.js";

let rabbit: RabbitServer | undefined;
let dir = "";
brokerConformance({
  name: "rabbitmq",
  guarantee: "at-least-once",
  durable: true,
  where: () => ({ dir }),
  settings: () => ["broker.kind=rabbitmq", `rabbitmq.url=${rabbit!.url}`],
  setup: async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-broker-rabbit-"));
    rabbit = await RabbitServer.start();
  },
  teardown: async () => {
    await rabbit?.stop();
    rmSync(dir, { recursive: true, force: true });
  },
  restart: { down: () => rabbit!.kill(), up: () => rabbit!.restart() },
});
