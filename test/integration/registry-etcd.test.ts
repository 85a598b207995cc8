import { registryConformance } from "../conformance/registry.js";
import { EtcdServer } from "../support/etcd.js";

let etcd: EtcdServer | undefined;
registryConformance({
  name: "etcd",
  where: () => ({ etcd: etcd!.url }),
  // etcd's leases count whole seconds.
  ttl: 2_000,
  setup: async () => {
    etcd = await EtcdServer.start();
  },
  teardown: async () => etcd?.stop(),
  watches: { unsupported: "etcd has no API that lists a server's watchers (the client carries them all on one gRPC stream)" },
  restart: { down: () => etcd!.kill(), up: () => etcd!.restart() },
  cluster: {
    start: async () => {
      const members = await EtcdServer.cluster(3);
      return {
        where: { etcd: members.map((m) => m.url).join(",") },
        extra: [],
        kill: (i) => members[i]!.kill(),
        stop: async () => void (await Promise.all(members.map((m) => m.stop()))),
      };
    },
  },
});
