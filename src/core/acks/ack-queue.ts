import { EventEmitter } from "node:events";
import type { BatchOutcome } from "../client/client";
import { type OfflineEventsApi, parseBooleanResult } from "../queue/offline-api";
import { Bitrix24Error } from "../rest/errors";
import type { BatchCommand } from "../rest/types";

/** What to delete from the queue: records of one process, by record id and/or MESSAGE_ID, or all of them. */
export interface AckTarget {
  processId: string;
  authConnector?: string;
  ids?: number[];
  messageIds?: string[];
  /** Clears every record the process holds; only when explicitly asked (never implied by an empty list). */
  allOfProcess?: boolean;
}

/** What to mark as failed (event.offline.error takes MESSAGE_IDs only). */
export interface ErrorTarget {
  processId: string;
  authConnector?: string;
  messageIds: string[];
}

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
const CLEAR = "event.offline.clear";
const ERROR = "event.offline.error";

/** A group coalesces into one call (or chunks of one call): the same process, connector and kind of list. */
type GroupKind = "id" | "message_id" | "process" | "error";

interface Waiter {
  /** Parts of the call(s) this target still waits for; resolves when it reaches 0. */
  remaining: number;
  failed: boolean;
  resolve(): void;
  reject(err: Bitrix24Error): void;
}

interface Group {
  kind: GroupKind;
  processId: string;
  authConnector: string;
  /** Insertion-ordered and deduplicated: numbers for "id", MESSAGE_IDs for "message_id" and "error". */
  items: Map<string | number, Waiter[]>;
  /** Waiters of an allOfProcess target (kind "process"). */
  whole: Waiter[];
}

/** One REST call's worth of a group. */
interface Chunk {
  group: Group;
  command: BatchCommand;
  ids: number[];
  messageIds: string[];
  waiters: Set<Waiter>;
}

function invalid(method: string, description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_ARGUMENT", method, description });
}

function asError(err: unknown, method: string): Bitrix24Error {
  if (err instanceof Bitrix24Error) return err;
  const description = err instanceof Error ? err.message : String(err);
  return new Bitrix24Error({ code: "INTERNAL_SERVER_ERROR", method, description, retryable: false }, { cause: err });
}

function processIdOf(method: string, value: unknown): string {
  if (typeof value !== "string" || value.trim() === "") {
    throw invalid(method, "process_id is required: the records' process id from event.offline.get (clear=0)");
  }
  return value.trim();
}

function connectorOf(method: string, value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw invalid(method, "auth_connector must be a string");
  return value.trim();
}

function recordIds(method: string, value: unknown): number[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(method, "id must be an array of record ids");
  return value.map((item) => {
    const n = typeof item === "string" && /^\d+$/.test(item.trim()) ? Number(item) : item;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n <= 0) {
      throw invalid(method, `id must hold positive integer record ids, got ${JSON.stringify(item)}`);
    }
    return n;
  });
}

function messageIdList(method: string, value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(method, "message_id must be an array of MESSAGE_ID strings");
  return value.map((item) => {
    if (typeof item !== "string" || item.trim().length !== 32) {
      throw invalid(method, `message_id must hold 32-character MESSAGE_ID strings, got ${JSON.stringify(item)}`);
    }
    return item.trim();
  });
}

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
  private readonly maxIdsPerCall: number;
  private groups = new Map<string, Group>();
  private queuedTargets = 0;
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
    this.maxIdsPerCall = max;
  }

  /** Resolves once the event.offline.clear call(s) carrying this target succeeded; rejects with a Bitrix24Error. */
  clear(t: AckTarget): Promise<void> {
    try {
      this.assertOpen(CLEAR);
      if (typeof t !== "object" || t === null) throw invalid(CLEAR, "an ack target is required");
      const processId = processIdOf(CLEAR, t.processId);
      const connector = connectorOf(CLEAR, t.authConnector);
      if (t.allOfProcess === true) return this.enqueue([{ kind: "process", processId, connector, items: [] }]);
      const ids = recordIds(CLEAR, t.ids);
      const messageIds = messageIdList(CLEAR, t.messageIds);
      if (ids.length === 0 && messageIds.length === 0) {
        throw invalid(
          CLEAR,
          "nothing to clear: no record ids and no message ids (an empty list would clear every record of the process; ask for allOfProcess to do that)",
        );
      }
      // id and message_id are never sent together: the portal's docs and source disagree on which one wins.
      const parts: Array<{ kind: GroupKind; processId: string; connector: string; items: Array<string | number> }> = [];
      if (ids.length > 0) parts.push({ kind: "id", processId, connector, items: ids });
      if (messageIds.length > 0) parts.push({ kind: "message_id", processId, connector, items: messageIds });
      return this.enqueue(parts);
    } catch (err) {
      return Promise.reject(asError(err, CLEAR));
    }
  }

  /** Resolves once the event.offline.error call(s) carrying this target succeeded; rejects with a Bitrix24Error. */
  error(t: ErrorTarget): Promise<void> {
    try {
      this.assertOpen(ERROR);
      if (typeof t !== "object" || t === null) throw invalid(ERROR, "an error target is required");
      const processId = processIdOf(ERROR, t.processId);
      const connector = connectorOf(ERROR, t.authConnector);
      const messageIds = messageIdList(ERROR, t.messageIds);
      if (messageIds.length === 0) {
        throw invalid(ERROR, "nothing to mark: no message ids (event.offline.error marks records by MESSAGE_ID)");
      }
      return this.enqueue([{ kind: "error", processId, connector, items: messageIds }]);
    } catch (err) {
      return Promise.reject(asError(err, ERROR));
    }
  }

  /** Targets queued and not yet sent. */
  pending(): number {
    return this.queuedTargets;
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

  private enqueue(
    parts: Array<{ kind: GroupKind; processId: string; connector: string; items: Array<string | number> }>,
  ): Promise<void> {
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
      for (const part of parts) {
        const key = `${part.kind}\n${part.processId}\n${part.connector}`;
        let group = this.groups.get(key);
        if (!group) {
          group = {
            kind: part.kind,
            processId: part.processId,
            authConnector: part.connector,
            items: new Map(),
            whole: [],
          };
          this.groups.set(key, group);
        }
        if (part.kind === "process") {
          group.whole.push(waiter);
          continue;
        }
        for (const item of part.items) {
          const list = group.items.get(item);
          if (list) {
            if (!list.includes(waiter)) list.push(waiter);
          } else {
            group.items.set(item, [waiter]);
          }
        }
      }
      this.queuedTargets++;
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

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    const forget = () => {
      this.inFlight.delete(p);
    };
    p.then(forget, forget);
  }

  /** Empties the queue into calls; a target is counted in every chunk that carries part of it. */
  private drain(): Chunk[] {
    this.stopTimer();
    const groups = [...this.groups.values()];
    this.groups = new Map();
    this.queuedTargets = 0;
    // Lists first, whole-process clears after them, marks last: in one batch the portal runs them in order.
    const rank: Record<GroupKind, number> = { id: 0, message_id: 1, process: 2, error: 3 };
    groups.sort((a, b) => rank[a.kind] - rank[b.kind]);
    const chunks: Chunk[] = [];
    for (const group of groups) {
      if (group.kind === "process") {
        this.addChunk(chunks, group, [], new Set(group.whole));
        continue;
      }
      const items = [...group.items.entries()];
      for (let i = 0; i < items.length; i += this.maxIdsPerCall) {
        const slice = items.slice(i, i + this.maxIdsPerCall);
        const waiters = new Set<Waiter>();
        for (const [, list] of slice) for (const w of list) waiters.add(w);
        this.addChunk(
          chunks,
          group,
          slice.map(([item]) => item),
          waiters,
        );
      }
    }
    return chunks;
  }

  private addChunk(chunks: Chunk[], group: Group, items: Array<string | number>, waiters: Set<Waiter>): void {
    const ids = group.kind === "id" ? (items as number[]) : [];
    const messageIds = group.kind === "message_id" || group.kind === "error" ? (items as string[]) : [];
    const connector = group.authConnector ? { auth_connector: group.authConnector } : {};
    let command: BatchCommand;
    try {
      // The api's command builders validate once more, so a queue bug can never reach the portal as a wide clear.
      if (group.kind === "error") {
        command = this.api.errorCommand({ process_id: group.processId, message_id: messageIds, ...connector });
      } else if (group.kind === "process") {
        command = this.api.clearCommand({ process_id: group.processId, ...connector });
      } else if (group.kind === "id") {
        command = this.api.clearCommand({ process_id: group.processId, id: ids, ...connector });
      } else {
        command = this.api.clearCommand({ process_id: group.processId, message_id: messageIds, ...connector });
      }
    } catch (err) {
      const error = asError(err, group.kind === "error" ? ERROR : CLEAR);
      for (const w of waiters) w.reject(error);
      return;
    }
    for (const w of waiters) w.remaining++;
    chunks.push({ group, command, ids, messageIds, waiters });
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
