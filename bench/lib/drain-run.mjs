// One drain of a sandbox queue through a Node-RED child running drainFlow: start, inject, wait, stop.
import { performance } from "node:perf_hooks";
import { drainFlow } from "./flows.mjs";
import { startNodeRed } from "./node-red-process.mjs";
import { sampleStats, waitForDeleted } from "./sandbox-watch.mjs";

/**
 * @returns {{ms: number, samples: object[], stats: object, nodeRedVersion: string, injectedAt: number,
 *            endedAt: number, memory?: object[]}}
 * The clock starts when the drain is triggered (Node-RED already running, queue already filled) and stops
 * when the sandbox has deleted every event — i.e. when the flow has acked the last one.
 */
export async function drainThroughNodeRed(sandbox, o) {
  const nodeRed = await startNodeRed({
    name: o.name,
    flows: () => drainFlow(sandbox, o.flow),
    exposeGc: o.memoryEveryMs !== undefined,
    userDirBase: o.userDirBase,
    onSeen: o.onSeen,
  });
  const memory = [];
  let sampling = false;
  let memoryLoop = Promise.resolve();
  try {
    if (o.memoryEveryMs !== undefined) memory.push({ phase: "before", t: 0, ...(await nodeRed.memory(true)) });
    const sampler = sampleStats(sandbox, o.sampleEveryMs ?? 25);
    const injectedAt = performance.now();
    if (o.memoryEveryMs !== undefined) {
      // One reading at a time: the next is asked for only after the previous answer (a GC can take a while).
      sampling = true;
      memoryLoop = (async () => {
        while (sampling) {
          await new Promise((resolve) => setTimeout(resolve, o.memoryEveryMs));
          if (!sampling) break;
          const m = await nodeRed.memory(true).catch(() => undefined);
          if (m)
            memory.push({ phase: "during", t: performance.now() - injectedAt, deleted: sandbox.stats().deleted, ...m });
        }
      })();
    }
    nodeRed.inject("start");
    let retriggers = 0;
    let endedAt;
    try {
      endedAt = await waitForDeleted(sandbox, o.events, {
        timeoutMs: o.timeoutMs,
        // A drain stops after a short batch; if the queue still holds events (e.g. a get raced an ack), nudge it.
        onStall: () => {
          retriggers++;
          nodeRed.inject("start");
        },
      });
    } catch (err) {
      err.message = `${o.name}: ${err.message}\n${nodeRed.log().slice(-15).join("\n")}`;
      throw err;
    } finally {
      sampling = false;
      await memoryLoop;
    }
    const samples = sampler.stop();
    if (o.memoryEveryMs !== undefined) {
      // Let in-flight acks settle and timers fire before the "after" reading.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      memory.push({ phase: "after", t: performance.now() - injectedAt, ...(await nodeRed.memory(true)) });
    }
    return {
      ms: endedAt - injectedAt,
      injectedAt,
      endedAt,
      samples,
      stats: sandbox.stats(),
      nodeRedVersion: nodeRed.nodeRedVersion,
      memory,
      // Drains that stopped with events left and needed another trigger: a liveness problem to report.
      retriggers,
    };
  } finally {
    await nodeRed.stop();
  }
}
