import type { OfflineEventsApi } from "../queue/offline-api";
import type { Bitrix24Error } from "../rest/errors";
import type { BatchCommand } from "../rest/types";
import { asError, CLEAR, ERROR, type GroupKind, type TargetPart } from "./ack-arguments";

/**
 * The gathering half of the ack queue (ack-queue.ts sends and settles): targets that arrive between two sends
 * join groups, one per (kind, process id, auth_connector), each item once however many targets name it; a
 * send empties the groups into calls of at most maxIdsPerCall items, in the order the portal must run them.
 */

export interface Waiter {
  /** Parts of the call(s) this target still waits for; resolves when it reaches 0. */
  remaining: number;
  failed: boolean;
  resolve(): void;
  reject(err: Bitrix24Error): void;
}

export interface Group {
  kind: GroupKind;
  processId: string;
  authConnector: string;
  /** Insertion-ordered and deduplicated: numbers for "id", MESSAGE_IDs for "message_id" and "error". */
  items: Map<string | number, Waiter[]>;
  /** Waiters of an allOfProcess target (kind "process"). */
  whole: Waiter[];
}

/** One REST call's worth of a group. */
export interface Chunk {
  group: Group;
  command: BatchCommand;
  ids: number[];
  messageIds: string[];
  waiters: Set<Waiter>;
}

export class AckGroups {
  private groups = new Map<string, Group>();
  private queued = 0;

  constructor(
    private readonly api: OfflineEventsApi,
    private readonly maxIdsPerCall: number,
  ) {}

  /** Groups waiting to be sent. */
  get size(): number {
    return this.groups.size;
  }

  /** Targets queued and not yet sent. */
  get targets(): number {
    return this.queued;
  }

  add(parts: TargetPart[], waiter: Waiter): void {
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
    this.queued++;
  }

  /** Empties the queue into calls; a target is counted in every chunk that carries part of it. */
  drain(): Chunk[] {
    const groups = [...this.groups.values()];
    this.groups = new Map();
    this.queued = 0;
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
}
