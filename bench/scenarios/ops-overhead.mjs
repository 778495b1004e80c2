// 10. What the operations view costs: the rate-limited drain of measurement 1 (limit 50) with the editor's
// Bitrix24 sidebar open (a comms client subscribed to its pushes, its lease renewed, as the open tab does) and the
// portal's metricsPath scraped every second, against the same drain with neither, in the same run. The drains
// alternate (plain, watched, watched, plain) so a machine that gets busier or quieter mid-run touches both alike.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { drainFlow } from "../lib/flows.mjs";
import { burstEnd, ratio, round } from "../lib/measures.mjs";
import { packageRoot, startNodeRed } from "../lib/node-red-process.mjs";
import { requestsSince, sampleStats, startSandbox, waitForDeleted } from "../lib/sandbox-watch.mjs";

const require = createRequire(import.meta.url);
const WebSocket = require("ws");
const METRICS_PATH = "/bitrix24/metrics";
const TOPIC = "bitrix24-ops/update";
const ORDER = ["plain", "watched", "watched", "plain"];

/** CPU ms a process has used so far (Linux /proc). */
function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) / 100) * 1000;
}

/** An open Bitrix24 sidebar, as far as Node-RED can tell, plus a Prometheus scraping every second. */
async function watch(port) {
  const base = `http://127.0.0.1:${port}`;
  const seen = { pushes: 0, pushBytes: 0, scrapes: 0, scrapeBytes: 0, lastScrape: "" };
  const socket = new WebSocket(`ws://127.0.0.1:${port}/admin/comms`);
  socket.on("message", (data) => {
    const items = JSON.parse(String(data));
    for (const item of Array.isArray(items) ? items : [items]) {
      if (item.topic === TOPIC) {
        seen.pushes++;
        seen.pushBytes += JSON.stringify(item.data).length;
      }
    }
  });
  await new Promise((resolve, reject) => {
    socket.once("open", resolve);
    socket.once("error", reject);
  });
  socket.send(JSON.stringify({ subscribe: TOPIC }));
  // what the tab does when it opens: read the last 15 minutes (this starts the lease), then renew it every 15 s
  const first = await fetch(`${base}/admin/bitrix24-ops/snapshot`);
  if (!first.ok) throw new Error(`the sidebar's snapshot answered ${first.status}`);
  await first.text();
  const lease = setInterval(() => void fetch(`${base}/admin/bitrix24-ops/watch`, { method: "POST" }), 15_000);
  const scraper = setInterval(async () => {
    const answer = await fetch(`${base}/api${METRICS_PATH}`).catch(() => undefined);
    if (!answer?.ok) return;
    seen.lastScrape = await answer.text();
    seen.scrapes++;
    seen.scrapeBytes += seen.lastScrape.length;
  }, 1000);
  return {
    stop() {
      clearInterval(lease);
      clearInterval(scraper);
      socket.terminate();
      return seen;
    },
  };
}

async function drain(variant, bucket, events, limit) {
  const sandbox = await startSandbox({ rateLimit: bucket });
  try {
    sandbox.addEvents(events);
    const setUp = sandbox.stats().requests;
    const watched = variant === "watched";
    const nodeRed = await startNodeRed({
      name: `ops-${variant}`,
      env: watched ? { BENCH_ADMIN: "1" } : {},
      flows: () => drainFlow(sandbox, { limit, rate: bucket, metricsPath: watched ? METRICS_PATH : "" }),
    });
    try {
      const watcher = watched ? await watch(nodeRed.port) : undefined;
      const sampler = sampleStats(sandbox, 25);
      const cpuBefore = cpuMs(nodeRed.pid);
      const injectedAt = performance.now();
      nodeRed.inject("start");
      const bound = bucket.perSecond * limit;
      const endedAt = await waitForDeleted(sandbox, events, {
        timeoutMs: ((events / bound) * 3 + 60) * 1000,
        onStall: () => nodeRed.inject("start"),
      });
      const cpu = cpuMs(nodeRed.pid) - cpuBefore;
      const samples = sampler.stop();
      const seen = watcher?.stop();
      const end = burstEnd(samples, bucket);
      const steady = end && endedAt - end.t > 1000 ? ((events - end.deleted) / (endedAt - end.t)) * 1000 : null;
      const requests = requestsSince(setUp, sandbox.stats().requests);
      const stats = sandbox.stats();
      const problems = [];
      if (stats.queue.total !== 0 || stats.deleted !== events) {
        problems.push(`${variant}: ${stats.queue.total} events left, ${stats.deleted} of ${events} cleared`);
      }
      if (watched && (seen.pushes === 0 || seen.scrapes === 0)) {
        problems.push(`watched: ${seen.pushes} sidebar pushes and ${seen.scrapes} scrapes: nothing was watched`);
      }
      return {
        variant,
        seconds: round((endedAt - injectedAt) / 1000, 2),
        afterBurstPerSecond: round(steady),
        ratioToBound: round(ratio(steady, bound), 3),
        rejected503: requests.rejected503,
        requests: requests.total,
        listRequests: requests.byMethod["event.offline.list"] ?? 0,
        cpuMs: Math.round(cpu),
        cpuMicrosPerEvent: round((cpu * 1000) / events, 1),
        ...(seen
          ? {
              pushes: seen.pushes,
              pushKb: round(seen.pushBytes / 1024, 1),
              scrapes: seen.scrapes,
              scrapeKb: round(seen.scrapeBytes / 1024, 1),
            }
          : {}),
        problems,
      };
    } finally {
      await nodeRed.stop();
    }
  } finally {
    await sandbox.close();
  }
}

/**
 * The same costs in this process, where a clock is finer than /proc's 10 ms ticks: the built PortalMetrics of a
 * portal with 5 get nodes, 10 methods, 20 errors and 15 full minutes of series; one push (the last 5 s), one full
 * snapshot (a tab opening), one scrape; and the always-on part, a 50-event batch delivered and acked.
 */
async function inProcess() {
  const { PortalMetrics } = require(join(packageRoot, "nodes/core/metrics/portal-metrics.js"));
  const { prometheusRegistry } = require(join(packageRoot, "nodes/core/metrics/prometheus.js"));
  const m = new PortalMetrics({ id: "p", name: "P", host: "x.bitrix24.com", perSecond: 2, burst: 50 }, () => ({
    level: 20,
    burst: 50,
    perSecond: 2,
    waiting: 1,
  }));
  for (let n = 0; n < 5; n++) m.watchNode(`g${n}`, `get ${n}`, "ack", 500, 50);
  const methods = ["batch", "event.offline.get", "event.offline.clear", "event.offline.list", "crm.deal.get"];
  for (const method of [...methods, "crm.deal.update", "feature.get", "event.bind", "event.get", "crm.deal.list"]) {
    m.operating(method, 3, Date.now() + 600_000);
    m.request(method, 200);
    m.request(method, 503);
  }
  for (let i = 0; i < 20; i++) m.error({ code: "QUERY_LIMIT_EXCEEDED", message: "x".repeat(80), nodeId: "g1" });
  const now = Date.now();
  for (let s = 0; s < 900; s++) {
    m.delivered.add(50, now - s * 1000);
    m.acked.add(50, now - s * 1000);
  }
  const registry = prometheusRegistry(m, { instance: "host:1880" });
  const micros = async (n, fn) => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await fn();
    return round(Number(process.hrtime.bigint() - t) / 1000 / n, 1);
  };
  const batch = Array.from({ length: 50 }, (_, i) => ({
    id: i + 1,
    messageId: `${"m".repeat(30)}${i}`,
    redelivered: false,
  }));
  const ids = batch.map((e) => e.id);
  return {
    pushMicros: await micros(2000, () => JSON.stringify(m.snapshot(Math.floor(Date.now() / 1000) - 5))),
    openMicros: await micros(500, () => JSON.stringify(m.snapshot(0))),
    scrapeMicros: await micros(300, () => registry.metrics()),
    scrapeBytes: (await registry.metrics()).length,
    batchMicros: await micros(20_000, () => {
      m.deliver("g0", "P", batch);
      m.ack({ kind: "clear", processId: "P", ids, messageIds: [], allOfProcess: false });
    }),
  };
}

function mean(values) {
  const known = values.filter((v) => v !== null && v !== undefined);
  return known.length ? known.reduce((s, v) => s + v, 0) / known.length : null;
}

export async function opsOverhead(ctx) {
  const bucket = ctx.quick ? { burst: 10, perSecond: 5 } : { burst: 50, perSecond: 2 };
  const limit = 50;
  const events = ctx.quick ? 1000 : 5000;
  const bound = bucket.perSecond * limit;
  const rows = [];
  const problems = [];
  for (const variant of ORDER) {
    ctx.log(`  ${variant}: ${events} events, limit ${limit}, bucket ${bucket.burst} burst / ${bucket.perSecond} per s`);
    const row = await drain(variant, bucket, events, limit);
    problems.push(...row.problems);
    delete row.problems;
    rows.push(row);
    ctx.log(
      `    ${row.afterBurstPerSecond} events/s after the burst, ${row.rejected503} × 503, Node-RED CPU ${row.cpuMs} ms (${row.cpuMicrosPerEvent} µs/event)${row.pushes !== undefined ? `, ${row.pushes} pushes, ${row.scrapes} scrapes` : ""}`,
    );
  }
  const of = (variant, key) => mean(rows.filter((r) => r.variant === variant).map((r) => r[key]));
  const plain = {
    afterBurstPerSecond: of("plain", "afterBurstPerSecond"),
    cpuMicrosPerEvent: of("plain", "cpuMicrosPerEvent"),
  };
  const watched = {
    afterBurstPerSecond: of("watched", "afterBurstPerSecond"),
    cpuMicrosPerEvent: of("watched", "cpuMicrosPerEvent"),
  };
  const rateRatio = round(ratio(watched.afterBurstPerSecond, plain.afterBurstPerSecond), 3);
  const costs = await inProcess();
  ctx.log(
    `  in process: a push ${costs.pushMicros} µs, a tab opening ${costs.openMicros} µs, a scrape ${costs.scrapeMicros} µs (${costs.scrapeBytes} bytes), a 50-event batch delivered + acked ${costs.batchMicros} µs`,
  );
  const rejected = rows.reduce((s, r) => s + r.rejected503, 0);
  // "Nothing measurable": the drain as fast (within 2 %, the rate's own run-to-run noise), no 503 either way
  const met = rateRatio !== null && rateRatio >= 0.98 && rejected === 0;
  return {
    id: "ops-overhead",
    title: "10. Operations view: sidebar open and metrics scraped vs. neither",
    config: { bucket, limit, events, bound, order: ORDER },
    rows,
    plain,
    watched,
    rateRatio,
    cpuExtraMicrosPerEvent: round(watched.cpuMicrosPerEvent - plain.cpuMicrosPerEvent, 1),
    costs,
    goal: {
      text: "the same events/s after the burst (≥ 98 % of the plain drain's), zero 503s",
      met,
      headline: `${round(watched.afterBurstPerSecond)} vs ${round(plain.afterBurstPerSecond)} events/s after the burst (${round(rateRatio * 100, 1)} %), Node-RED CPU ${round(watched.cpuMicrosPerEvent)} vs ${round(plain.cpuMicrosPerEvent)} µs/event`,
    },
    problems,
    notes: [],
  };
}
