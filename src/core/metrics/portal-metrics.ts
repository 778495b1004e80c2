import { PerSecondSeries } from "./per-second";

/**
 * The operations numbers of one portal config node: what its client, ack queue and get nodes have done, kept as
 * plain counters so the hot path (a delivery, a request) costs a few additions. The sidebar and the Prometheus
 * endpoint read them; neither keeps numbers of its own. Nothing here is a secret: no token, no event payload,
 * no error text from the portal in a metric label (only codes and method names).
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

interface Outstanding {
  nodeId: string;
  /** record id -> MESSAGE_ID of events emitted under this process and not acked yet */
  records: Map<number, string>;
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

function emptyNode(id: string, name: string): NodeNumbers {
  return {
    id,
    name,
    mode: "ack",
    phase: "idle",
    unacked: 0,
    maxInFlight: 0,
    perRequest: 0,
    delivered: 0,
    acked: 0,
    redelivered: 0,
    deadLettered: 0,
    unchanged: null,
    lastDrain: null,
  };
}

export class PortalMetrics {
  readonly delivered = new PerSecondSeries();
  readonly acked = new PerSecondSeries();
  /** "method\nstatus" -> requests */
  private readonly requests = new Map<string, number>();
  private requestTotal = 0;
  private limited503 = 0;
  private last503At: number | null = null;
  private readonly methods = new Map<string, { operating: number; resetAt: number | null; pausedUntil: number }>();
  private readonly nodes = new Map<string, NodeNumbers>();
  /** Nodes gone (redeployed away) keep their totals in the counters: a counter must never go down. */
  private readonly retired = new Map<string, NodeNumbers>();
  private readonly outstanding = new Map<string, Outstanding>();
  private readonly errors: RecentError[] = [];
  private readonly listed = new WeakSet<object>();
  private token: OpsSnapshot["token"] = {
    expiresAt: null,
    refreshedAt: null,
    installedAt: null,
    installedOn: null,
    reauthNeeded: false,
    reauthCode: null,
  };
  private queue: QueueLook | null = null;
  private failedLookAt = 0;
  private emptyAt: number | null = null;

  constructor(
    readonly portal: { id: string; name: string; host: string; perSecond: number; burst: number },
    private readonly bucket: () => BucketReading | null = () => null,
    private readonly now: () => number = Date.now,
  ) {}

  // ------------------------------------------------------------------------------------------- the client

  request(method: string, status: number): void {
    const key = `${method}\n${status}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    this.requestTotal++;
    if (status === 503) {
      this.limited503++;
      this.last503At = this.now();
    }
  }

  /** An answer's `time.operating` (and reset time) for a method. */
  operating(method: string, seconds: number, resetAt: number | undefined): void {
    if (!Number.isFinite(seconds) || seconds < 0) return;
    const entry = this.methodEntry(method);
    entry.operating = seconds;
    if (resetAt !== undefined) entry.resetAt = resetAt;
  }

  methodPaused(method: string, until: number): void {
    this.methodEntry(method).pausedUntil = until;
  }

  /** New tokens: valid until `expiresAt` (0 = unknown). A refresh that worked ends any call for re-authorisation. */
  tokens(expiresAt: number): void {
    this.token.expiresAt = expiresAt > 0 ? expiresAt : null;
    this.token.refreshedAt = this.now();
    this.token.reauthNeeded = false;
    this.token.reauthCode = null;
  }

  /** Tokens known at start (the token file's, or the deployed ones): no refresh happened. */
  knownTokens(expiresAt: number): void {
    this.token.expiresAt = expiresAt > 0 ? expiresAt : null;
  }

  installed(portal: string, at: number): void {
    this.token.installedOn = portal;
    this.token.installedAt = at;
  }

  // ------------------------------------------------------------------------------------------- get nodes

  watchNode(id: string, name: string, mode: "ack" | "auto", maxInFlight: number, perRequest: number): void {
    const node = this.retired.get(id) ?? emptyNode(id, name);
    this.retired.delete(id);
    Object.assign(node, { name, mode, maxInFlight, perRequest, phase: "idle" as GetPhase });
    this.nodes.set(id, node);
  }

  /** The node was closed: its numbers stay in the counters, its gauges go. */
  forgetNode(id: string): void {
    const node = this.nodes.get(id);
    if (!node) return;
    this.nodes.delete(id);
    node.unacked = 0;
    node.phase = "closed";
    // Its emitted records stay matched: the flow's acks may still arrive (the portal node flushes them on close),
    // and a redeployed node under the same id re-selects them. They are bounded by what the portal holds.
    this.retired.set(id, node);
  }

  /** A get node's state; `unchanged` (events its changes option acked unseen, since it started) when it counts them. */
  state(id: string, phase: GetPhase, unacked: number, maxInFlight: number, unchanged?: number): void {
    const node = this.nodes.get(id);
    if (!node) return;
    node.phase = phase;
    node.unacked = unacked;
    node.maxInFlight = maxInFlight;
    if (unchanged !== undefined) node.unchanged = unchanged;
    // Nothing unacked: the node's records were acked (the ack queue told us first: we listen since the portal
    // node started, before any consumer) or left its hands otherwise (acked by another instance, cleaned up by
    // the portal). Either way nothing of it is left to match.
    if (unacked === 0) {
      for (const [processId, held] of this.outstanding) if (held.nodeId === id) this.outstanding.delete(processId);
    }
  }

  /** Events emitted by a get node. Without a process id (auto mode) the portal deleted them as it answered. */
  deliver(id: string, processId: string | null, events: DeliveredEvent[]): void {
    const node = this.nodes.get(id);
    if (!node || events.length === 0) return;
    const at = this.now();
    node.delivered += events.length;
    this.delivered.add(events.length, at);
    let redelivered = 0;
    for (const event of events) if (event.redelivered) redelivered++;
    node.redelivered += redelivered;
    if (processId === null) {
      node.acked += events.length;
      this.acked.add(events.length, at);
      return;
    }
    let held = this.outstanding.get(processId);
    if (!held) {
      held = { nodeId: id, records: new Map() };
      this.outstanding.set(processId, held);
    }
    for (const event of events) held.records.set(event.id, event.messageId);
  }

  deadLetter(id: string, count: number): void {
    const node = this.nodes.get(id);
    if (node) node.deadLettered += count;
  }

  drained(id: string, summary: { events: number; ms: number; empty: boolean }): void {
    const node = this.nodes.get(id);
    const at = this.now();
    if (node) node.lastDrain = { at, events: summary.events, ms: summary.ms, empty: summary.empty };
    if (summary.empty) this.emptyAt = at;
  }

  /**
   * A clear or error call went through. Each record counts once, however often the flow acked it: the records
   * are matched against what was emitted and not acked yet. Marking as failed (kind "error") is no ack.
   */
  ack(notice: AckNotice): void {
    // Records no get node here delivered, or acked before, are not counted: the portal answers `true` to a clear
    // whether or not it matched anything, so only our own ledger can tell what a clear removed.
    const held = this.outstanding.get(notice.processId);
    if (!held) return;
    let removed = 0;
    if (notice.allOfProcess) {
      removed = held.records.size;
      held.records.clear();
    } else {
      for (const id of notice.ids) if (held.records.delete(Number(id))) removed++;
      if (notice.messageIds.length > 0) {
        const wanted = new Set(notice.messageIds);
        for (const [id, messageId] of held.records) {
          if (wanted.has(messageId)) {
            held.records.delete(id);
            removed++;
          }
        }
      }
    }
    if (held.records.size === 0) this.outstanding.delete(notice.processId);
    if (notice.kind !== "clear" || removed === 0) return;
    const node = this.nodes.get(held.nodeId) ?? this.retired.get(held.nodeId);
    if (node) node.acked += removed;
    this.acked.add(removed, this.now());
  }

  // ------------------------------------------------------------------------------------------- the rest

  /**
   * One error for the recent list. `source`, when given, is the error object: one that reaches the list twice
   * (a node shows it in its status and reports it to Catch, two paths) is listed once.
   */
  error(
    e: { code: string; method?: string; message: string; nodeId?: string; nodeName?: string },
    source?: object,
  ): void {
    if (source) {
      if (this.listed.has(source)) return;
      this.listed.add(source);
    }
    this.errors.push({
      at: this.now(),
      code: e.code,
      method: e.method ?? "",
      nodeId: e.nodeId ?? "",
      nodeName: e.nodeName ?? "",
      message: e.message,
    });
    if (this.errors.length > RECENT_ERRORS) this.errors.splice(0, this.errors.length - RECENT_ERRORS);
    // An error that reaches a node has had its one refresh and resend already (client.ts): a token error now
    // means the lineage is spent.
    if (REAUTH_CODES.has(e.code)) {
      this.token.reauthNeeded = true;
      this.token.reauthCode = e.code;
    }
  }

  queueLook(look: Omit<QueueLook, "at">): void {
    this.queue = { at: this.now(), ...look };
  }

  /** A look that failed still counts as the minute's look. */
  queueLookFailed(): void {
    this.failedLookAt = this.now();
  }

  snapshotQueue(): QueueLook | null {
    return this.queue && { ...this.queue };
  }

  get lastQueueLook(): number {
    return Math.max(this.queue?.at ?? 0, this.failedLookAt);
  }

  // ------------------------------------------------------------------------------------------- reading

  /** Every node's numbers, the closed ones too (their counters must not go down). */
  allNodes(): NodeNumbers[] {
    return [...this.nodes.values(), ...this.retired.values()];
  }

  liveNodes(): NodeNumbers[] {
    return [...this.nodes.values()];
  }

  requestCounts(): Array<{ method: string; status: number; count: number }> {
    return [...this.requests].map(([key, count]) => {
      const [method, status] = key.split("\n");
      return { method, status: Number(status), count };
    });
  }

  methodNumbers(): MethodNumbers[] {
    const now = this.now();
    return [...this.methods].map(([method, m]) => {
      // a window that has reset since the last answer has its budget back
      const operating = m.resetAt !== null && m.resetAt <= now ? 0 : m.operating;
      return {
        method,
        operating,
        share: operating / OPERATING_BUDGET_SECONDS,
        resetAt: m.resetAt,
        pausedUntil: m.pausedUntil > now ? m.pausedUntil : null,
      };
    });
  }

  tokenState(): OpsSnapshot["token"] {
    return { ...this.token };
  }

  bucketReading(): BucketReading | null {
    return this.bucket();
  }

  /** The sidebar's view; the series from `sinceSecond` on (the whole 15 minutes when omitted). */
  snapshot(sinceSecond = 0): OpsSnapshot {
    const now = this.now();
    const delivered = this.delivered.since(sinceSecond, now);
    const acked = this.acked.since(delivered.start, now);
    const byStatus: Record<string, number> = {};
    for (const { status, count } of this.requestCounts()) byStatus[status] = (byStatus[status] ?? 0) + count;
    return {
      id: this.portal.id,
      name: this.portal.name,
      portal: this.portal.host,
      at: now,
      bound: {
        perSecond: this.portal.perSecond,
        burst: this.portal.burst,
        eventsPerSecond: this.portal.perSecond * Math.max(0, ...this.liveNodes().map((n) => n.perRequest)),
      },
      series: { start: delivered.start, delivered: delivered.values, acked: acked.values },
      bucket: this.bucket(),
      requests: { total: this.requestTotal, limited503: this.limited503, last503At: this.last503At, byStatus },
      methods: this.methodNumbers(),
      token: this.tokenState(),
      queue: this.queue,
      emptyAt: this.emptyAt,
      nodes: this.liveNodes().map((n) => ({ ...n, lastDrain: n.lastDrain && { ...n.lastDrain } })),
      errors: this.errors.map((e) => ({ ...e })).reverse(),
    };
  }

  private methodEntry(method: string): { operating: number; resetAt: number | null; pausedUntil: number } {
    let entry = this.methods.get(method);
    if (!entry) {
      entry = { operating: 0, resetAt: null, pausedUntil: 0 };
      this.methods.set(method, entry);
    }
    return entry;
  }
}
