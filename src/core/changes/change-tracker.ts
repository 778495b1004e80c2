import type { AckedNotice } from "../acks/ack-queue";
import type { BatchOutcome } from "../client/client";
import { type EntityMap, isDeleteEvent, objectRefOf } from "../entities/entity-reads";
import type { Bitrix24Error } from "../rest/errors";
import type { BatchCommand, OfflineEvent } from "../rest/types";
import type { Snapshot, SnapshotStore, StagedSnapshot } from "../state/snapshot-store";
import { type Changes, diffFields, pickFields } from "./compare";
import { FieldLabels, type LabelTarget } from "./field-labels";

/**
 * What changed (issue 21, DESIGN.md "changes"): each event's object (read by the entity stage) is compared with
 * the object's last ACKNOWLEDGED state. The state advances only when the event is acked:
 * - before an event is emitted, its object's fields are staged under the event's record (`<process>:<id>`);
 * - the ack queue's "acked" notice commits them (a clear) or drops them (marked as an error);
 * - after a restart, staged entries whose record the re-select no longer returns were acked before the crash
 *   (commit); those it returns are compared again with the unchanged acked state: same changes again.
 * In auto mode (at-most-once) there is no ack: the state advances when the event is emitted.
 */

/** What an event's msg says about its changes. */
export interface DeliveryChanges {
  /** `{FIELD: {before, after}}`; null on first sight, for deletes and when the object could not be read. */
  changes: Changes | null;
  /** No acknowledged state of the object was known. */
  firstSeen: boolean;
  /** Nothing watched changed: acked by the node, not emitted. */
  unchanged: boolean;
}

/** The part of a delivery the tracker reads and writes (consumer-types' Delivery has it). */
export interface TrackedDelivery {
  event: OfflineEvent;
  id: number;
  entity?: { entity: Record<string, unknown> | null; missing?: true; error?: unknown };
  changes?: DeliveryChanges;
}

export interface TrackedGroup {
  processId: string | null;
  deliveries: TrackedDelivery[];
}

interface InFlight {
  ref: string;
  messageId: string;
}

export interface ChangeTrackerOptions {
  store: SnapshotStore;
  map: EntityMap;
  /** Watched fields; empty = every field. */
  watch: readonly string[];
  /** The label cache, shared with the entity stage, whose requests carry the reads it can foresee. */
  labels?: FieldLabels;
  /** Sends label reads (field metadata, directories) through the consumer's client. */
  send(commands: Record<string, BatchCommand>): Promise<BatchOutcome>;
}

export class ChangeTracker {
  /** Staged refs by process id and record id: what an ack notice commits. */
  private readonly inFlight = new Map<string, Map<number, InFlight>>();
  private readonly labels: FieldLabels;
  private lastSeq = 0;
  /**
   * Commits and discards in flight: a comparison waits for them, or an event fetched right after another one's
   * ack could be compared with the state before it and show that event's change again.
   */
  private writes: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: ChangeTrackerOptions) {
    this.labels = o.labels ?? new FieldLabels(o.watch);
  }

  /** A read order that only grows, also across restarts (time-based). */
  private seq(): number {
    this.lastSeq = Math.max(this.lastSeq + 1, Date.now() * 1000);
    return this.lastSeq;
  }

  /**
   * Sets `changes` on every delivery whose object the entity stage read (or that is a delete), and stages (ack
   * mode) or writes (auto mode) the states they lead to: durable before the caller emits anything.
   */
  async prepare(groups: readonly TrackedGroup[], mode: "ack" | "auto"): Promise<void> {
    const items: Array<{
      group: TrackedGroup;
      d: TrackedDelivery;
      key: string;
      ref: NonNullable<ReturnType<typeof objectRefOf>>;
    }> = [];
    for (const group of groups) {
      for (const d of group.deliveries) {
        if (!d.entity) continue; // unmapped event: no object, nothing to compare
        const ref = objectRefOf(d.event, this.o.map);
        if (!ref) {
          d.changes = { changes: null, firstSeen: false, unchanged: false };
          continue;
        }
        items.push({ group, d, key: ref.key, ref });
      }
    }
    if (items.length === 0) return;
    await this.writes;
    const acked = await this.o.store.read([...new Set(items.map((i) => i.key))]);
    const staged: StagedSnapshot[] = [];
    const labelTargets: LabelTarget[] = [];
    for (const { group, d, key, ref } of items) {
      const before = acked.get(key);
      const gone = isDeleteEvent(d.event.EVENT_NAME) || d.entity?.missing === true;
      let next: Snapshot | null | undefined;
      if (gone) {
        d.changes = { changes: null, firstSeen: false, unchanged: false };
        next = null; // its state is forgotten once the delete is acked
      } else if (!d.entity?.entity) {
        d.changes = { changes: null, firstSeen: false, unchanged: false }; // read failed: nothing to compare
      } else {
        const object = d.entity.entity;
        next = { fields: pickFields(object, this.o.watch), seq: this.seq() };
        if (!before) {
          d.changes = { changes: null, firstSeen: true, unchanged: false };
        } else {
          const changes = diffFields(before.fields, object, this.o.watch);
          const unchanged = Object.keys(changes).length === 0;
          d.changes = { changes, firstSeen: false, unchanged };
          if (!unchanged) labelTargets.push({ ref, entity: object, changes });
        }
      }
      if (next !== undefined) staged.push({ ref: this.refOf(group.processId, d), key, snapshot: next });
    }
    await this.addLabels(labelTargets);
    if (mode === "auto" || groups.every((g) => g.processId === null)) {
      await this.o.store.put(staged);
      return;
    }
    await this.o.store.stage(staged);
    const stagedRefs = new Set(staged.map((s) => s.ref));
    for (const group of groups) {
      if (!group.processId) continue;
      for (const d of group.deliveries) {
        const ref = this.refOf(group.processId, d);
        if (stagedRefs.has(ref)) this.index(group.processId).set(d.id, { ref, messageId: d.event.MESSAGE_ID });
      }
    }
  }

  /** The ack queue confirmed a clear (commit) or an error mark (discard: the change is not processed). */
  async acked(notice: AckedNotice): Promise<void> {
    const byId = this.inFlight.get(notice.processId);
    if (!byId) return;
    const hit: InFlight[] = [];
    if (notice.allOfProcess) {
      hit.push(...byId.values());
      byId.clear();
    } else {
      const messageIds = new Set(notice.messageIds);
      for (const [id, f] of [...byId]) {
        if (notice.ids.includes(id) || messageIds.has(f.messageId)) {
          hit.push(f);
          byId.delete(id);
        }
      }
    }
    if (byId.size === 0) this.inFlight.delete(notice.processId);
    const refs = hit.map((f) => f.ref);
    await this.write(() => (notice.kind === "error" ? this.o.store.discard(refs) : this.o.store.commit(refs)));
  }

  /**
   * A re-select (clear=0) of a process returned these records: the staged states of its records it did not return
   * were acked (before a crash, by the instance that held them before a takeover, or by another node) and are
   * committed; the returned ones are compared again. The store says what is staged, not this process's memory:
   * after a restart or a takeover the staging was done by another run.
   */
  async reselected(processId: string, events: readonly OfflineEvent[]): Promise<void> {
    const returned = new Set(events.map((e) => Number(e.ID)));
    const staged = await this.o.store.staged(processId);
    const gone = staged.filter((s) => !returned.has(splitRef(s.ref)[1])).map((s) => s.ref);
    const byId = this.inFlight.get(processId);
    for (const id of [...(byId?.keys() ?? [])]) if (!returned.has(id)) byId?.delete(id);
    if (byId?.size === 0) this.inFlight.delete(processId);
    await this.write(() => this.o.store.commit(gone));
  }

  async close(): Promise<void> {
    await this.writes;
    await this.o.store.close();
  }

  /** One write after the other; a failed one fails its caller, not the next. */
  private write(fn: () => Promise<void>): Promise<void> {
    const next = this.writes.then(fn);
    this.writes = next.catch(() => undefined);
    return next;
  }

  private index(processId: string): Map<number, InFlight> {
    let byId = this.inFlight.get(processId);
    if (!byId) {
      byId = new Map();
      this.inFlight.set(processId, byId);
    }
    return byId;
  }

  private refOf(processId: string | null, d: TrackedDelivery): string {
    return `${processId ?? "auto"}:${d.id}`;
  }

  /** Labels of list fields: at most two small requests, once per object type and directory (then cached). */
  private async addLabels(targets: LabelTarget[]): Promise<void> {
    if (targets.length === 0) return;
    for (let i = 0; i < 2; i++) {
      const commands = this.labels.needs(targets);
      if (Object.keys(commands).length === 0) break;
      let outcome: BatchOutcome | Bitrix24Error;
      try {
        outcome = await this.o.send(commands);
      } catch (err) {
        outcome = err as Bitrix24Error;
      }
      this.labels.absorb(commands, outcome);
    }
    for (const t of targets) this.labels.label(t);
  }
}

function splitRef(ref: string): [string | undefined, number] {
  const at = ref.lastIndexOf(":");
  if (at <= 0) return [undefined, 0];
  return [ref.slice(0, at), Number(ref.slice(at + 1))];
}
