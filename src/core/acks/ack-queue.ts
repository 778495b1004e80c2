import { EventEmitter } from "node:events";
import type { BatchOutcome } from "../client/client";
import { type OfflineEventsApi, parseBooleanResult } from "../queue/offline-api";
import { Bitrix24Error } from "../rest/errors";
import type { BatchCommand } from "../rest/types";
import {
  type AckTarget,
  asError,
  CLEAR,
  clearParts,
  ERROR,
  type ErrorTarget,
  errorParts,
  invalid,
  type TargetPart,
} from "./ack-arguments";
import { AckGroups, type Chunk, type Waiter } from "./ack-groups";

// The clear and error nodes name the targets by the queue, as before ack-arguments.ts.
export type { AckTarget, ErrorTarget } from "./ack-arguments";

/** Emitted as "acked" after every successful clear/error call. */
export interface AckedNotice {
  kind: "clear" | "error";
  processId: string;
  /** "" when the records were fetched without a connector. */
  authConnector: string;
  ids: number[];
  messageIds: string[];
  allOfProcess: boolean;
}

export interface AckQueueOptions {
  /** How long the first queued target waits for others to join its call. Default 5 ms. */
  flushDelayMs?: number;
  /** Ids per clear/error call; more are split into several calls. Default 500. */
  maxIdsPerCall?: number;
}

export interface AckQueueEvents {
  acked: [AckedNotice];
}

export interface TakenAcks {
  commands: Record<string, BatchCommand>;
  settle(outcome: BatchOutcome | Error): void;
}

/** The portal's batch limit: own flushes never put more commands in one request. */
const MAX_BATCH_COMMANDS = 50;

/**
 * Coalesces acks (event.offline.clear) and failure marks (event.offline.error) of many msgs into few REST calls:
 * every target of one (process id, auth_connector, kind) queued within `flushDelayMs` travels in ONE call, and
 * when several calls are due at once they share one batch request. The queue never sends an empty list (the
 * portal would clear the whole process), never id and message_id together, and clears a whole process only
 * for a target that says `allOfProcess`. Acks never wait for a get: a get that is about to send may `take()`
 * what is queued so it rides along in its batch, and whatever is not taken goes out on the queue's own timer.
 */
export class AckQueue extends EventEmitter<AckQueueEvents> {
  private readonly flushDelayMs: number;
  private readonly groups: AckGroups;
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private closed = false;
  private closing: Promise<void> | undefined;
  /** The queue's own timed call in flight, if any. */
  private sending: Promise<void> | undefined;

  constructor(
    private readonly api: OfflineEventsApi,
    options: AckQueueOptions = {},
  ) {
    super();
    const delay = options.flushDelayMs ?? 5;
    const max = options.maxIdsPerCall ?? 500;
    if (!Number.isFinite(delay) || delay < 0) throw invalid("", "flushDelayMs must be a non-negative number");
    if (!Number.isSafeInteger(max) || max <= 0) throw invalid("", "maxIdsPerCall must be a positive integer");
    this.flushDelayMs = delay;
    this.groups = new AckGroups(api, max);
  }

  /** Resolves once the event.offline.clear call(s) carrying this target succeeded; rejects with a Bitrix24Error. */
  clear(t: AckTarget): Promise<void> {
    return this.accept(CLEAR, () => clearParts(t));
  }

  /** Resolves once the event.offline.error call(s) carrying this target succeeded; rejects with a Bitrix24Error. */
  error(t: ErrorTarget): Promise<void> {
    return this.accept(ERROR, () => errorParts(t));
  }

  /** Targets queued and not yet sent. */
  pending(): number {
    return this.groups.targets;
  }

  /**
   * Hands everything queued to a caller about to send a batch (acks ride along with its get in ONE request).
   * The caller must call settle() with the batch outcome, or the Error that stopped it, exactly once.
   */
  take(): TakenAcks | undefined {
    if (this.closed || this.groups.size === 0) return undefined;
    const chunks = this.drain();
    const commands: Record<string, BatchCommand> = {};
    const keyed: Array<[string, Chunk]> = [];
    chunks.forEach((chunk, i) => {
      const key = `ack_${i}`;
      commands[key] = chunk.command;
      keyed.push([key, chunk]);
    });
    if (keyed.length === 0) return undefined; // every target failed validation: already rejected
    let settled = false;
    let release!: () => void;
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.track(done);
    return {
      commands,
      settle: (outcome: BatchOutcome | Error) => {
        if (settled) return;
        settled = true;
        this.settleBatch(keyed, outcome);
        release();
      },
    };
  }

  /** Sends everything queued now; resolves when those calls finished (their own promises carry the outcome). */
  async flush(): Promise<void> {
    this.stopTimer();
    if (this.groups.size > 0) this.track(this.send(this.drain()));
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /**
   * Flushes, then stops: later clear()/error() calls reject with CLOSED. Targets handed over while the flush
   * runs still go out: Node-RED closes all nodes of a deploy in one loop, and a worker node closing in the same
   * loop as the config node that owns this queue passes its last acks on from its own close handler.
   */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        await new Promise<void>((resolve) => setImmediate(resolve));
        do {
          await this.flush();
        } while (this.groups.size > 0);
        this.closed = true;
        this.stopTimer();
      })();
    }
    return this.closing;
  }

  private assertOpen(method: string): void {
    if (this.closed) {
      throw new Bitrix24Error({
        code: "CLOSED",
        method,
        description: "the ack queue is closed (node redeployed or stopped)",
      });
    }
  }

  /** A target checked (ack-arguments.ts) and queued; a closed queue or a bad target rejects, nothing is queued. */
  private accept(method: string, partsOf: () => TargetPart[]): Promise<void> {
    try {
      this.assertOpen(method);
      return this.enqueue(partsOf());
    } catch (err) {
      return Promise.reject(asError(err, method));
    }
  }

  private enqueue(parts: TargetPart[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        remaining: 0,
        failed: false,
        resolve,
        reject: (err) => {
          if (waiter.failed) return;
          waiter.failed = true;
          reject(err);
        },
      };
      this.groups.add(parts, waiter);
      this.startTimer();
    });
  }

  private startTimer(): void {
    // The window starts with the first queued target and is not pushed back by later ones: bounded latency.
    // While the previous call is still out (waiting on the rate limiter, say), targets keep gathering and go
    // out together when it returns: a flow acking 40 msgs/s against a 2 requests/s portal sends 2 calls/s of
    // 20 ids each instead of 40 single-id calls queued behind the limiter.
    if (this.timer || this.closed || this.sending) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.groups.size === 0) return;
      const sending = this.send(this.drain());
      this.sending = sending;
      this.track(sending);
      const next = () => {
        this.sending = undefined;
        if (this.groups.size > 0) this.startTimer();
      };
      sending.then(next, next);
    }, this.flushDelayMs);
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Empties the queue into calls (ack-groups.ts). */
  private drain(): Chunk[] {
    this.stopTimer();
    return this.groups.drain();
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    const forget = () => {
      this.inFlight.delete(p);
    };
    p.then(forget, forget);
  }

  /** Own flush: one call when one is due, otherwise batches of up to 50 commands. */
  private async send(chunks: Chunk[]): Promise<void> {
    if (chunks.length === 0) return;
    const client = this.api.client;
    if (chunks.length === 1 || client.batchRefusesOffline) {
      await Promise.all(chunks.map((chunk) => this.sendSingle(chunk)));
      return;
    }
    const sends: Array<Promise<void>> = [];
    for (let i = 0; i < chunks.length; i += MAX_BATCH_COMMANDS) {
      const keyed = chunks.slice(i, i + MAX_BATCH_COMMANDS).map((chunk, j): [string, Chunk] => [`ack_${j}`, chunk]);
      const commands = Object.fromEntries(keyed.map(([key, chunk]) => [key, chunk.command]));
      sends.push(
        client.batch(commands).then(
          (outcome) => this.settleBatch(keyed, outcome),
          (err) => this.settleBatch(keyed, asError(err, "batch")),
        ),
      );
    }
    await Promise.all(sends);
  }

  private async sendSingle(chunk: Chunk): Promise<void> {
    const { method, params } = chunk.command;
    try {
      const answer = await this.api.client.call<unknown>(method, params ?? {});
      this.settleChunk(chunk, answer.result, undefined);
    } catch (err) {
      this.settleChunk(chunk, undefined, asError(err, method));
    }
  }

  private settleBatch(keyed: Array<[string, Chunk]>, outcome: BatchOutcome | Error): void {
    for (const [key, chunk] of keyed) {
      const method = chunk.command.method;
      if (outcome instanceof Error) {
        this.settleChunk(chunk, undefined, asError(outcome, method));
      } else if (key in outcome.errors) {
        this.settleChunk(chunk, undefined, asError(outcome.errors[key], method));
      } else if (key in outcome.result) {
        this.settleChunk(chunk, outcome.result[key], undefined);
      } else {
        const description = "the batch stopped before this call ran";
        this.settleChunk(chunk, undefined, new Bitrix24Error({ code: "INTERNAL_SERVER_ERROR", method, description }));
      }
    }
  }

  private settleChunk(chunk: Chunk, result: unknown, error: Bitrix24Error | undefined): void {
    const method = chunk.command.method;
    let failure = error;
    if (!failure && !parseBooleanResult(result)) {
      failure = new Bitrix24Error({
        code: "MALFORMED_ANSWER",
        method,
        description: `the portal answered ${JSON.stringify(result)} instead of true`,
      });
    }
    if (failure) {
      for (const w of chunk.waiters) w.reject(failure);
      return;
    }
    const group = chunk.group;
    const notice: AckedNotice = {
      kind: group.kind === "error" ? "error" : "clear",
      processId: group.processId,
      authConnector: group.authConnector,
      ids: chunk.ids,
      messageIds: chunk.messageIds,
      allOfProcess: group.kind === "process",
    };
    // Listeners first: a get node learns the records are gone before the msg moves on downstream.
    try {
      this.emit("acked", notice);
    } catch {
      // A listener's bug must not turn a successful ack into a failure of the msgs that asked for it.
    }
    for (const w of chunk.waiters) {
      if (w.failed) continue;
      if (--w.remaining === 0) w.resolve();
    }
  }
}
