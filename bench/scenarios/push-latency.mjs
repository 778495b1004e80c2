// 4. Push latency: from an event entering the sandbox to its msg leaving the get node, with the trigger
// fed by ONOFFLINEEVENT pushes (minTimeout 0) vs. polling every 5 s. Both run at once, each in its own
// Node-RED against its own sandbox, and get the same events at the same moments.
import { performance } from "node:perf_hooks";
import { latencyFlow } from "../lib/flows.mjs";
import { latencySummary, round } from "../lib/measures.mjs";
import { startNodeRed } from "../lib/node-red-process.mjs";
import { sleep, startSandbox } from "../lib/sandbox-watch.mjs";

const POLL_SECONDS = 5;
const now = () => performance.timeOrigin + performance.now();

async function waitForPushBinding(sandbox) {
  const deadline = performance.now() + 15_000;
  while (performance.now() < deadline) {
    const state = await (await fetch(`${sandbox.url}/_sandbox/state`)).json();
    const binding = state.bindings?.find((b) => b.event === "ONOFFLINEEVENT" && !b.offline);
    if (binding) return binding;
    await sleep(50);
  }
  throw new Error("the trigger node did not bind ONOFFLINEEVENT within 15 s");
}

export async function pushLatency(ctx) {
  // Quick: a short window (CI has a minute for all six); the poll side still needs up to 6 s to settle.
  const windowMs = ctx.quick ? 4_000 : 60_000;
  const kinds = ["push", "poll"];
  const sandboxes = {};
  const nodeReds = {};
  const seen = { push: new Map(), poll: new Map() };
  try {
    for (const kind of kinds) {
      sandboxes[kind] = await startSandbox({ rateLimit: false });
      nodeReds[kind] = await startNodeRed({
        name: `latency-${kind}`,
        flows: (port) => latencyFlow(sandboxes[kind], port, { kind, interval: POLL_SECONDS }),
        onSeen: (ids, times) => {
          for (let i = 0; i < ids.length; i++) if (!seen[kind].has(ids[i])) seen[kind].set(ids[i], times[i]);
        },
      });
    }
    const binding = await waitForPushBinding(sandboxes.push);
    ctx.log(
      `  events every 250-750 ms for ${windowMs / 1000} s; push minTimeout ${binding.minTimeout}, poll every ${POLL_SECONDS} s`,
    );

    // Record ids restart at 1 in a fresh sandbox: the k-th event added is ID k in both.
    const addedAt = [];
    const end = performance.now() + windowMs;
    while (performance.now() < end) {
      await sleep(250 + Math.random() * 500);
      addedAt.push(now());
      for (const kind of kinds) sandboxes[kind].addEvents(1);
    }
    // The last polled events need up to one poll interval more.
    const settle = performance.now() + POLL_SECONDS * 1000 + 1000;
    while (performance.now() < settle && kinds.some((k) => seen[k].size < addedAt.length)) await sleep(50);

    const problems = [];
    const result = {};
    for (const kind of kinds) {
      const latencies = [];
      for (let i = 0; i < addedAt.length; i++) {
        const t = seen[kind].get(String(i + 1));
        if (t !== undefined) latencies.push(t - addedAt[i]);
      }
      const missing = addedAt.length - latencies.length;
      if (missing > 0) problems.push(`${kind}: ${missing} of ${addedAt.length} events never left the get node`);
      const s = latencySummary(latencies);
      result[kind] = {
        samples: s.samples,
        p50Ms: round(s.p50, 1),
        p95Ms: round(s.p95, 1),
        p99Ms: round(s.p99, 1),
        maxMs: round(s.max, 1),
        pushesSent: sandboxes[kind].stats().pushes,
      };
    }
    return {
      id: "push-latency",
      title: "4. Latency: event in the portal -> msg out of the get node",
      config: {
        windowSeconds: windowMs / 1000,
        pollSeconds: POLL_SECONDS,
        minTimeout: binding.minTimeout,
        events: addedAt.length,
      },
      push: result.push,
      poll: result.poll,
      goal: {
        text: "none set by the issue: reported",
        met: null,
        headline: `push p50/p95/p99 ${result.push.p50Ms}/${result.push.p95Ms}/${result.push.p99Ms} ms vs poll ${result.poll.p50Ms}/${result.poll.p95Ms}/${result.poll.p99Ms} ms`,
      },
      nodeRedVersion: nodeReds.push.nodeRedVersion,
      problems,
    };
  } finally {
    await Promise.all(Object.values(nodeReds).map((n) => n.stop()));
    await Promise.all(Object.values(sandboxes).map((s) => s.close()));
  }
}
