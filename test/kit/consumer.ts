import type { Bitrix24Client } from "../../src/core/client/client";
import type { OfflineConsumerOptions } from "../../src/core/consumer/consumer-types";

/**
 * The options of a queue consumer in a core test, as the get node would pass them in ack mode: the client's
 * portal and application, the state directory, and `over` for what the test is about.
 */
export function consumerOptions(
  client: Bitrix24Client,
  clientId: string,
  stateDir: string,
  over: Partial<OfflineConsumerOptions> = {},
): OfflineConsumerOptions {
  return {
    portalHost: client.portalHost,
    clientId,
    stateDir,
    mode: "ack",
    limit: 50,
    errorRecords: false,
    authConnector: "",
    drain: true,
    maxInFlight: 0,
    ackTimeoutMs: 60_000,
    maxDeliveries: 3,
    prefetch: 1,
    allowAtMostOnce: false,
    orphanSweep: false,
    ...over,
  };
}
