import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { registryConformance } from "../conformance/registry.js";

let dir = "";
registryConformance({
  name: "local",
  where: () => ({ dir }),
  setup: async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-reg-"));
  },
  teardown: async () => rmSync(dir, { recursive: true, force: true }),
  watches: { unsupported: "the local registry has no server: each watch rescans the directory for its own files, and nothing lists the watches" },
  restart: { unsupported: "no server: the shared directory is the registry, read and written by every sidecar on the machine" },
  cluster: { unsupported: "one machine only: a directory is not replicated (use nats or etcd for more than one machine)" },
});
