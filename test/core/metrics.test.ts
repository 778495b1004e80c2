import { EventEmitter } from "node:events";
import should from "should";
import type { AckQueueEvents } from "../../src/core/acks/ack-queue";
import { Bitrix24Client, type OperatingInfo } from "../../src/core/client/client";
import type { ConsumerState, DeliveryGroup, OfflineConsumerEvents } from "../../src/core/consumer/consumer-types";
import { feedFromAcks, feedFromClient, feedFromConsumer } from "../../src/core/metrics/feed";
import { PerSecondSeries } from "../../src/core/metrics/per-second";
import { PortalMetrics } from "../../src/core/metrics/portal-metrics";
import { prometheusRegistry } from "../../src/core/metrics/prometheus";
import { QueueLook } from "../../src/core/metrics/queue-look";
import type { OfflineEvent } from "../../src/core/rest/types";
import { startSandbox } from "../../src/sandbox";

/** A clock the test moves by hand. */
function clock(start = 1_700_000_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function event(id: number): OfflineEvent {
  return {
    ID: String(id),
    TIMESTAMP_X: "2026-01-01T00:00:00+00:00",
    EVENT_NAME: "ONCRMDEALUPDATE",
    EVENT_DATA: { FIELDS: { ID: id } },
    EVENT_ADDITIONAL: {},
    MESSAGE_ID: `m${String(id).padStart(31, "0")}`,
  } as OfflineEvent;
}

function group(processId: string | null, ids: number[], redelivered = false): DeliveryGroup {
  return {
    processId,
    authConnector: "",
    error: 0,
    deliveries: ids.map((id) => ({ event: event(id), id, deliveryCount: redelivered ? 2 : 1, redelivered })),
  };
}

class FakeConsumer extends EventEmitter<OfflineConsumerEvents> {
  state: ConsumerState = { phase: "idle", mode: "ack", pending: 0, maxInFlight: 500, unchanged: 0 };
}

/** The value of one sample line of Prometheus text, or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const inside = line.slice(name.length + 1, line.lastIndexOf("}"));
    const found = Object.fromEntries([...inside.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

describe("operations metrics (core/metrics)", () => {
  it("per-second series: counts land in their second, skipped seconds read 0, the window forgets", () => {
    const s = new PerSecondSeries(10);
    const t0 = 1_000_000_000;
    s.add(3, t0);
    s.add(2, t0 + 400);
    s.add(5, t0 + 3000);
    should(s.since(0, t0 + 3000)).eql({ start: t0 / 1000 - 6, values: [0, 0, 0, 0, 0, 0, 5, 0, 0, 5] });
    // 12 s later the first counts have left the 10 s window and their slots are reused as zeros
    should(s.since(0, t0 + 15000).values).eql([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    s.add(1, t0 + 15000);
    should(s.since(t0 / 1000 + 14, t0 + 15000)).eql({ start: t0 / 1000 + 14, values: [0, 1] });
  });

  it("counts deliveries and acks of a get node; each event acked once, whatever the flow repeats", () => {
    const c = clock();
    const m = new PortalMetrics(
      { id: "p", name: "P", host: "x.bitrix24.com", perSecond: 2, burst: 50 },
      undefined,
      c.now,
    );
    const consumer = new FakeConsumer();
    const acks = new EventEmitter<AckQueueEvents>();
    const unwatch = feedFromConsumer(m, { id: "g", name: "get" }, consumer, 50);
    feedFromAcks(m, acks);
    consumer.emit("deliver", group("P1", [1, 2, 3]));
    consumer.emit("state", { phase: "fetching", mode: "ack", pending: 3, maxInFlight: 500, unchanged: 0 });
    const ack = { kind: "clear" as const, processId: "P1", authConnector: "", messageIds: [], allOfProcess: false };
    acks.emit("acked", { ...ack, ids: [1, 2] });
    acks.emit("acked", { ...ack, ids: [2] }); // the flow acked #2 twice: harmless, counted once
    consumer.emit("deliver", group("P1", [3], true)); // #3 timed out and came again
    acks.emit("acked", { ...ack, ids: [], messageIds: [event(3).MESSAGE_ID] });
    consumer.emit("dead-letter", group("P2", [9]));
    consumer.emit("drained", {
      events: 4,
      batches: 2,
      ms: 12,
      requests: 2,
      redelivered: 1,
      unchanged: 0,
      empty: true,
      stopped: false,
    });
    const [node] = m.snapshot().nodes;
    should(node).match({
      id: "g",
      delivered: 4,
      acked: 3,
      redelivered: 1,
      deadLettered: 1,
      unacked: 3,
      phase: "fetching",
      unchanged: null,
      lastDrain: { events: 4, empty: true },
    });
    const snap = m.snapshot();
    should(snap.emptyAt).equal(c.now());
    should(snap.series.delivered.at(-1)).equal(4);
    should(snap.series.acked.at(-1)).equal(3);
    // the bound: 2 requests/s, each bringing up to 50 events
    should(snap.bound.eventsPerSecond).equal(100);
    // an ack of records nobody here delivered, or acked before, counts nothing
    acks.emit("acked", { ...ack, processId: "OTHER", ids: [1, 2] });
    acks.emit("acked", { ...ack, ids: [1] });
    should(m.snapshot().nodes[0].acked).equal(3);
    // a closed node leaves the gauges but keeps its totals for the counters
    unwatch();
    should(m.snapshot().nodes).have.length(0);
    should(m.allNodes()[0]).match({ id: "g", delivered: 4, acked: 3 });
  });

  it("unchanged: counted only for a node whose changes option is on", () => {
    const m = new PortalMetrics({ id: "p", name: "P", host: "h", perSecond: 2, burst: 50 });
    const plain = new FakeConsumer();
    const watching = new FakeConsumer();
    feedFromConsumer(m, { id: "a", name: "" }, plain, 50);
    feedFromConsumer(m, { id: "b", name: "" }, watching, 50, true);
    plain.emit("state", { ...plain.state, unchanged: 0 });
    watching.emit("state", { ...watching.state, unchanged: 7 });
    should(m.snapshot().nodes.map((n) => [n.id, n.unchanged])).eql([
      ["a", null],
      ["b", 7],
    ]);
  });

  it("auto mode: the portal deleted the events as it answered, so delivered is acked", () => {
    const m = new PortalMetrics({ id: "p", name: "P", host: "h", perSecond: 2, burst: 50 });
    const consumer = new FakeConsumer();
    consumer.state = { ...consumer.state, mode: "auto" };
    feedFromConsumer(m, { id: "g", name: "" }, consumer, 50);
    consumer.emit("deliver", group(null, [1, 2]));
    should(m.snapshot().nodes[0]).match({ mode: "auto", delivered: 2, acked: 2 });
  });

  it("client events: requests by method and status, 503s, budget share and pauses, tokens and re-authorisation", () => {
    const c = clock();
    const m = new PortalMetrics({ id: "p", name: "P", host: "h", perSecond: 2, burst: 50 }, undefined, c.now);
    const client = new EventEmitter();
    feedFromClient(m, client);
    client.emit("request", { method: "batch", status: 200, ms: 5 });
    client.emit("request", { method: "batch", status: 503, ms: 5 });
    client.emit("operating", { method: "event.offline.get", operating: 120, resetAt: c.now() + 60_000 });
    client.emit("method-paused", { method: "crm.deal.get", until: c.now() + 30_000 });
    client.emit("tokens", { accessToken: "A", refreshToken: "R", expiresAt: c.now() + 3_600_000 });
    const snap = m.snapshot();
    should(snap.requests).match({ total: 2, limited503: 1, last503At: c.now(), byStatus: { 200: 1, 503: 1 } });
    should(snap.methods.find((x) => x.method === "event.offline.get")).match({ operating: 120, share: 0.25 });
    should(snap.methods.find((x) => x.method === "crm.deal.get")?.pausedUntil).equal(c.now() + 30_000);
    should(snap.token).match({ expiresAt: c.now() + 3_600_000, refreshedAt: c.now(), reauthNeeded: false });
    m.error({ code: "invalid_grant", method: "oauth/token", message: "refresh token expired" });
    should(m.snapshot().token).match({ reauthNeeded: true, reauthCode: "invalid_grant" });
    // the window reset: the budget is back, the pause is over
    c.advance(61_000);
    should(m.snapshot().methods.find((x) => x.method === "event.offline.get")).match({ operating: 0, share: 0 });
    should(m.snapshot().methods.find((x) => x.method === "crm.deal.get")?.pausedUntil).equal(null);
    // a refresh that worked ends the call for re-authorisation
    client.emit("tokens", { accessToken: "A2", refreshToken: "R2", expiresAt: c.now() + 3_600_000 });
    should(m.snapshot().token.reauthNeeded).be.false();
  });

  it("the client reports each answer's time.operating, a batch's per command too, and the bucket's fill", async () => {
    const sandbox = await startSandbox({ rateLimit: false, events: 3 });
    const c = sandbox.credentials;
    const client = new Bitrix24Client({
      portalUrl: sandbox.url,
      auth: { type: "oauth", ...c, oauthServer: sandbox.url },
      rateLimit: { perSecond: 2, burst: 10 },
    });
    try {
      const seen: OperatingInfo[] = [];
      client.on("operating", (info: OperatingInfo) => seen.push(info));
      await client.call("event.offline.list", {});
      await client.call("event.offline.list", {});
      await client.batch({ a: { method: "feature.get", params: { CODE: "rest_offline_extended" } } });
      const lists = seen.filter((s) => s.method === "event.offline.list");
      should(lists).have.length(2);
      // the window's server time adds up, and the answer says when it resets
      should(lists[1].operating).be.aboveOrEqual(lists[0].operating);
      should(lists[0].resetAt).be.above(Date.now());
      should(seen.map((s) => s.method))
        .containEql("feature.get")
        .and.containEql("batch");
      // three requests lifted the bucket (one drains in 500 ms at 2/s)
      const bucket = client.bucketReading;
      should(bucket).match({ burst: 10, perSecond: 2, waiting: 0 });
      should(bucket?.level).be.above(1.5).and.belowOrEqual(3);
    } finally {
      client.close();
      await sandbox.close();
    }
  });

  it("keeps the last 20 errors, newest first", () => {
    const m = new PortalMetrics({ id: "p", name: "P", host: "h", perSecond: 2, burst: 50 });
    for (let i = 0; i < 25; i++) m.error({ code: `E${i}`, message: "m", nodeId: "g", nodeName: "get" });
    const errors = m.snapshot().errors;
    should(errors).have.length(20);
    should(errors[0]).match({ code: "E24", nodeId: "g" });
    should(errors[19].code).equal("E5");
  });

  it("queue look: at most once a minute, its failure waits the minute too", async () => {
    const c = clock();
    const m = new PortalMetrics({ id: "p", name: "P", host: "h", perSecond: 2, burst: 50 }, undefined, c.now);
    let calls = 0;
    let fail = false;
    const look = new QueueLook(
      m,
      async () => {
        calls++;
        if (fail)
          throw Object.assign(new Error("boom"), { code: "QUERY_LIMIT_EXCEEDED", method: "event.offline.list" });
        return {
          total: 120,
          records: [
            { ID: "1", PROCESS_ID: "", ERROR: "0" },
            { ID: "2", PROCESS_ID: "P", ERROR: "0" },
            { ID: "3", PROCESS_ID: "", ERROR: "1" },
          ],
        } as never;
      },
      60_000,
      c.now,
    );
    await look.maybeLook();
    await look.maybeLook();
    should(calls).equal(1);
    should(m.snapshot().queue).match({ total: 120, counted: 3, unprocessed: 1, held: 1, error: 1 });
    c.advance(60_000);
    fail = true;
    await look.maybeLook();
    await look.maybeLook();
    should(calls).equal(2);
    should(m.snapshot().errors[0]).match({ code: "QUERY_LIMIT_EXCEEDED" });
  });

  it("Prometheus text: counters, gauges, labels, an instance label, and no secret", async () => {
    const c = clock();
    const m = new PortalMetrics(
      { id: "p", name: "P", host: "x.bitrix24.com", perSecond: 2, burst: 50 },
      () => ({ level: 25, burst: 50, perSecond: 2, waiting: 0 }),
      c.now,
    );
    const client = new EventEmitter();
    feedFromClient(m, client);
    const consumer = new FakeConsumer();
    feedFromConsumer(m, { id: "g1", name: "get" }, consumer, 50);
    consumer.emit("deliver", group("P1", [1, 2, 3]));
    consumer.emit("state", { phase: "idle", mode: "ack", pending: 3, maxInFlight: 500, unchanged: 0 });
    m.ack({ kind: "clear", processId: "P1", ids: [1], messageIds: [], allOfProcess: false });
    client.emit("request", { method: "batch", status: 200, ms: 5 });
    client.emit("request", { method: "batch", status: 200, ms: 5 });
    client.emit("request", { method: "batch", status: 503, ms: 5 });
    client.emit("operating", { method: "batch", operating: 48 });
    client.emit("tokens", {
      accessToken: "SECRET-ACCESS",
      refreshToken: "SECRET-REFRESH",
      expiresAt: c.now() + 1800_000,
    });
    const registry = prometheusRegistry(m, { instance: "host-a:1880", now: c.now });
    const text = await registry.metrics();
    const portal = "x.bitrix24.com";
    should(
      sample(text, "bitrix24_events_delivered_total", { portal, node: "g1", nodered_instance: "host-a:1880" }),
    ).equal(3);
    should(sample(text, "bitrix24_events_acked_total", { portal, node: "g1" })).equal(1);
    should(sample(text, "bitrix24_requests_total", { portal, method: "batch", status: "200" })).equal(2);
    should(sample(text, "bitrix24_requests_total", { portal, method: "batch", status: "503" })).equal(1);
    should(sample(text, "bitrix24_events_unacked", { portal, node: "g1" })).equal(3);
    should(sample(text, "bitrix24_bucket_fill_ratio", { portal })).equal(0.5);
    should(sample(text, "bitrix24_access_token_expires_seconds", { portal })).equal(1800);
    should(sample(text, "bitrix24_method_budget_used_ratio", { portal, method: "batch" })).equal(0.1);
    should(text).match(/# TYPE bitrix24_events_delivered_total counter/);
    should(text).not.match(/SECRET/);
    // issue 21's count: no series until a node counts unchanged events, then one
    should(text).not.match(/bitrix24_events_unchanged_total\{/);
    m.state("g1", "idle", 3, 500, 4);
    should(sample(await registry.metrics(), "bitrix24_events_unchanged_total", { portal, node: "g1" })).equal(4);
    // a second scrape gives the same totals (counters are set from the totals, not added to)
    const again = await registry.metrics();
    should(sample(again, "bitrix24_requests_total", { portal, method: "batch", status: "200" })).equal(2);
  });
});
