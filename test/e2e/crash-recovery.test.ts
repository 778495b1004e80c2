import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { type Delivery, drainFlow, readDeliveries, untilDelivered } from "./drain-flow";
import { PORTAL_ID, sandboxPortal, until } from "./example-flows";
import { freshUserDir } from "./installed-package";
import { type NodeRedProcess, startNodeRed } from "./node-red-process";

/**
 * The at-least-once promise under the worst stop there is: Node-RED SIGKILLed in the middle of a drain, with
 * events fetched (held under process ids on the portal), some in the flow, some acked. Started again on the same
 * user directory, it must deliver every event at least once and leave nothing held under a process id.
 */
function journal(userDir: string): string {
  const dir = join(userDir, ".bitrix24-offline-events");
  if (!existsSync(dir)) return "(no state dir)";
  return readdirSync(dir)
    .filter((f) => f.startsWith("journal-"))
    .map((f) => `${f}: ${readFileSync(join(dir, f), "utf8").slice(0, 2000)}`)
    .join("\n");
}

/** README, "Delivery semantics": after a crash, held events come back within 10 s of the restart. */
const BOUND_MS = 10_000;

describe("Node-RED killed in the middle of a drain and started again", function () {
  this.timeout(150000);
  const EVENTS = 300;
  let sandbox: Sandbox;
  let nodeRed: NodeRedProcess | undefined;

  before(async () => {
    sandbox = await startSandbox();
  });

  after(async () => {
    await nodeRed?.stop("SIGKILL");
    await sandbox?.close();
  });

  it("delivers every event at least once and leaves none stuck under a process id", async () => {
    sandbox.addEvents(EVENTS, { name: "ONCRMDEALUPDATE", data: (i) => ({ FIELDS: { ID: i + 1 } }) });
    const ids = sandbox.records().map((r) => Number(r.ID));
    should(ids).have.length(EVENTS);
    const userDir = freshUserDir("crash");
    const logFile = join(userDir, "deliveries.log");

    nodeRed = await startNodeRed(userDir);
    // a slow flow (40 msgs/s) behind a fast fetch: at any moment many events are held and not yet acked
    await nodeRed.deploy([sandboxPortal(sandbox), ...drainFlow({ portalId: PORTAL_ID, logFile, workRate: 40 })]);
    await until(() => sandbox.stats().deleted >= 80, "80 events acked before the kill", 60000);
    const atKill = sandbox.stats();
    should(atKill.queue.held).be.above(0); // really in the middle: fetched and not acked
    await nodeRed.stop("SIGKILL");
    const heldAtKill = sandbox.records().filter((r) => r.PROCESS_ID !== null).length;
    should(heldAtKill).be.above(0);

    nodeRed = await startNodeRed(userDir);
    await until(() => sandbox.stats().queue.total === 0, "the queue drained after the restart", 90000).catch((err) => {
      const held = new Map<string, number>();
      for (const r of sandbox.records()) held.set(String(r.PROCESS_ID), (held.get(String(r.PROCESS_ID)) ?? 0) + 1);
      throw new Error(
        `${err.message}\nleft on the portal by process id: ${JSON.stringify([...held])}\nstats: ${JSON.stringify(sandbox.stats())}\ndeliveries of what is left: ${JSON.stringify(readDeliveries(logFile).filter((d) => sandbox.records().some((r) => Number(r.ID) === d.id)))}\nNode-RED log:\n${nodeRed?.output().slice(-3000)}\njournal: ${journal(userDir)}`,
      );
    });
    await nodeRed.stop();

    // on the portal: everything acked, nothing left held under a process id
    should(sandbox.records()).be.empty();
    should(sandbox.stats().deleted).equal(EVENTS);
    // in Node-RED: every event reached the flow at least once; what was lost in the kill came back as redelivered
    const deliveries: Delivery[] = readDeliveries(logFile);
    const delivered = new Set(deliveries.map((d) => d.id));
    should(ids.filter((id) => !delivered.has(id))).eql([]);
    const seen = new Set<number>();
    const secondDeliveries = deliveries.filter((d) => {
      const again = seen.has(d.id);
      seen.add(d.id);
      return again;
    });
    should(secondDeliveries.length).be.above(0);
    should(secondDeliveries.every((d) => d.redelivered)).be.true();
    console.log(
      `      killed with ${heldAtKill} held, ${atKill.deleted} acked; ${deliveries.length} deliveries of ${EVENTS} events, ${secondDeliveries.length} redelivered`,
    );
  });

  it("killed between the portal's answer and the journal write: the held batch comes back within seconds of the restart", async () => {
    sandbox.reset();
    sandbox.addEvents(120, { name: "ONCRMDEALUPDATE", data: (i) => ({ FIELDS: { ID: i + 1 } }) });
    const ids = sandbox.records().map((r) => Number(r.ID));
    const userDir = freshUserDir("crash-window");
    const logFile = join(userDir, "deliveries.log");
    // the portal holds a batch at once and answers 4 s later: Node-RED is killed inside those 4 s
    sandbox.setFaults({ holdAnswerMs: 4000, methods: ["event.offline.get", "batch"] });
    nodeRed = await startNodeRed(userDir);
    await nodeRed.deploy([sandboxPortal(sandbox), ...drainFlow({ portalId: PORTAL_ID, logFile })]);
    await until(() => sandbox.stats().queue.holds >= 1, "a batch held, its answer delayed", 30000, 5);
    await nodeRed.stop("SIGKILL");
    const lost = sandbox.records().filter((r) => r.PROCESS_ID !== null);
    should(lost).have.length(50);
    should(readDeliveries(logFile)).eql([]); // nothing of it reached the flow: its process id is in no journal
    sandbox.setFaults({});

    nodeRed = await startNodeRed(userDir);
    const restartedAt = Date.now();
    const lostIds = new Set(lost.map((r) => Number(r.ID)));
    const why = () => `${JSON.stringify(sandbox.stats())}\n${nodeRed?.output().slice(-3000)}\n${journal(userDir)}`;
    await untilDelivered(logFile, lostIds, "the lost batch delivered again", BOUND_MS, why);
    const backIn = Date.now() - restartedAt;
    await until(() => sandbox.stats().queue.total === 0, "the queue drained", 30000);
    await nodeRed.stop();
    const deliveries = readDeliveries(logFile);
    should(new Set(deliveries.map((d) => d.id))).eql(new Set(ids));
    // every event exactly once: the lost batch never reached the flow before the kill
    should(deliveries).have.length(ids.length);
    should(deliveries.filter((d) => lostIds.has(d.id)).every((d) => d.redelivered)).be.true();
    console.log(`      held batch of ${lostIds.size} back ${backIn} ms after the restart (bound ${BOUND_MS} ms)`);
  });
});
