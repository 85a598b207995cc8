import { registryConformance } from "../conformance/registry.js";
import { NatsServer } from "../support/nats.js";

let nats: NatsServer | undefined;
registryConformance({
  name: "nats",
  where: () => ({ nats: nats!.url }),
  setup: async () => {
    nats = await NatsServer.start();
  },
  teardown: async () => nats?.stop(),
  restart: { down: () => nats!.kill(), up: () => nats!.restart() },
  cluster: {
    start: async () => {
      const servers = await NatsServer.cluster(3);
      return {
        where: { nats: servers.map((s) => s.url).join(",") },
        // A replicated bucket (its own name: the single server's bucket has one replica), and a TTL
        // longer than JetStream's leader election after a server goes.
        extra: ["registry.replicas=3", "registry.bucket=sidecar_registry_r3", "registry.ttl=3s"],
        kill: (i) => servers[i]!.kill(),
        stop: async () => void (await Promise.all(servers.map((s) => s.stop()))),
      };
    },
  },
});
