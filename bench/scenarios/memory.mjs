// 5. Memory while draining a very large queue: the Node-RED process must stay flat — it only ever holds the
// in-flight window (maxInFlight), whatever the queue's size. Heap readings are taken after a full GC
// (--expose-gc), so they show what is retained, not what is waiting for collection.
import { drainThroughNodeRed } from "../lib/drain-run.mjs";
import { mb, round } from "../lib/measures.mjs";
import { startSandbox } from "../lib/sandbox-watch.mjs";

// Retained heap may move by a few MB (JIT code, caches, timers); growth with the queue would be far more.
const DRIFT_LIMIT_MB = 10;
const PEAK_LIMIT_MB = 50;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : null;
}

export async function memoryFlat(ctx) {
  const events = ctx.quick ? 20_000 : 1_000_000;
  // Limit 100: 10 000 get/ack rounds over a million events still expose anything kept per round (process ids,
  // timers, journal entries), at half the time limit 50 takes — the full run must stay under 10 minutes.
  const limit = 100;
  const maxInFlight = 500;
  ctx.log(`  ${events} events, limit ${limit}, maxInFlight ${maxInFlight}`);
  const sandbox = await startSandbox({ rateLimit: false });
  try {
    sandbox.addEvents(events);
    const run = await drainThroughNodeRed(sandbox, {
      name: "memory",
      events,
      flow: { limit, prefetch: 1, rate: false, maxInFlight },
      timeoutMs: 1_200_000,
      sampleEveryMs: 500,
      memoryEveryMs: ctx.quick ? 200 : 2000,
    });
    const problems = [];
    const notes = run.retriggers > 0 ? [`the drain stalled and needed ${run.retriggers} more trigger(s)`] : [];
    const s = run.stats;
    if (s.queue.total !== 0 || s.deleted !== events) {
      problems.push(`${s.queue.total} events left in the queue, ${s.deleted} of ${events} cleared`);
    }
    const before = run.memory.find((m) => m.phase === "before");
    const after = run.memory.find((m) => m.phase === "after");
    const during = run.memory.filter((m) => m.phase === "during");
    const quarter = Math.max(1, Math.floor(during.length / 4));
    const firstQuarter = median(during.slice(0, quarter).map((m) => m.heapUsed));
    const lastQuarter = median(during.slice(-quarter).map((m) => m.heapUsed));
    const peakHeap = Math.max(...during.map((m) => m.heapUsed), before.heapUsed);
    const peakRss = Math.max(...during.map((m) => m.rss), before.rss);
    const driftMb = mb(lastQuarter - firstQuarter);
    const peakMb = mb(peakHeap - before.heapUsed);
    const afterMb = mb(after.heapUsed - before.heapUsed);
    const flat =
      during.length >= 3 && Math.abs(driftMb) <= DRIFT_LIMIT_MB && peakMb <= PEAK_LIMIT_MB && afterMb <= DRIFT_LIMIT_MB;
    return {
      id: "memory",
      title: "5. Memory of the Node-RED process while draining",
      config: { events, limit, maxInFlight, readingsDuring: during.length },
      seconds: round(run.ms / 1000, 1),
      perSecond: round((events / run.ms) * 1000),
      heapMb: {
        before: mb(before.heapUsed),
        duringMin: mb(Math.min(...during.map((m) => m.heapUsed))),
        duringMax: mb(peakHeap),
        firstQuarterMedian: mb(firstQuarter),
        lastQuarterMedian: mb(lastQuarter),
        after: mb(after.heapUsed),
      },
      rssMb: {
        before: mb(before.rss),
        duringMax: mb(peakRss),
        after: mb(after.rss),
      },
      driftMb,
      peakOverBeforeMb: peakMb,
      afterOverBeforeMb: afterMb,
      readings: run.memory.map((m) => ({
        phase: m.phase,
        seconds: round(m.t / 1000, 1),
        deleted: m.deleted ?? null,
        heapMb: mb(m.heapUsed),
        rssMb: mb(m.rss),
      })),
      goal: {
        text: `flat: heap drift over the drain <= ${DRIFT_LIMIT_MB} MB, peak <= before + ${PEAK_LIMIT_MB} MB, after <= before + ${DRIFT_LIMIT_MB} MB`,
        met: flat,
        headline: `heap ${mb(before.heapUsed)} MB before, ${mb(peakHeap)} MB peak, ${mb(after.heapUsed)} MB after (drift ${driftMb} MB over ${events} events); RSS peak ${mb(peakRss)} MB`,
      },
      nodeRedVersion: run.nodeRedVersion,
      problems,
      notes,
    };
  } finally {
    await sandbox.close();
  }
}
