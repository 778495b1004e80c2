import type { Bitrix24Client } from "../../src/core/client/client";
import type { Sandbox } from "../../src/sandbox";

/**
 * The books of the reliability suite: per scenario, what was created on the portal, what the flow received,
 * what it acknowledged and what went missing, plus how many faults the client saw and how many bad inputs
 * were tried. An `after` hook at the root prints them as one table when the run ends.
 */
export interface ScenarioRow {
  area: string;
  scenario: string;
  /** Failed exchanges the client saw: error answers (4xx/5xx) and dropped connections. */
  faults: number;
  created: number;
  /** Deliveries to the flow, duplicates included. */
  delivered: number;
  /** Deliveries beyond the first of an event (at-least-once redeliveries). */
  duplicates: number;
  acked: number;
  /** Events that left the portal's queue although the flow never asked to ack them (ack mode: must be 0). */
  lost: number;
  /** Auto mode only: events the client reported as possibly lost (EVENTS_MAY_BE_LOST), an upper bound. */
  reportedLost?: number;
  badInputs: number;
}

const rows: ScenarioRow[] = [];

export function record(row: Partial<ScenarioRow> & Pick<ScenarioRow, "area" | "scenario">): void {
  rows.push({ faults: 0, created: 0, delivered: 0, duplicates: 0, acked: 0, lost: 0, badInputs: 0, ...row });
}

export function recordBadInput(scenario: string, tried: number): void {
  record({ area: "bad input", scenario, badInputs: tried });
}

export function summaryRows(): ScenarioRow[] {
  return rows.slice();
}

export function summaryTable(list: ScenarioRow[] = rows): string {
  const head = ["area", "scenario", "faults", "created", "delivered", "dup", "acked", "lost", "bad inputs"];
  const body = list.map((r) => [
    r.area,
    r.scenario,
    String(r.faults),
    String(r.created),
    String(r.delivered),
    String(r.duplicates),
    String(r.acked),
    r.reportedLost !== undefined ? `${r.lost} (reported ≤${r.reportedLost})` : String(r.lost),
    String(r.badInputs),
  ]);
  const sum = (k: keyof ScenarioRow, rows = list) => rows.reduce((n, r) => n + Number(r[k] ?? 0), 0);
  // Ack mode must lose nothing; auto mode (at-most-once) loses what a lost answer carried, and reports it.
  const atMostOnce = list.filter((r) => r.reportedLost !== undefined);
  const ackLost = sum(
    "lost",
    list.filter((r) => r.reportedLost === undefined),
  );
  body.push([
    "TOTAL",
    `${list.length} scenarios`,
    String(sum("faults")),
    String(sum("created")),
    String(sum("delivered")),
    String(sum("duplicates")),
    String(sum("acked")),
    atMostOnce.length > 0 ? `${ackLost} (+${sum("lost", atMostOnce)} auto mode, reported)` : String(ackLost),
    String(sum("badInputs")),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

// Registered once, at the root (this module loads while mocha reads the first reliability file): runs after
// every file of the run, so one table covers the whole suite. Outside mocha (the soak) there is no hook.
if (typeof after === "function") {
  after(() => {
    if (rows.length === 0) return;
    console.log(`\n  Reliability summary (test/reliability)\n${summaryTable()}\n`);
  });
}

/** Counts what a client saw fail: answers with status >= 400 and requests that got no answer at all. */
export class FaultCounter {
  faults = 0;
  tokenRequests = 0;
  requests = 0;
  private readonly detach: Array<() => void> = [];

  watch(client: Bitrix24Client): this {
    const onRequest = (info: { method: string; status: number }) => {
      this.requests++;
      if (info.method === "oauth/token") this.tokenRequests++;
      if (info.status === 0 || info.status >= 400) this.faults++;
    };
    client.on("request", onRequest);
    this.detach.push(() => client.off("request", onRequest));
    return this;
  }

  stop(): void {
    for (const d of this.detach.splice(0)) d();
  }
}

/**
 * Event accounting for one scenario: record ids known to exist on the portal, deliveries, acks the flow asked
 * for and acks the portal confirmed. `lost` = created records that are no longer in the queue although the flow
 * never asked to ack them. (An ack the portal applied but whose answer was lost reaches the flow as a failure:
 * the event was processed and is gone, as the flow asked; that is not a loss.)
 */
export class DeliveryBook {
  readonly created = new Set<number>();
  readonly delivered = new Map<number, number>();
  /** Ids the flow handed to clear/error. */
  readonly requested = new Set<number>();
  /** Ids whose clear the portal confirmed. */
  readonly acked = new Set<number>();
  deliveries = 0;
  acks = 0;

  /** Takes every record now in the portal's queue as created (call right after adding events). */
  noteQueue(sandbox: Sandbox): void {
    for (const r of sandbox.records()) this.created.add(Number(r.ID));
  }

  deliver(id: number): void {
    this.deliveries++;
    this.delivered.set(id, (this.delivered.get(id) ?? 0) + 1);
  }

  /** The flow asked to ack (or mark) this record. */
  request(id: number): void {
    this.requested.add(id);
  }

  /** The portal confirmed the ack. */
  ack(id: number): void {
    this.acks++;
    this.requested.add(id);
    this.acked.add(id);
  }

  get duplicates(): number {
    let n = 0;
    for (const c of this.delivered.values()) n += c - 1;
    return n;
  }

  /** Created records no longer on the portal although the flow never asked to ack them. */
  lostIds(sandbox: Sandbox): number[] {
    const present = new Set(sandbox.records().map((r) => Number(r.ID)));
    return [...this.created].filter((id) => !present.has(id) && !this.requested.has(id));
  }

  /** Created records the flow never received. */
  undelivered(): number[] {
    return [...this.created].filter((id) => !this.delivered.has(id));
  }
}

export { sleep, until } from "../wait";
