import type { AckedNotice } from "../acks/ack-queue";
import { ChangeTracker } from "../changes/change-tracker";
import { FieldLabels } from "../changes/field-labels";
import { BUILTIN_ENTITY_MAP, type EntityMap, type ObjectRef, objectRefOf } from "../entities/entity-reads";
import type { RidingReads } from "../entities/entity-stage";
import type { OfflineEvent } from "../rest/types";
import type { SnapshotStores } from "../state/snapshot-store";
import { sendChunked } from "./consumer-batch";
import type { ConsumerAcks, ConsumerApi, ConsumerMode, ConsumerSettings, DeliveryGroup, Tally } from "./consumer-types";
import { stateDirOf } from "./journal-writer";

/**
 * The changes option's hooks in the consumer (issue 21): the tracker opened on the queue's snapshot store, the
 * field metadata riding with the entity reads, what changed attached before a delivery is emitted (events with no
 * watched change acked here instead), and an ack's state commit before the ledger forgets the records. Apart from
 * offline-consumer.ts because none of it runs without the option, and the consumer only calls in at four points:
 * the entity stage, a fetch's emit, an ack, and close. The tracker itself is changes/change-tracker.ts.
 */

export interface ConsumerChangesHooks {
  /** The consumer's mode now (it may fall back to auto). */
  mode(): ConsumerMode;
  /** Background work the consumer's close waits for. */
  track(work: Promise<unknown>): void;
  fail(err: unknown): void;
}

export class ConsumerChanges {
  /** The tracker, once its store is open. */
  private readonly tracker: Promise<ChangeTracker>;
  private readonly labels: FieldLabels;
  /** Events acked unseen because nothing watched changed, since the consumer started. */
  unchangedTotal = 0;

  constructor(
    private readonly o: ConsumerSettings,
    api: ConsumerApi,
    private readonly acks: ConsumerAcks | undefined,
    private readonly hooks: ConsumerChangesHooks,
  ) {
    this.labels = new FieldLabels(o.watchFields);
    this.tracker = this.open(api);
    // Without a listener an open failure would be unhandled until the first drain reports it.
    this.tracker.catch(() => undefined);
  }

  /** The field metadata for labels rides in the entity stage's requests, like the objects. */
  ridingReads(entityMap: EntityMap): RidingReads {
    const labels = this.labels;
    return {
      commands: (events) =>
        labels.preload(events.map((e) => objectRefOf(e, entityMap)).filter((r): r is ObjectRef => r !== undefined)),
      absorb: (commands, outcome) => labels.absorb(commands, outcome),
    };
  }

  async reselected(processId: string, events: OfflineEvent[]): Promise<void> {
    await (await this.tracker).reselected(processId, events);
  }

  /**
   * Each event gets what changed (durable before it is emitted); with `drop`, events with no watched change are
   * acked here (ack mode) instead of emitted. Their ack commits their state like any other.
   */
  async compare(groups: DeliveryGroup[], tally: Tally, drop: boolean): Promise<DeliveryGroup[]> {
    const tracker = await this.tracker;
    await tracker.prepare(groups, this.hooks.mode());
    if (!drop) return groups;
    const out: DeliveryGroup[] = [];
    for (const g of groups) {
      const unchanged = g.deliveries.filter((d) => d.changes?.unchanged);
      if (unchanged.length === 0) {
        out.push(g);
        continue;
      }
      const ack = this.hooks.mode() === "ack" && g.processId !== null;
      if (ack && !this.acks) {
        out.push(g); // nobody here could ack them: the flow must
        continue;
      }
      if (ack && this.acks && g.processId !== null) {
        const target = {
          processId: g.processId,
          ids: unchanged.map((d) => d.id),
          ...(g.authConnector ? { authConnector: g.authConnector } : {}),
        };
        // A failed ack leaves them held: the ack timeout redelivers them, compared again.
        this.hooks.track(this.acks.clear(target).catch((err) => this.hooks.fail(err)));
      }
      tally.unchanged += unchanged.length;
      this.unchangedTotal += unchanged.length;
      const rest = g.deliveries.filter((d) => !d.changes?.unchanged);
      if (rest.length > 0) out.push({ ...g, deliveries: rest });
    }
    return out;
  }

  /**
   * An ack of this queue: the state commit first, then `apply` (the ledger, and so the journal, forgets the
   * records): after a crash in between, the journal still names the process, and its re-select shows the records
   * gone (change-tracker.ts). False for another connector's ack, which the caller applies at once.
   */
  acked(notice: AckedNotice, apply: () => void): boolean {
    if ((notice.authConnector ?? "") !== this.o.authConnector) return false;
    this.hooks.track(
      this.tracker
        .then((t) => t.acked(notice))
        .catch((err) => this.hooks.fail(err))
        .finally(apply),
    );
    return true;
  }

  async close(): Promise<void> {
    await this.tracker.then((t) => t.close()).catch(() => undefined);
  }

  private async open(api: ConsumerApi): Promise<ChangeTracker> {
    const o = this.o;
    // One history per queue and watch list: two nodes watching different fields must not advance each other.
    const ns = [o.portalHost, o.clientId, o.authConnector, o.watchFields.join(",")].join("\u0000");
    const store = await (o.snapshots ?? localSnapshots(stateDirOf(o))).open(ns);
    return new ChangeTracker({
      store,
      map: o.entityMap ?? BUILTIN_ENTITY_MAP,
      watch: o.watchFields,
      labels: this.labels,
      send: (commands) => sendChunked(api.client, commands),
    });
  }
}

/**
 * The embedded store (LMDB, a native module) is loaded only when a consumer tracks changes on this machine: a flow
 * without the option, or with a PostgreSQL store, never loads it, so a platform without LMDB's prebuilt binary
 * still runs every other node.
 */
function localSnapshots(dir: string): SnapshotStores {
  // require, not import(): the build is CommonJS, and the tests run the sources through tsx's require hook.
  const { LmdbSnapshotStores } =
    require("../state/lmdb-snapshot-store") as typeof import("../state/lmdb-snapshot-store");
  return new LmdbSnapshotStores(dir);
}
