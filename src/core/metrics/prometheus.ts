import { Counter, Gauge, Registry } from "prom-client";
import { OPERATING_BUDGET_SECONDS, type PortalMetrics } from "./portal-metrics";

/**
 * A portal's numbers in Prometheus' text format, through prom-client (the format's escaping, TYPE/HELP lines
 * and content type are its job, not ours). One Registry per portal node, never the global one: two portal
 * nodes (or a redeployed one beside its predecessor) must not share or clash over metric names.
 *
 * Every metric is computed when scraped, from the PortalMetrics counters: the hot path (a delivery, a request)
 * never touches prom-client, and a Prometheus that never scrapes costs nothing.
 *
 * Labels: `portal` (host), `node` (get node id), `method`, `status`, and `nodered_instance` on every series. Not
 * `instance`: Prometheus sets that one to the scrape target itself and renames a scraped `instance` to
 * `exported_instance`; ours names the Node-RED process, so instances behind one address (a load balancer) or
 * sharing a store (several machines) stay apart and a query can `sum` them.
 */

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

export interface PrometheusOptions {
  /** Names this Node-RED process: host name and port, say. Never a secret. */
  instance: string;
  now?: () => number;
}

export function prometheusRegistry(metrics: PortalMetrics, options: PrometheusOptions): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ nodered_instance: options.instance });
  const now = options.now ?? Date.now;
  const portal = metrics.portal.host;

  // Counters are set from the totals at each scrape: reset, then inc by the total (prom-client has no set for a
  // counter). The totals never go down (closed nodes keep theirs), so the series stay monotonic.
  new Counter({
    name: "bitrix24_events_delivered_total",
    help: "Events a get node emitted to its flow (redeliveries included).",
    labelNames: ["portal", "node"],
    registers: [registry],
    collect() {
      this.reset();
      for (const n of metrics.allNodes()) this.inc({ portal, node: n.id }, n.delivered);
    },
  });
  new Counter({
    name: "bitrix24_events_acked_total",
    help: "Events a get node delivered that were deleted from the portal's queue after the flow acknowledged them (auto mode: as fetched). Each event counts once.",
    labelNames: ["portal", "node"],
    registers: [registry],
    collect() {
      this.reset();
      for (const n of metrics.allNodes()) this.inc({ portal, node: n.id }, n.acked);
    },
  });
  new Counter({
    name: "bitrix24_events_redelivered_total",
    help: "Events emitted again after their ack timeout or a restart.",
    labelNames: ["portal", "node"],
    registers: [registry],
    collect() {
      this.reset();
      for (const n of metrics.allNodes()) this.inc({ portal, node: n.id }, n.redelivered);
    },
  });
  new Counter({
    name: "bitrix24_events_dead_lettered_total",
    help: "Events sent to a get node's dead-letter output after maxDeliveries.",
    labelNames: ["portal", "node"],
    registers: [registry],
    collect() {
      this.reset();
      for (const n of metrics.allNodes()) this.inc({ portal, node: n.id }, n.deadLettered);
    },
  });
  new Counter({
    name: "bitrix24_events_unchanged_total",
    help: "Events a get node acked without emitting them because none of the watched fields changed (its changes option; nodes that do not count them have no series).",
    labelNames: ["portal", "node"],
    registers: [registry],
    collect() {
      this.reset();
      for (const n of metrics.allNodes()) if (n.unchanged !== null) this.inc({ portal, node: n.id }, n.unchanged);
    },
  });
  new Counter({
    name: "bitrix24_requests_total",
    help: "HTTP requests to the portal (a batch counts once) by REST method and HTTP status (0 = no answer).",
    labelNames: ["portal", "method", "status"],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of metrics.requestCounts())
        this.inc({ portal, method: r.method, status: String(r.status) }, r.count);
    },
  });
  new Gauge({
    name: "bitrix24_events_unacked",
    help: "Events a get node emitted that are not acknowledged yet (held under its process ids).",
    labelNames: ["portal", "node"],
    registers: [registry],
    collect() {
      this.reset();
      for (const n of metrics.liveNodes()) this.set({ portal, node: n.id }, n.unacked);
    },
  });
  new Gauge({
    name: "bitrix24_queue_records",
    help: "Records in the portal's queue at the last look (event.offline.list, only while the editor's Bitrix24 tab is open): state total, or of the first page unprocessed, held, error.",
    labelNames: ["portal", "state"],
    registers: [registry],
    collect() {
      this.reset();
      const look = metrics.snapshotQueue();
      if (!look) return;
      this.set({ portal, state: "total" }, look.total);
      this.set({ portal, state: "unprocessed" }, look.unprocessed);
      this.set({ portal, state: "held" }, look.held);
      this.set({ portal, state: "error" }, look.error);
    },
  });
  new Gauge({
    name: "bitrix24_bucket_fill_ratio",
    help: "The client's copy of the portal's request bucket: requests in it / burst (1 = the next request waits).",
    labelNames: ["portal"],
    registers: [registry],
    collect() {
      this.reset();
      const bucket = metrics.bucketReading();
      if (bucket) this.set({ portal }, bucket.burst > 0 ? bucket.level / bucket.burst : 0);
    },
  });
  new Gauge({
    name: "bitrix24_access_token_expires_seconds",
    help: "Seconds until the current access token expires (negative: expired; it is refreshed on the next call).",
    labelNames: ["portal"],
    registers: [registry],
    collect() {
      this.reset();
      const { expiresAt } = metrics.tokenState();
      if (expiresAt !== null) this.set({ portal }, Math.round((expiresAt - now()) / 1000));
    },
  });
  new Gauge({
    name: "bitrix24_reauthorization_needed",
    help: "1 when the token lineage is spent and a person must authorise the application again.",
    labelNames: ["portal"],
    registers: [registry],
    collect() {
      this.reset();
      this.set({ portal }, metrics.tokenState().reauthNeeded ? 1 : 0);
    },
  });
  new Gauge({
    name: "bitrix24_method_budget_used_ratio",
    help: `Share of a method's execution-time budget (${OPERATING_BUDGET_SECONDS} s of server time per 10 minutes) used in its current window, from time.operating.`,
    labelNames: ["portal", "method"],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of metrics.methodNumbers()) this.set({ portal, method: m.method }, m.share);
    },
  });
  new Gauge({
    name: "bitrix24_method_paused_seconds",
    help: "Seconds a method still waits for its budget after 429 OPERATION_TIME_LIMIT (0: not paused).",
    labelNames: ["portal", "method"],
    registers: [registry],
    collect() {
      this.reset();
      const t = now();
      for (const m of metrics.methodNumbers()) {
        this.set({ portal, method: m.method }, m.pausedUntil === null ? 0 : Math.max(0, (m.pausedUntil - t) / 1000));
      }
    },
  });
  return registry;
}
