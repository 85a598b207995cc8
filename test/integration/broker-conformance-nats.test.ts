import { brokerConformance } from "../conformance/broker.js";
import { NatsServer } from "../support/nats.js";

let nats: NatsServer | undefined;
const server = {
  where: () => ({ nats: nats!.url }),
  setup: async () => {
    nats = await NatsServer.start();
  },
  teardown: async () => nats?.stop(),
  restart: { down: () => nats!.kill(), up: () => nats!.restart() },
};
brokerConformance({ name: "nats core", guarantee: "at-most-once", durable: false, settings: () => [], ...server });
