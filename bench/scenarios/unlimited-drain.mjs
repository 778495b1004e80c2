// 3. Unlimited drain (bucket off): events/s through Node-RED (get -> clear, ack mode, one msg per event) vs. a raw
// loop of our core client making the same calls without Node-RED; the difference is the nodes' cost per event.
import { existsSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { drainThroughNodeRed } from "../lib/drain-run.mjs";
import { ratio, round } from "../lib/measures.mjs";
import { startRawDrain } from "../lib/raw-drain.mjs";
import { startSandbox, waitForDeleted } from "../lib/sandbox-watch.mjs";

const GOAL = 0.5;
const LIMIT = 50;

function checkEmpty(sandbox, events, label, problems) {
  const s = sandbox.stats();
  if (s.queue.total !== 0 || s.deleted !== events) {
    problems.push(`${label}: ${s.queue.total} events left in the queue, ${s.deleted} of ${events} cleared`);
  }
  return s;
}

export async function unlimitedDrain(ctx) {
  const events = ctx.quick ? 20_000 : 200_000;
  const problems = [];
  const notes = [];
  const sandbox = await startSandbox({ rateLimit: false });
  try {
    ctx.log(`  raw core client: ${events} events, limit ${LIMIT}`);
    sandbox.addEvents(events);
    const raw = await startRawDrain(sandbox, { limit: LIMIT });
    let rawMs;
    let rawStats;
    try {
      const startedAt = performance.now();
      const done = raw.go();
      const endedAt = await waitForDeleted(sandbox, events, { timeoutMs: 300_000 });
      await done;
      rawMs = endedAt - startedAt;
      rawStats = checkEmpty(sandbox, events, "raw client", problems);
    } finally {
      raw.stop();
    }

    const runNodeRed = async (label, userDirBase) => {
      ctx.log(`  ${label}: ${events} events, limit ${LIMIT}`);
      sandbox.reset();
      sandbox.addEvents(events);
      const run = await drainThroughNodeRed(sandbox, {
        name: "unlimited",
        events,
        flow: { limit: LIMIT, prefetch: 1, rate: false },
        timeoutMs: 600_000,
        sampleEveryMs: 250,
        userDirBase,
      });
      checkEmpty(sandbox, events, label, problems);
      if (run.retriggers > 0) notes.push(`${label}: the drain stalled and needed ${run.retriggers} more trigger(s)`);
      return run;
    };
    const nodeRed = await runNodeRed("Node-RED get -> clear", undefined);
    // Where the time goes: the same run with the user directory (process-id journal, fsync'd before every
    // emit) on tmpfs. A diagnostic, not the headline: a real user directory is on disk.
    const tmpfs = !ctx.quick && existsSync("/dev/shm") ? await runNodeRed("same, journal on tmpfs", "/dev/shm") : null;

    const rawRate = (events / rawMs) * 1000;
    const nodeRate = (events / nodeRed.ms) * 1000;
    const share = ratio(nodeRate, rawRate);
    const overheadUs = 1e6 / nodeRate - 1e6 / rawRate;
    const tmpfsRate = tmpfs ? (events / tmpfs.ms) * 1000 : null;
    return {
      id: "unlimited-drain",
      title: "3. Unlimited drain: Node-RED vs. raw core client",
      config: { events, limit: LIMIT },
      raw: {
        seconds: round(rawMs / 1000, 2),
        perSecond: round(rawRate),
        microsecondsPerEvent: round(1e6 / rawRate),
        requests: rawStats.requests.total,
      },
      nodeRed: {
        seconds: round(nodeRed.ms / 1000, 2),
        perSecond: round(nodeRate),
        microsecondsPerEvent: round(1e6 / nodeRate),
        requests: nodeRed.stats.requests.total,
        byMethod: nodeRed.stats.requests.byMethod,
      },
      journalOnTmpfs: tmpfs
        ? {
            seconds: round(tmpfs.ms / 1000, 2),
            perSecond: round(tmpfsRate),
            microsecondsPerEvent: round(1e6 / tmpfsRate),
            overheadMicrosecondsPerEvent: round(1e6 / tmpfsRate - 1e6 / rawRate),
          }
        : null,
      shareOfRaw: round(share, 3),
      overheadMicrosecondsPerEvent: round(overheadUs),
      nodeRedVersion: nodeRed.nodeRedVersion,
      goal: {
        text: `Node-RED path >= ${GOAL * 100} % of the raw client`,
        met: share !== null && share >= GOAL,
        headline: `${round(nodeRate, 0)} vs ${round(rawRate, 0)} events/s (${round(share * 100, 1)} %), +${round(overheadUs)} µs per event`,
      },
      problems,
      notes,
    };
  } finally {
    await sandbox.close();
  }
}
