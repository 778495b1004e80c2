import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AckQueue } from "../../src/core/acks/ack-queue";
import type { Bitrix24Client } from "../../src/core/client/client";
import type { Delivery, OfflineConsumerOptions } from "../../src/core/consumer/consumer-types";
import type { OfflineConsumer } from "../../src/core/consumer/offline-consumer";
import { OfflineEventsApi } from "../../src/core/queue/offline-api";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { sandboxClient } from "./sandbox-client";

/**
 * The options of a queue consumer in a core test, as the get node would pass them in ack mode: the client's
 * portal and application, the state directory (none when `over` names the stores), and `over` for what the test
 * is about.
 */
export function consumerOptions(
  client: Bitrix24Client,
  clientId: string,
  stateDir: string | undefined,
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

/** What a core consumer test runs against: a sandbox, a client on it, the offline API, an ack queue, a state folder. */
export interface ConsumerParts {
  sandbox: Sandbox;
  client: Bitrix24Client;
  api: OfflineEventsApi;
  acks: AckQueue;
  stateDir: string;
}

/**
 * Fresh parts before each test (`take` gets them, and may prepare the sandbox); after it the consumers in the
 * returned list are closed, then the ack queue, the client and the sandbox, and the state folder is removed.
 */
export function consumerPartsPerTest(
  prefix: string,
  take: (parts: ConsumerParts) => void | Promise<void>,
): OfflineConsumer[] {
  const consumers: OfflineConsumer[] = [];
  let parts: ConsumerParts | undefined;
  beforeEach(async () => {
    const sandbox = await startSandbox({ rateLimit: false });
    const client = sandboxClient(sandbox, { retry: { maxAttempts: 1 } });
    const api = new OfflineEventsApi(client);
    parts = { sandbox, client, api, acks: new AckQueue(api), stateDir: await fs.mkdtemp(join(tmpdir(), prefix)) };
    await take(parts);
  });
  afterEach(async () => {
    for (const c of consumers.splice(0)) await c.close();
    if (!parts) return;
    await parts.acks.close().catch(() => undefined);
    await parts.client.close();
    await parts.sandbox.close();
    await fs.rm(parts.stateDir, { recursive: true, force: true });
    parts = undefined;
  });
  return consumers;
}

/** The ID of the object a delivered event names (`EVENT_DATA.FIELDS.ID`, as CRM events carry it). */
export function objectIdOf(d: Delivery): string {
  return String((d.event.EVENT_DATA as { FIELDS: { ID: string } }).FIELDS.ID);
}
