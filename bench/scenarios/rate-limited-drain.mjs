// 1. Rate-limited drain: how close the nodes get to the bound a bucket of X requests burst, Y/s sets.
import { drainThroughNodeRed } from "../lib/drain-run.mjs";
import { burstEnd, ratio, round } from "../lib/measures.mjs";
import { startSandbox } from "../lib/sandbox-watch.mjs";

const GOAL = 0.9;

export async function rateLimitedDrain(ctx) {
  // Full run: the cloud's common bucket (50 burst, 2/s). Quick run: a faster, smaller bucket (same bound logic:
  // one request per batch -> Y x limit events/s once the burst is spent) so the steady part takes seconds.
  const bucket = ctx.quick ? { burst: 10, perSecond: 5 } : { burst: 50, perSecond: 2 };
  // Full run: the 5 000-event queue for limit 50 (25 s after the burst); the other variants get queues
  // that leave about 15 s after their (bigger) bursts.
  const variants = [
    { label: "limit 50", limit: 50, prefetch: 1, events: ctx.quick ? 1000 : 5000 },
    { label: "limit 500", limit: 500, prefetch: 1, events: ctx.quick ? 10000 : 40000 },
    { label: "limit 50, prefetch 4", limit: 50, prefetch: 4, events: ctx.quick ? 4000 : 16000 },
  ];
  const rows = [];
  const problems = [];
  const notes = [];
  let nodeRedVersion;
  for (const v of variants) {
    ctx.log(`  ${v.label}: ${v.events} events, bucket ${bucket.burst} burst / ${bucket.perSecond} per s`);
    const sandbox = await startSandbox({ rateLimit: bucket });
    try {
      sandbox.addEvents(v.events);
      // Each request moves `limit` events per get it carries: the acks of the previous batch ride along.
      const bound = bucket.perSecond * v.limit * v.prefetch;
      const burstEvents = bucket.burst * v.limit * v.prefetch;
      const run = await drainThroughNodeRed(sandbox, {
        name: `drain-${v.limit}-${v.prefetch}`,
        events: v.events,
        flow: { limit: v.limit, prefetch: v.prefetch, rate: bucket },
        timeoutMs: ((v.events / bound) * 3 + 60) * 1000,
      });
      nodeRedVersion = run.nodeRedVersion;
      const end = burstEnd(run.samples, bucket);
      let steady = null;
      if (end && run.endedAt - end.t > 1000) {
        steady = ((v.events - end.deleted) / (run.endedAt - end.t)) * 1000;
      }
      if (run.retriggers > 0) notes.push(`${v.label}: the drain stalled and needed ${run.retriggers} more trigger(s)`);
      const s = run.stats;
      if (s.queue.total !== 0 || s.deleted !== v.events) {
        problems.push(`${v.label}: ${s.queue.total} events left in the queue, ${s.deleted} of ${v.events} cleared`);
      }
      // When the 503s came (seconds after the start), to tell a burst overrun from steady-state jitter.
      const at503 = [];
      for (let i = 1; i < run.samples.length; i++) {
        const n = run.samples[i].rejected503 - run.samples[i - 1].rejected503;
        for (let k = 0; k < n; k++) at503.push(round((run.samples[i].t - run.injectedAt) / 1000, 2));
      }
      rows.push({
        label: v.label,
        events: v.events,
        limit: v.limit,
        prefetch: v.prefetch,
        seconds: round(run.ms / 1000, 2),
        overallPerSecond: round((v.events / run.ms) * 1000),
        burstEvents,
        afterBurstPerSecond: round(steady),
        afterBurstSeconds: end ? round((run.endedAt - end.t) / 1000, 1) : null,
        bound,
        ratioToBound: round(ratio(steady, bound), 3),
        rejected503: s.requests.rejected503,
        rejected503AtSeconds: at503.slice(0, 10),
        burstSpentAtSeconds: end ? round((end.t - run.injectedAt) / 1000, 2) : null,
        requests: s.requests.total,
        byMethod: s.requests.byMethod,
      });
    } finally {
      await sandbox.close();
    }
  }
  const main = rows[0];
  const met = rows.every((r) => r.ratioToBound !== null && r.ratioToBound >= GOAL && r.rejected503 === 0);
  return {
    id: "rate-limited-drain",
    title: "1. Rate-limited drain (ack mode)",
    config: { bucket },
    rows,
    nodeRedVersion,
    goal: {
      text: `after the burst >= ${GOAL * 100} % of Y x limit (x prefetch) events/s, zero 503s`,
      met,
      headline: main
        ? `${main.afterBurstPerSecond} events/s after the burst vs bound ${main.bound} (${pct(main.ratioToBound)}), ${main.rejected503} × 503`
        : "no result",
    },
    problems,
    notes,
  };
}

function pct(r) {
  return r === null ? "n/a" : `${round(r * 100, 1)} %`;
}
