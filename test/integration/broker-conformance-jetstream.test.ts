import { brokerConformance } from "../conformance/broker.js";
import { NatsServer } from "../support/nats.js";

let nats: NatsServer | undefined;
brokerConformance({
  name: "jetstream",
  guarantee: "at-least-once",
  durable: true,
  where: () => ({ nats: nats!.url }),
  settings: () => [],
  setup: async () => {
    nats = await NatsServer.start();
  },
  teardown: async () => nats?.stop(),
  restart: { down: () => nats!.kill(), up: () => nats!.restart() },
});
