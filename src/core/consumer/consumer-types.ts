import type { AckQueue } from "../acks/ack-queue";
import type { DeliveryChanges } from "../changes/change-tracker";
import { parseWatchFields } from "../changes/compare";
import type { EntityAttachment, EntityMap } from "../entities/entity-reads";
import type { OfflineEventsApi } from "../queue/offline-api";
import { Bitrix24Error } from "../rest/errors";
import type { OfflineEvent, OfflineFilter, OfflineOrder } from "../rest/types";
import type { InstanceRegistry } from "../state/instance-registry";
import type { SnapshotStores } from "../state/snapshot-store";
import type { JournalLoadWarning, JournalStore } from "../state/state-seam";

/**
 * What the offline consumer and its parts (drain round, held-process ledger, recovery, orphan sweep, journal
 * writer) share: its options, what it emits, and the tally a drain keeps.
 */

export type ConsumerMode = "ack" | "auto";

export interface OfflineConsumerOptions {
  /** Portal host and application: with the connector and error flag, the journal's key. */
  portalHost: string;
  clientId: string;
  /**
   * Where the process-id journal persists (the state seam: the portal's `StateStores.journals`). Without it, files
   * in `stateDir`.
   */
  journals?: JournalStore;
  /** Directory for the journal and the registry when they are not given (the portal's stateDir). */
  stateDir?: string;
  mode: ConsumerMode;
  limit: number;
  filter?: OfflineFilter;
  order?: OfflineOrder;
  /** Fetch records marked as errors (error=1) instead of unprocessed ones. */
  errorRecords: boolean;
  authConnector: string;
  /** Keep fetching while full batches come. */
  drain: boolean;
  /** Unacknowledged events at which fetching stops (ack mode); 0 = no limit. */
  maxInFlight: number;
  ackTimeoutMs: number;
  maxDeliveries: number;
  /** event.offline.get calls per batch request. */
  prefetch: number;
  /** Without the portal's extended mode, fall back to auto mode (at-most-once) instead of refusing. */
  allowAtMostOnce: boolean;
  orphanSweep: boolean;
  /**
   * Consumers the instance registry cannot see may drain the same queue (another program, a Node-RED on another
   * machine without a shared store). Then a record held under an unknown process id may be theirs, and only the
   * age rule (orphanAgeMs) may take it. Default false: an unknown process id that no live consumer can own is
   * taken at once.
   */
  externalConsumers?: boolean;
  /**
   * Under the age rule (externalConsumers): how long a record must be seen held under a process id nobody here
   * knows before the sweep takes it over. Default ackTimeout × (maxDeliveries + 1): longer than a live consumer
   * elsewhere keeps a record without acking it or marking it as an error.
   */
  orphanAgeMs?: number;
  /** Who else drains the queue (default: the file registry in stateDir, shared by the instances of a machine). */
  registry?: InstanceRegistry;
  /** Pages of event.offline.list one sweep reads at most (50 records each). Default 20. */
  sweepPages?: number;
  /**
   * After emitting, how long the consumer waits for the flow's acks so they ride along with the next get
   * (one request instead of two). Shorter than the ack queue's own flush delay (5 ms). Default 3.
   */
  ackWindowMs?: number;
  /** How long close() waits for a request in flight. Default 5000. */
  closeWaitMs?: number;
  /** Attach each event's current object (entity-stage.ts). Default false. */
  entity?: boolean;
  /** Which method reads which event's object. Default: the built-in map. */
  entityMap?: EntityMap;
  /** Say what changed since the last acked state (change-tracker.ts); implies `entity`. Default false. */
  changes?: boolean;
  /** Fields whose changes count; empty = every field. */
  watchFields?: string[];
  /** Where the states live (the state seam's snapshots). Default: the embedded store in stateDir (lmdb-snapshot-store.ts). */
  snapshots?: SnapshotStores;
}

/** The options with their defaults applied and numbers clamped. */
export type ConsumerSettings = Required<
  Omit<OfflineConsumerOptions, "filter" | "order" | "entityMap" | "registry" | "snapshots" | "journals" | "stateDir">
> &
  Pick<OfflineConsumerOptions, "filter" | "order" | "entityMap" | "snapshots" | "journals" | "stateDir">;

/** At most this many gets go in one batch request (the portal's limit of commands per batch). */
const MAX_BATCH = 50;

export function consumerSettings(options: OfflineConsumerOptions): ConsumerSettings {
  const ackTimeoutMs = Math.max(1, options.ackTimeoutMs);
  const maxDeliveries = Math.max(1, Math.floor(options.maxDeliveries));
  return {
    ...options,
    limit: Math.max(1, Math.floor(options.limit)),
    maxInFlight: Math.max(0, Math.floor(options.maxInFlight)),
    prefetch: Math.min(MAX_BATCH, Math.max(1, Math.floor(options.prefetch))),
    ackTimeoutMs,
    maxDeliveries,
    externalConsumers: options.externalConsumers === true,
    orphanAgeMs: options.orphanAgeMs ?? ackTimeoutMs * (maxDeliveries + 1),
    sweepPages: options.sweepPages ?? 20,
    ackWindowMs: options.ackWindowMs ?? 3,
    closeWaitMs: options.closeWaitMs ?? 5000,
    changes: options.changes === true,
    watchFields: parseWatchFields(options.watchFields),
    // What changed is found by comparing objects: the changes option reads them.
    entity: options.entity === true || options.changes === true,
  };
}

/** The consumer's flags as its parts read them (live: getters on the consumer, not copies). */
export interface ConsumerFlags {
  readonly mode: ConsumerMode;
  readonly closed: boolean;
  readonly paused: boolean;
}

/** Per-trigger overrides (msg.limit, msg.filter, msg.order). */
export interface DrainOverrides {
  limit?: number;
  filter?: OfflineFilter;
  order?: OfflineOrder;
}

export interface Delivery {
  event: OfflineEvent;
  id: number;
  deliveryCount: number;
  redelivered: boolean;
  /** With the entity option: the object the event names, or why there is none. Unmapped events: absent. */
  entity?: EntityAttachment;
  /** With the changes option: what changed since the object's last acked state. */
  changes?: DeliveryChanges;
}

/** Events of one process, emitted together (one get, one re-select). */
export interface DeliveryGroup {
  processId: string | null;
  authConnector: string;
  error: 0 | 1;
  deliveries: Delivery[];
}

export interface DrainSummary {
  /** Events emitted (new and redelivered). */
  events: number;
  /** Gets that returned events. */
  batches: number;
  ms: number;
  /** HTTP requests sent (a batch request counts once). */
  requests: number;
  /** Of `events`, how many were redeliveries (recovery, re-select). */
  redelivered: number;
  /** Changes option: events with no watched change, acked by the node and not emitted (not in `events`). */
  unchanged: number;
  /** True when the last get found fewer records than it asked for: the queue (as filtered) is empty. */
  empty: boolean;
  /** True when the drain did not run or stopped early because the consumer was paused or closed. */
  stopped: boolean;
}

export type ConsumerPhase = "idle" | "fetching" | "waiting" | "paused" | "closed";

export interface ConsumerState {
  phase: ConsumerPhase;
  mode: ConsumerMode;
  /** Unacknowledged events (ack mode). */
  pending: number;
  maxInFlight: number;
  /** Changes option: events acked unseen since the node started. */
  unchanged: number;
}

export type ConsumerWarning =
  | { code: "AT_MOST_ONCE_FALLBACK" }
  | { code: "MARKED_AS_ERROR"; processId: string; messageIds: string[] }
  | { code: "ORPHANS_ADOPTED"; processId: string; count: number }
  | ({ code: "JOURNAL_UNREADABLE" } & JournalLoadWarning)
  /** Reading objects with `method` failed (scope, access): said once, until a read of it succeeds again. */
  | { code: "ENTITY_READ_FAILED"; method: string; error: Bitrix24Error };

export interface OfflineConsumerEvents {
  deliver: [DeliveryGroup];
  "dead-letter": [DeliveryGroup];
  /** Objects of this method are read again after an ENTITY_READ_FAILED warning about it. */
  "entity-read-recovered": [string];
  drained: [DrainSummary];
  state: [ConsumerState];
  /** A failure outside any trigger (redelivery, sweep, journal, marking): nobody else will report it. */
  failure: [Bitrix24Error];
  warning: [ConsumerWarning];
}

export type ConsumerApi = Pick<OfflineEventsApi, "client" | "get" | "getCommand" | "feature" | "list">;
export type ConsumerAcks = Pick<AckQueue, "take" | "clear" | "error" | "pending" | "flush" | "on" | "off">;

/** What one drain (or re-select, sweep, redelivery) has done so far. */
export interface Tally {
  events: number;
  batches: number;
  requests: number;
  redelivered: number;
  unchanged: number;
}

export function newTally(): Tally {
  return { events: 0, batches: 0, requests: 0, redelivered: 0, unchanged: 0 };
}

/** Every failure the consumer reports is a Bitrix24Error: a bug's TypeError becomes INTERNAL_ERROR. */
export function asError(err: unknown): Bitrix24Error {
  if (err instanceof Bitrix24Error) return err;
  return new Bitrix24Error({
    code: "INTERNAL_ERROR",
    description: err instanceof Error ? err.message : String(err),
    retryable: false,
  });
}
