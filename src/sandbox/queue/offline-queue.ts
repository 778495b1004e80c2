import { createHash, randomInt } from "node:crypto";
import { type Condition, matches, type SortKey, sorter } from "./queue-filter";
import type { QueueRecord } from "./queue-record";

/**
 * The offline queue of one application, in memory, with the semantics the REST module's source shows
 * (REFERENCE.md, "What the portal's REST module actually does").
 *
 * Indexes keep every per-event operation O(1) amortised, so a million queued events stay cheap:
 * - `waiting`: per (connector, error flag) the records no process holds, in insertion order. New records and
 *   collapsed ones are (re)inserted at the end with the current time, so for ERROR=0 that order IS the default
 *   `TIMESTAMP_X ASC` order and an unfiltered get just takes the first `limit` entries.
 * - `processes`: the records each process id holds.
 * - `copies`: every record per (connector, MESSAGE_ID), for collapsing and for event.offline.error.
 */

export interface SelectOptions {
  conditions: readonly Condition[];
  /** null = the default order, TIMESTAMP_X ASC. */
  order: readonly SortKey[] | null;
  limit: number;
  connector: string;
  error: 0 | 1;
}

export interface QueueCounts {
  total: number;
  unprocessed: number;
  held: number;
  error: number;
}

const DEFAULT_ORDER: readonly SortKey[] = [{ field: "TIMESTAMP_X", desc: false }];
const PROCESS_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** The portal's process ids look like `yh3gu929sf0d32lsfysqas2y1hlpp09q`: 32 random [a-z0-9]. */
export function newProcessId(): string {
  let id = "";
  for (let i = 0; i < 32; i++) id += PROCESS_ID_ALPHABET[randomInt(PROCESS_ID_ALPHABET.length)];
  return id;
}

/** MESSAGE_ID = md5 of `EVENT_NAME|<JSON of EVENT_DATA>` (EventOfflineTable.php joins the two with "|"). */
export function messageIdOf(eventName: string, eventData: unknown): string {
  return createHash("md5")
    .update(`${eventName}|${JSON.stringify(eventData ?? null)}`)
    .digest("hex");
}

function key(a: string, b: string | number): string {
  return `${a}\u0000${b}`;
}

export class OfflineQueue {
  private readonly records = new Map<number, QueueRecord>();
  private readonly waiting = new Map<string, Map<number, QueueRecord>>();
  private readonly processes = new Map<string, Map<number, QueueRecord>>();
  private readonly copies = new Map<string, QueueRecord | QueueRecord[]>();
  private readonly perConnector = new Map<string, number>();
  private nextId = 1;
  private seq = 0;
  created = 0;
  deleted = 0;
  /** Gets that held records under a new process id (the holdAnswerMs fault waits after one). */
  holds = 0;

  /** A change of a portal object: collapses into the waiting ERROR=0 record with the same MESSAGE_ID, if any. */
  add(
    eventName: string,
    eventData: unknown,
    eventAdditional: unknown,
    connector: string,
    nowSec: number,
  ): { record: QueueRecord; collapsed: boolean } {
    const name = eventName.toUpperCase();
    const messageId = messageIdOf(name, eventData);
    const target = this.collapseTarget(connector, messageId);
    if (target) {
      const bucket = this.waitingBucket(connector, 0);
      bucket.delete(target.id);
      target.tsSec = nowSec;
      target.seq = ++this.seq;
      target.eventData = eventData;
      target.eventAdditional = eventAdditional;
      bucket.set(target.id, target);
      return { record: target, collapsed: true };
    }
    const record: QueueRecord = {
      id: this.nextId++,
      tsSec: nowSec,
      seq: ++this.seq,
      eventName: name,
      eventData,
      eventAdditional,
      messageId,
      connector,
      processId: "",
      error: 0,
    };
    this.records.set(record.id, record);
    this.waitingBucket(connector, 0).set(record.id, record);
    this.addCopy(record);
    this.perConnector.set(connector, (this.perConnector.get(connector) ?? 0) + 1);
    this.created++;
    return { record, collapsed: false };
  }

  /**
   * get without process_id: takes up to `limit` waiting records and either deletes them (clear=1) or marks
   * them with a NEW process id (clear=0). Each call runs to completion before the next, so parallel gets
   * receive disjoint sets, as on the portal (where a row lock does it).
   */
  take(options: SelectOptions, clear: boolean): { processId: string | null; records: QueueRecord[] } {
    const selected = this.selectWaiting(options);
    if (clear) {
      for (const record of selected) this.remove(record);
      return { processId: null, records: selected };
    }
    const processId = newProcessId();
    const held = new Map<number, QueueRecord>();
    const bucket = this.waitingBucket(options.connector, options.error);
    for (const record of selected) {
      bucket.delete(record.id);
      record.processId = processId;
      held.set(record.id, record);
    }
    if (held.size > 0) {
      this.processes.set(processId, held);
      this.holds++;
    }
    return { processId, records: selected };
  }

  /**
   * get WITH process_id: that process's records (same connector and error flag); with clear=1 the source
   * then deletes the whole process, including records `limit` left out of the answer.
   */
  reselect(processId: string, options: SelectOptions, clear: boolean): QueueRecord[] {
    const held = processId === "" ? undefined : this.processes.get(processId);
    if (!held) return [];
    const found: QueueRecord[] = [];
    for (const record of held.values()) {
      if (
        record.connector === options.connector &&
        record.error === options.error &&
        matches(record, options.conditions)
      ) {
        found.push(record);
      }
    }
    found.sort(sorter(options.order ?? DEFAULT_ORDER));
    const selected = found.slice(0, options.limit);
    if (clear) {
      for (const record of [...held.values()]) if (record.connector === options.connector) this.remove(record);
    }
    return selected;
  }

  /**
   * event.offline.clear: the process's records of this connector, narrowed by message ids (checked first, as
   * the source does) or else by ids; with neither, every record of the process. Returns how many went.
   */
  clear(processId: string, messageIds: readonly string[] | null, ids: readonly number[] | null, conn: string): number {
    const held = processId === "" ? this.waiting.get(key(conn, 0)) : this.processes.get(processId);
    if (!held) return 0;
    let victims: QueueRecord[];
    if (messageIds && messageIds.length > 0) {
      const wanted = new Set(messageIds);
      victims = [...held.values()].filter((r) => wanted.has(r.messageId));
    } else if (ids && ids.length > 0) {
      victims = [];
      for (const id of ids) {
        const record = held.get(id);
        if (record) victims.push(record);
      }
    } else {
      victims = [...held.values()];
    }
    let count = 0;
    for (const record of victims) {
      if (record.connector !== conn) continue;
      this.remove(record);
      count++;
    }
    return count;
  }

  /**
   * event.offline.error: only ERROR=0 rows are touched. Those held by `processId` become ERROR=1 and are
   * released (PROCESS_ID cleared, so `get error=1` finds them); every other ERROR=0 copy with the same
   * MESSAGE_ID (waiting, or held by another process) is deleted.
   */
  markError(processId: string, messageIds: readonly string[], conn: string): void {
    for (const messageId of new Set(messageIds)) {
      for (const record of this.copiesOf(conn, messageId)) {
        if (record.error !== 0) continue;
        if (record.processId === processId) {
          this.detach(record);
          record.error = 1;
          record.processId = "";
          record.seq = ++this.seq;
          this.waitingBucket(conn, 1).set(record.id, record);
        } else {
          this.remove(record);
        }
      }
    }
  }

  /** event.offline.list: read-only, every record of the connector, default order ID ASC, fixed page size. */
  list(
    conditions: readonly Condition[],
    order: readonly SortKey[] | null,
    start: number,
    pageSize: number,
    conn: string,
  ): { records: QueueRecord[]; total: number } {
    if (conditions.length === 0 && order === null) {
      // Records sit in ID order already: skip to `start` without sorting.
      const total = this.perConnector.get(conn) ?? 0;
      const page: QueueRecord[] = [];
      let index = 0;
      for (const record of this.records.values()) {
        if (record.connector !== conn) continue;
        if (index++ < start) continue;
        page.push(record);
        if (page.length >= pageSize) break;
      }
      return { records: page, total };
    }
    const found: QueueRecord[] = [];
    for (const record of this.records.values()) {
      if (record.connector === conn && matches(record, conditions)) found.push(record);
    }
    if (order) found.sort(sorter(order));
    return { records: found.slice(start, start + pageSize), total: found.length };
  }

  counts(): QueueCounts {
    let unprocessed = 0;
    let error = 0;
    for (const [k, bucket] of this.waiting) {
      if (k.endsWith("\u00000")) unprocessed += bucket.size;
      else error += bucket.size;
    }
    const total = this.records.size;
    return { total, unprocessed, error, held: total - unprocessed - error };
  }

  all(): IterableIterator<QueueRecord> {
    return this.records.values();
  }

  reset(): void {
    this.records.clear();
    this.waiting.clear();
    this.processes.clear();
    this.copies.clear();
    this.perConnector.clear();
    this.holds = 0;
    this.nextId = 1;
    this.seq = 0;
    this.created = 0;
    this.deleted = 0;
  }

  private selectWaiting(options: SelectOptions): QueueRecord[] {
    const bucket = this.waiting.get(key(options.connector, options.error));
    if (!bucket || options.limit <= 0) return [];
    const defaultOrder =
      options.order === null ||
      (options.order.length === 1 && options.order[0].field === "TIMESTAMP_X" && !options.order[0].desc);
    // ERROR=0 buckets are in TIMESTAMP_X order by construction; error records entered theirs when marked.
    if (defaultOrder && options.error === 0) {
      const selected: QueueRecord[] = [];
      for (const record of bucket.values()) {
        if (options.conditions.length === 0 || matches(record, options.conditions)) {
          selected.push(record);
          if (selected.length >= options.limit) break;
        }
      }
      return selected;
    }
    const found: QueueRecord[] = [];
    for (const record of bucket.values()) if (matches(record, options.conditions)) found.push(record);
    found.sort(sorter(options.order ?? DEFAULT_ORDER));
    return found.slice(0, options.limit);
  }

  private waitingBucket(conn: string, error: 0 | 1): Map<number, QueueRecord> {
    const k = key(conn, error);
    let bucket = this.waiting.get(k);
    if (!bucket) {
      bucket = new Map();
      this.waiting.set(k, bucket);
    }
    return bucket;
  }

  /** Takes a record out of whichever bucket holds it (waiting or a process). */
  private detach(record: QueueRecord): void {
    if (record.processId === "") {
      this.waiting.get(key(record.connector, record.error))?.delete(record.id);
      return;
    }
    const held = this.processes.get(record.processId);
    if (!held) return;
    held.delete(record.id);
    if (held.size === 0) this.processes.delete(record.processId);
  }

  private remove(record: QueueRecord): void {
    if (!this.records.delete(record.id)) return;
    this.detach(record);
    this.removeCopy(record);
    this.perConnector.set(record.connector, (this.perConnector.get(record.connector) ?? 1) - 1);
    this.deleted++;
  }

  /** The waiting ERROR=0 copy a new change collapses into; looked up without allocating (hot path). */
  private collapseTarget(conn: string, messageId: string): QueueRecord | undefined {
    const entry = this.copies.get(key(conn, messageId));
    if (entry === undefined) return undefined;
    if (!Array.isArray(entry)) return entry.processId === "" && entry.error === 0 ? entry : undefined;
    return entry.find((r) => r.processId === "" && r.error === 0);
  }

  private copiesOf(conn: string, messageId: string): QueueRecord[] {
    const entry = this.copies.get(key(conn, messageId));
    if (!entry) return [];
    return Array.isArray(entry) ? [...entry] : [entry];
  }

  private addCopy(record: QueueRecord): void {
    const k = key(record.connector, record.messageId);
    const entry = this.copies.get(k);
    if (!entry) this.copies.set(k, record);
    else if (Array.isArray(entry)) entry.push(record);
    else this.copies.set(k, [entry, record]);
  }

  private removeCopy(record: QueueRecord): void {
    const k = key(record.connector, record.messageId);
    const entry = this.copies.get(k);
    if (entry === record) {
      this.copies.delete(k);
    } else if (Array.isArray(entry)) {
      const rest = entry.filter((r) => r !== record);
      if (rest.length === 0) this.copies.delete(k);
      else this.copies.set(k, rest.length === 1 ? rest[0] : rest);
    }
  }
}
