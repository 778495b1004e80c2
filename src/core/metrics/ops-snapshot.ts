/**
 * The operations view's vocabulary: the JSON one portal's snapshot is (what the sidebar reads and the Prometheus
 * exposition names), the notices the counters are fed with, and the portal's limits they are measured against.
 * Kept apart from the counters (portal-metrics.ts) so a reader of the snapshot (the sidebar plugin) depends on its
 * shape only, not on the class that keeps the numbers.
 */

/** The portal's execution-time budget per method: 480 s of server time per 10 minutes (REFERENCE.md). */
export const OPERATING_BUDGET_SECONDS = 480;
/** How many recent errors the sidebar lists. */
export const RECENT_ERRORS = 20;
/** Codes that, once they reach a node, no retry or refresh cures: a person has to authorise the application again. */
export const REAUTH_CODES: ReadonlySet<string> = new Set([
  "invalid_grant",
  "invalid_client",
  "NO_REFRESH_TOKEN",
  "expired_token",
  "invalid_token",
  "NO_AUTH_FOUND",
]);

export type GetPhase = "idle" | "fetching" | "waiting" | "paused" | "closed";

export interface NodeNumbers {
  id: string;
  name: string;
  mode: "ack" | "auto";
  phase: GetPhase;
  /** Events emitted and not yet acknowledged (the get node's "unacked"). */
  unacked: number;
  maxInFlight: number;
  /** Events one request can bring (limit × gets per batch request): with the rate, the node's bound. */
  perRequest: number;
  delivered: number;
  acked: number;
  redelivered: number;
  deadLettered: number;
  /** Events acked unseen because nothing watched changed (the get node's changes option); null: not counted. */
  unchanged: number | null;
  lastDrain: { at: number; events: number; ms: number; empty: boolean } | null;
}

export interface MethodNumbers {
  method: string;
  /** Seconds of server time the portal says the method used in its current 10-minute window. */
  operating: number;
  /** operating / 480 s. */
  share: number;
  /** Epoch ms when the window resets, as the portal said; null when unknown. */
  resetAt: number | null;
  /** Epoch ms until which calls of the method wait (429 OPERATION_TIME_LIMIT); null: no pause in force. */
  pausedUntil: number | null;
}

export interface RecentError {
  at: number;
  code: string;
  method: string;
  /** A node id ("" when the error belongs to the portal itself). */
  nodeId: string;
  nodeName: string;
  message: string;
}

export interface QueueLook {
  at: number;
  /** The portal's count of every record in the queue (waiting, held and failed). */
  total: number;
  /** Of the first page read (at most 50 records): how many wait, are held by a process, are marked failed. */
  counted: number;
  unprocessed: number;
  held: number;
  error: number;
}

export interface BucketReading {
  /** Requests in the client's copy of the portal's bucket now. */
  level: number;
  burst: number;
  perSecond: number;
  /** Calls waiting for a slot. */
  waiting: number;
}

/** Everything the sidebar shows of one portal, as JSON. */
export interface OpsSnapshot {
  id: string;
  name: string;
  portal: string;
  at: number;
  /**
   * The configured rate, and what it bounds the events to: every request may bring `perRequest` events (the
   * largest get node's limit × gets per batch), at `perSecond` requests a second (REFERENCE.md, throughput).
   */
  bound: { perSecond: number; burst: number; eventsPerSecond: number };
  series: { start: number; delivered: number[]; acked: number[] };
  bucket: BucketReading | null;
  requests: { total: number; limited503: number; last503At: number | null; byStatus: Record<string, number> };
  methods: MethodNumbers[];
  token: {
    expiresAt: number | null;
    refreshedAt: number | null;
    installedAt: number | null;
    installedOn: string | null;
    reauthNeeded: boolean;
    reauthCode: string | null;
  };
  queue: QueueLook | null;
  /** When a get last found the queue empty (epoch ms). */
  emptyAt: number | null;
  nodes: NodeNumbers[];
  errors: RecentError[];
}

/** What a delivery looks like to the metrics: enough to match the ack that comes back later. */
export interface DeliveredEvent {
  id: number;
  messageId: string;
  redelivered: boolean;
}

/** An ack call that succeeded (the ack queue's "acked" notice, in the words that matter here). */
export interface AckNotice {
  kind: "clear" | "error";
  processId: string;
  ids: number[];
  messageIds: string[];
  allOfProcess: boolean;
}
