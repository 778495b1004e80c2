// The embedded sandbox as the benchmark uses it: started in this process, watched through stats().
import { createRequire } from "node:module";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { packageRoot } from "./node-red-process.mjs";

const require = createRequire(import.meta.url);

/** startSandbox from the build (what the package ships), not from src/. */
export function startSandbox(options) {
  const { startSandbox: start } = require(join(packageRoot, "nodes", "sandbox", "index.js"));
  return start(options);
}

/** The requests the sandbox counted between two of its stats().requests readings, by method too. */
export function requestsSince(before, after) {
  const byMethod = {};
  for (const [method, n] of Object.entries(after.byMethod)) {
    const d = n - (before.byMethod[method] ?? 0);
    if (d > 0) byMethod[method] = d;
  }
  return { total: after.total - before.total, rejected503: after.rejected503 - before.rejected503, byMethod };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Records {t (ms, performance clock), requests, deleted, rejected503} every `everyMs` until stopped. */
export function sampleStats(sandbox, everyMs = 25) {
  const samples = [];
  const take = () => {
    const s = sandbox.stats();
    samples.push({
      t: performance.now(),
      requests: s.requests.total,
      deleted: s.deleted,
      rejected503: s.requests.rejected503,
    });
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    samples,
    stop() {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}

/**
 * Resolves with the performance-clock time at which the sandbox had deleted `target` events (checked every
 * 5 ms). Rejects when nothing was deleted for `stallMs` (calling `onStall` once at half of it, so the caller can
 * nudge the flow) or after `timeoutMs`.
 */
export async function waitForDeleted(sandbox, target, { timeoutMs, stallMs = 20_000, onStall } = {}) {
  const started = performance.now();
  let last = sandbox.stats().deleted;
  let lastChange = started;
  let nudged = false;
  for (;;) {
    const now = performance.now();
    const deleted = sandbox.stats().deleted;
    if (deleted >= target) return now;
    if (deleted !== last) {
      last = deleted;
      lastChange = now;
      nudged = false;
    }
    if (!nudged && onStall && now - lastChange > stallMs / 2) {
      nudged = true;
      onStall(deleted);
    }
    if (now - lastChange > stallMs) {
      throw new Error(
        `stalled: ${deleted} of ${target} events cleared, no progress for ${Math.round(stallMs / 1000)} s`,
      );
    }
    if (timeoutMs && now - started > timeoutMs) {
      throw new Error(`timed out: ${deleted} of ${target} events cleared after ${Math.round(timeoutMs / 1000)} s`);
    }
    await sleep(5);
  }
}
