import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { registrationSuite } from "./registration.shared.js";

let dir = "";
registrationSuite({
  name: "local",
  registry: () => ({ dir }),
  setup: async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-reg-"));
  },
  teardown: async () => rmSync(dir, { recursive: true, force: true }),
});
