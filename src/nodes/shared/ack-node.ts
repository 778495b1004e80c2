import type { Node, NodeAPI, NodeMessageInFlow } from "node-red";
import type { AckQueue } from "../../core/acks/ack-queue";
import { Bitrix24Error } from "../../core/rest/errors";
import { closeWaitMs } from "./close-wait";
import { errorStatusText, portalConfigError, reportFailure, showConfigError } from "./error-report";
import type { Bitrix24Meta } from "./msg-contract";
import { StatusThrottle } from "./status-throttle";

/**
 * The runtime both ack nodes share (bitrix24-offline-clear, bitrix24-offline-error): read targets from each msg,
 * hand them to the portal's AckQueue (which coalesces them into few REST calls), pass the msg on only once the
 * portal confirmed, report failures to Catch with the original msg, and keep a status of acked / pending / failed.
 */
export interface AckNodeSpec<T> {
  type: string;
  /** What the msg asks for; throws a Bitrix24Error for a msg that cannot be acted on. */
  targets(msg: NodeMessageInFlow): T[];
  submit(acks: AckQueue, target: T): Promise<void>;
  /**
   * Extra time (ms) to gather msgs before handing them to the queue, for flows whose msgs arrive spread out
   * (slow work per event); released early once every msg of a get batch has arrived. 0 = hand over at once.
   */
  holdMs: number;
}

type AckMessage = NodeMessageInFlow & { bitrix24?: Partial<Bitrix24Meta> };

function batchOf(msg: AckMessage): { key: string; index: number; size: number } | undefined {
  const meta = msg.bitrix24;
  const batch = meta?.batch;
  if (!meta || !batch || typeof meta.processId !== "string") return undefined;
  const { index, size } = batch;
  if (!Number.isInteger(index) || !Number.isInteger(size) || size <= 0 || index < 0 || index >= size) return undefined;
  return { key: `${meta.processId}\n${size}`, index, size };
}

/** The `coalesceMs` option: a non-negative number of ms, capped at a minute (acks must not wait long). */
export function holdMsOf(value: unknown): number {
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? Math.min(n, 60_000) : 0;
}

/** What an ack node uses of its portal config node (bitrix24-portal's PortalNode is one): shared/ needs no node folder. */
export interface AckPortal {
  acks?: AckQueue;
  configError?: Bitrix24Error;
}

export function runAckNode<T>(RED: NodeAPI, node: Node, portal: AckPortal | null, spec: AckNodeSpec<T>): void {
  const t = (key: string, params?: Record<string, string | number>) => RED._(`${spec.type}.${key}`, params);
  const configError = portalConfigError(portal, t("errors.noPortal"));

  let acked = 0;
  let failed = 0;
  let pending = 0;
  let lastFailure: Bitrix24Error | undefined;
  let closing = false;
  // Msgs handed over and not settled yet: a count and the close handler's wake-up, not a promise per msg (a
  // drain passes thousands of msgs a second through here).
  let inFlight = 0;
  let onIdle: (() => void) | undefined;

  // --- status, throttled
  const status = new StatusThrottle(() => {
    if (pending > 0) {
      node.status({ fill: "blue", shape: "dot", text: t("status.pending", { pending, acked }) });
    } else if (lastFailure) {
      node.status({ fill: "red", shape: "ring", text: errorStatusText(lastFailure) });
    } else if (failed > 0) {
      node.status({ fill: "green", shape: "dot", text: t("status.ackedWithErrors", { acked, failed }) });
    } else {
      node.status({ fill: "green", shape: "dot", text: t("status.acked", { acked }) });
    }
  });
  const updateStatus = () => {
    if (!closing) status.soon();
  };

  // --- optional hold window before the queue
  const held: Array<() => void> = [];
  let holdTimer: NodeJS.Timeout | undefined;
  const batches = new Map<string, Set<number>>();
  const release = () => {
    if (holdTimer) clearTimeout(holdTimer);
    holdTimer = undefined;
    batches.clear();
    for (const go of held.splice(0)) go();
  };
  const hold = (msg: AckMessage, go: () => void) => {
    if (spec.holdMs <= 0 || closing) {
      go();
      return;
    }
    held.push(go);
    const batch = batchOf(msg);
    if (batch) {
      const seen = batches.get(batch.key) ?? new Set<number>();
      seen.add(batch.index);
      batches.set(batch.key, seen);
      if (seen.size >= batch.size) {
        release(); // the whole get batch is in: nothing more to wait for
        return;
      }
    }
    if (!holdTimer) holdTimer = setTimeout(release, spec.holdMs);
  };

  showConfigError(node, configError);

  node.on("input", (input, send, done) => {
    const msg = input as AckMessage;
    const acks = portal?.acks;
    if (configError || !acks) {
      reportFailure(node, configError ?? new Bitrix24Error({ code: "INVALID_CONFIG" }), msg, done);
      return;
    }
    let targets: T[];
    try {
      targets = spec.targets(msg);
    } catch (err) {
      failed++;
      lastFailure = reportFailure(node, err, msg, done);
      return;
    }
    pending++;
    inFlight++;
    updateStatus();
    const settled = () => {
      if (--inFlight === 0 && onIdle) onIdle();
    };
    hold(msg, () => {
      // One target is the rule (a msg of one event, or one batch): no Promise.all around a single promise.
      const submitted =
        targets.length === 1
          ? spec.submit(acks, targets[0])
          : Promise.all(targets.map((target) => spec.submit(acks, target)));
      submitted.then(
        () => {
          pending--;
          acked++;
          lastFailure = undefined;
          msg.bitrix24 = { ...(msg.bitrix24 ?? {}), acked: true };
          send(msg);
          done();
          updateStatus();
          settled();
        },
        (err) => {
          pending--;
          failed++;
          lastFailure = reportFailure(node, err, msg, done);
          updateStatus();
          settled();
        },
      );
    });
  });

  node.on("close", (_removed: boolean, done: () => void) => {
    closing = true;
    status.cancel();
    release(); // held msgs go to the queue now; the portal node flushes it on its own close
    const acks = portal?.acks;
    if (inFlight === 0) {
      done();
      return;
    }
    let guard: NodeJS.Timeout | undefined;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      onIdle = undefined;
      if (guard) clearTimeout(guard);
      done();
    };
    guard = setTimeout(finish, closeWaitMs(RED));
    onIdle = finish;
    acks?.flush().catch(() => undefined);
  });
}
