import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { registryConformance } from "../conformance/registry.js";
import { NatsServer } from "../support/nats.js";

/** The key filter of every consumer on the registry bucket's stream: each is a KV watch. */
async function watchFilters(url: string, bucket = "sidecar_registry"): Promise<string[]> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    const prefix = `$KV.${bucket}.`;
    const out: string[] = [];
    for await (const c of jsm.consumers.list(`KV_${bucket}`)) {
      const filters = c.config.filter_subjects ?? (c.config.filter_subject ? [c.config.filter_subject] : []);
      for (const f of filters) out.push(f.startsWith(prefix) ? f.slice(prefix.length) : f);
    }
    return out.sort();
  } finally {
    await nc.close();
  }
}

let nats: NatsServer | undefined;
registryConformance({
  name: "nats",
  where: () => ({ nats: nats!.url }),
  setup: async () => {
    nats = await NatsServer.start();
  },
  teardown: async () => nats?.stop(),
  restart: { down: () => nats!.kill(), up: () => nats!.restart() },
  watches: () => watchFilters(nats!.url),
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
