import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AckQueue } from "../../src/core/acks/ack-queue";
import type { Bitrix24Client, ClientOptions } from "../../src/core/client/client";
import { OfflineConsumer, type OfflineConsumerOptions } from "../../src/core/consumer/offline-consumer";
import { OfflineEventsApi } from "../../src/core/queue/offline-api";
import type { Bitrix24Error } from "../../src/core/rest/errors";
import { FileTokenStore } from "../../src/core/state/token-store";
import { type Sandbox, type SandboxOptions, startSandbox } from "../../src/sandbox";
import { consumerOptions } from "../kit/consumer";
import { sandboxClient } from "../kit/sandbox-client";
import { DeliveryBook, FaultCounter, sleep } from "./ledger";

/**
 * The get → work → clear path without Node-RED: the same client, ack queue and consumer the nodes run, with
 * a "flow" that acks every delivered event through the ack queue in a later turn, as a clear node does.
 * Retry delays are tiny so fault storms finish in test time; the behaviour is the product's.
 */
export interface CoreRig {
  sandbox: Sandbox;
  client: Bitrix24Client;
  api: OfflineEventsApi;
  acks: AckQueue;
  consumer: OfflineConsumer;
  book: DeliveryBook;
  counter: FaultCounter;
  stateDir: string;
  /** Errors the flow saw (acks that failed for good, drains that failed). */
  failures: Bitrix24Error[];
  /** MESSAGE_IDs the flow chose to mark as failed instead of clearing (see `markEvery`). */
  marked: Set<string>;
  /** Triggers drains (like a safety poll, every `pollMs`) until the queue is empty and no ack is pending. */
  drainUntilEmpty(timeoutMs: number, pollMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface CoreRigOptions {
  sandbox?: SandboxOptions;
  client?: Partial<ClientOptions>;
  consumer?: Partial<OfflineConsumerOptions>;
  /** The flow marks every n-th delivered event with event.offline.error instead of clearing it. */
  markEvery?: number;
  /** Use this state directory (restarts); default a fresh one. */
  stateDir?: string;
}

export const FAST_RETRY = { maxAttempts: 6, baseDelayMs: 5, maxDelayMs: 40 };

export async function coreRig(options: CoreRigOptions = {}): Promise<CoreRig> {
  const sandbox = await startSandbox({ rateLimit: false, ...options.sandbox });
  const c = sandbox.credentials;
  const stateDir = options.stateDir ?? (await fs.mkdtemp(join(tmpdir(), "b24-rel-")));
  const client = sandboxClient(sandbox, {
    retry: FAST_RETRY,
    tokenStore: new FileTokenStore(stateDir),
    ...options.client,
  });
  const api = new OfflineEventsApi(client);
  const acks = new AckQueue(api);
  const consumer = new OfflineConsumer(
    api,
    acks,
    consumerOptions(client, c.clientId, stateDir, {
      maxInFlight: 500,
      ackTimeoutMs: 400,
      maxDeliveries: 1000,
      orphanSweep: true,
      orphanAgeMs: 200,
      ...options.consumer,
    }),
  );
  const book = new DeliveryBook();
  book.noteQueue(sandbox);
  const counter = new FaultCounter().watch(client);
  const failures: Bitrix24Error[] = [];
  const marked = new Set<string>();
  let seen = 0;

  consumer.on("failure", (err) => failures.push(err));
  consumer.on("deliver", (group) => {
    for (const d of group.deliveries) book.deliver(d.id);
    // The flow works in a later turn, like msgs passing through Node-RED.
    setImmediate(() => {
      for (const d of group.deliveries) {
        const processId = group.processId;
        if (processId === null) {
          book.ack(d.id); // auto mode: the portal deleted it when it handed it out
          continue;
        }
        const mark = options.markEvery !== undefined && ++seen % options.markEvery === 0;
        book.request(d.id);
        const done = mark
          ? acks.error({ processId, messageIds: [d.event.MESSAGE_ID] }).then(() => marked.add(d.event.MESSAGE_ID))
          : acks.clear({ processId, ids: [d.id] }).then(() => book.ack(d.id));
        done.catch((err: Bitrix24Error) => failures.push(err));
      }
    });
  });

  const rig: CoreRig = {
    sandbox,
    client,
    api,
    acks,
    consumer,
    book,
    counter,
    stateDir,
    failures,
    marked,
    async drainUntilEmpty(timeoutMs: number, pollMs = 20) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const q = sandbox.stats().queue;
        const waiting = options.markEvery ? q.total - q.error : q.total;
        if (waiting === 0 && acks.pending() === 0 && consumer.state.pending === 0) return;
        if (Date.now() > end) {
          throw new Error(
            `not drained after ${timeoutMs} ms: queue ${JSON.stringify(q)}, pending ${consumer.state.pending}`,
          );
        }
        await consumer.trigger().catch((err: Bitrix24Error) => failures.push(err));
        await sleep(pollMs);
      }
    },
    async close() {
      counter.stop();
      await consumer.close();
      await acks.close().catch(() => undefined);
      client.close();
      await sandbox.close();
      if (!options.stateDir) await fs.rm(stateDir, { recursive: true, force: true });
    },
  };
  return rig;
}
