import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { brokerConformance } from "../conformance/broker.js";

let dir = "";
brokerConformance({
  name: "local",
  guarantee: "at-most-once",
  durable: false,
  where: () => ({ dir }),
  settings: () => ["broker.kind=local"],
  setup: async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-broker-local-"));
  },
  teardown: async () => rmSync(dir, { recursive: true, force: true }),
  restart: { unsupported: "no server: each message goes straight from the publisher's sidecar to a subscriber's, and nothing is stored" },
});
