import { registrationSuite } from "./registration.shared.js";
import { NatsServer } from "../support/nats.js";

let nats: NatsServer | undefined;
registrationSuite({
  name: "nats",
  registry: () => ({ nats: nats!.url }),
  setup: async () => {
    nats = await NatsServer.start();
  },
  teardown: async () => nats?.stop(),
});
