import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { nodeRedPerTest } from "../kit/node-red";
import { DeliveryBook, record, sleep, until } from "./ledger";
import {
  callsOf,
  GET_DEFAULTS,
  helper,
  type LoadedFlow,
  lastStatus,
  loadFlow,
  type SpiedNode,
  statusesOf,
} from "./node-rig";

/**
 * The same faults through Node-RED (node-red-node-test-helper, the built nodes): trigger → get → clear, with
 * restarts on the same user directory. Every scenario books events created, delivered, acked and lost.
 */
describe("reliability: faults through the Node-RED nodes", function () {
  this.timeout(30000);
  let sandbox: Sandbox;
  const t = nodeRedPerTest({ httpNodeRoot: "/" }, () => sandbox);

  /** trigger (poll) → get → [out, clear → acked]; get's outputs 2 and 3 to helpers. */
  function drainFlow(get: Record<string, unknown> = {}, poll = 0.2): Array<Record<string, unknown>> {
    return [
      {
        id: "t",
        type: "bitrix24-offline-trigger",
        portal: "p",
        path: "",
        interval: poll,
        onDeploy: true,
        bindEvents: "",
        publicUrl: "",
        followUp: 0,
        minGap: 0,
        wires: [["g"]],
      },
      { id: "g", ...GET_DEFAULTS, ...get, wires: [["out", "c"], ["empty"], ["dead"]] },
      { id: "c", type: "bitrix24-offline-clear", portal: "p", wires: [["acked"]] },
      { id: "out", type: "helper" },
      { id: "acked", type: "helper" },
      { id: "empty", type: "helper" },
      { id: "dead", type: "helper" },
    ];
  }

  function book(flow: LoadedFlow, scenario: string, extra: { faults?: number } = {}): number[] {
    const lost = flow.book.lostIds(sandbox);
    record({
      area: "node-red",
      scenario,
      faults: extra.faults ?? flow.counter.faults,
      created: flow.book.created.size,
      delivered: flow.book.deliveries,
      duplicates: flow.book.duplicates,
      acked: flow.book.acks,
      lost: lost.length,
    });
    return lost;
  }

  it("random 503s, 5xx and dropped connections while a poll keeps draining: nothing lost", async () => {
    sandbox = await startSandbox({ rateLimit: false, events: 300 });
    const created = new DeliveryBook();
    created.noteQueue(sandbox);
    sandbox.setFaults({ errorRate: 0.1, errorCode: "QUERY_LIMIT_EXCEEDED", dropBeforeRate: 0.08, dropAfterRate: 0.08 });
    const flow = await loadFlow(
      sandbox,
      drainFlow({ limit: 25, ackTimeout: 0.5, maxDeliveries: 6, orphanSweep: true }),
      {
        book: created,
        clearWired: true,
      },
    );
    await until(() => sandbox.stats().queue.total === 0, 25000, "the queue to drain under faults");
    await sleep(50);
    const lost = book(flow, "poll + get + clear, mixed faults");
    should(lost).eql([]);
    should(flow.book.undelivered()).eql([]);
    should(flow.counter.faults).be.above(0);
  });

  it("access token expiring mid-drain: exactly one refresh, no failed event", async () => {
    sandbox = await startSandbox({ rateLimit: false, events: 400 });
    const created = new DeliveryBook();
    created.noteQueue(sandbox);
    const flow = await loadFlow(sandbox, drainFlow({ limit: 20, prefetch: 4 }, 0), {
      book: created,
      clearWired: true,
    });
    let expired = false;
    helper.getNode("out").on("input", () => {
      if (!expired && flow.book.deliveries >= 100) {
        expired = true;
        sandbox.expireTokens();
      }
    });
    await until(() => sandbox.stats().queue.total === 0 && flow.book.acks === 400, 10000, "the drain");
    should(expired).be.true();
    should(flow.counter.tokenRequests).equal(1);
    should(callsOf(flow.get, "error")).eql([]);
    should(callsOf(helper.getNode("c") as unknown as SpiedNode, "error")).eql([]);
    should(book(flow, "token expired mid-drain")).eql([]);
  });

  it("refresh token rotated, then Node-RED restarted with the original deployed credentials: no re-authorisation", async () => {
    sandbox = await startSandbox({ rateLimit: false, events: 50 });
    let flow = await loadFlow(sandbox, drainFlow({}, 0));
    sandbox.expireTokens();
    await until(() => flow.book.acks === 50, 5000, "the first drain");
    should(flow.counter.tokenRequests).equal(1); // the deployed refresh token is spent now
    await helper.unload();

    // Same user directory, same flows file: the credentials are still the ones deployed before the rotation.
    sandbox.addEvents(50);
    flow = await loadFlow(sandbox, drainFlow({}, 0));
    await until(() => flow.book.acks === 50, 5000, "the drain after the restart");
    should(flow.counter.tokenRequests).equal(0);
    sandbox.expireTokens();
    sandbox.addEvents(10);
    flow.get.receive({});
    await until(() => flow.book.acks === 60, 5000, "the drain after another expiry");
    should(flow.counter.tokenRequests).equal(1);
    should(callsOf(flow.get, "error")).eql([]);
    const tokenFile = readdirSync(join(t.userDir, ".bitrix24-offline-events")).find((f) => f.endsWith(".tokens.json"));
    should(tokenFile).be.a.String();
    should(statSync(join(t.userDir, ".bitrix24-offline-events", tokenFile!)).mode & 0o777).equal(0o600);
    record({ area: "node-red", scenario: "refresh rotated + restart", created: 110, delivered: 110, acked: 110 });
  });

  it("a revoked refresh token: red status saying to re-authorise, bounded token requests, no crash loop, no loss", async () => {
    sandbox = await startSandbox({ rateLimit: false, events: 30 });
    sandbox.revokeRefreshTokens();
    sandbox.expireTokens();
    const flow = await loadFlow(sandbox, drainFlow({}, 0.05));
    await sleep(1500); // ~30 polls
    // From the first failure on, the node never looks healthy again, and every red status says what to do.
    const statuses = statusesOf(flow.get);
    const firstRed = statuses.findIndex((st) => st.fill === "red");
    should(firstRed).be.aboveOrEqual(0);
    const since = statuses.slice(firstRed);
    should(since.filter((st) => st.fill === "green")).eql([]);
    should(since.filter((st) => st.fill === "red").every((st) => /re-authorise/.test(st.text ?? ""))).be.true();
    // Every poll that fails says so (debug sidebar / Catch), not only the first one.
    const errors = callsOf(flow.get, "error").map((a) => a[0] as { code: string; message: string });
    should(errors.length).be.above(10);
    should(errors.every((e) => e.code === "invalid_grant" && /re-authorise the application/.test(e.message))).be.true();
    should(flow.counter.tokenRequests).be.belowOrEqual(1);
    should(sandbox.stats().queue.total).equal(30);
    should(flow.book.deliveries).equal(0);
    record({ area: "node-red", scenario: "revoked refresh token, 30 polls", faults: flow.counter.faults, created: 30 });
  });

  it("Node-RED stopped mid-batch without acking and started again: the persisted process ids re-select everything", async () => {
    sandbox = await startSandbox({ rateLimit: false, events: 220 });
    const created = new DeliveryBook();
    created.noteQueue(sandbox);
    const dying = [
      { id: "g", ...GET_DEFAULTS, maxInFlight: 150, wires: [["out", "hole"], ["empty"], ["dead"]] },
      { id: "hole", type: "test-black-hole" },
      { id: "out", type: "helper" },
      { id: "empty", type: "helper" },
      { id: "dead", type: "helper" },
    ];
    const first = await loadFlow(sandbox, dying, { book: created });
    first.get.receive({});
    await until(() => first.book.deliveries === 150, 5000, "150 unacked deliveries");
    should(sandbox.stats().queue.held).equal(150);
    await helper.unload(); // the flow dies: nothing was acked

    // The restart also sees dropped connections: recovery must hold up under them.
    sandbox.setFaults({ dropAfterRate: 0.2, methods: ["event.offline.get", "event.offline.clear", "batch"] });
    const second = await loadFlow(sandbox, drainFlow({ ackTimeout: 0.5, maxDeliveries: 6, orphanSweep: true }), {
      book: created,
      clearWired: true,
    });
    await until(() => sandbox.stats().queue.total === 0, 20000, "the drain after the restart");
    await sleep(50);
    const redelivered = second.seen.out.filter((m) => (m.bitrix24 as { redelivered: boolean }).redelivered).length;
    should(redelivered).be.aboveOrEqual(150);
    should(book(second, "stopped mid-batch + restart (drops)", { faults: second.counter.faults })).eql([]);
    should(created.undelivered()).eql([]);
  });

  it("slow portal: the portal's timeout is honoured, deploy is not blocked, stop during a call ends cleanly", async () => {
    sandbox = await startSandbox({ rateLimit: false, events: 20 });
    sandbox.setFaults({ latencyMs: 4000 });
    const started = Date.now();
    const flow = await loadFlow(sandbox, drainFlow({}, 0), { portal: { timeout: 0.3 } });
    should(Date.now() - started).be.below(1000); // deploy does not wait for the portal
    const timings: number[] = [];
    flow.portal.client?.on("request", (info: { ms: number; status: number }) => timings.push(info.ms));
    await until(() => timings.length >= 1, 3000, "the first request to time out");
    should(timings[0]).be.within(250, 1000);
    await until(() => /TIMEOUT|rateLimited|fetching/.test(lastStatus(flow.get)?.text ?? ""), 3000, "a status");
    const requestsBefore = sandbox.stats().requests.total;
    const stopping = Date.now();
    await helper.unload(); // while the get is between retries or waiting on the portal
    const stopMs = Date.now() - stopping;
    should(stopMs).be.below(5000);
    await sleep(700);
    should(sandbox.stats().requests.total).be.belowOrEqual(requestsBefore + 1); // nothing sent after the stop
    should(sandbox.stats().queue.total).equal(20);
    record({
      area: "node-red",
      scenario: `slow portal 4 s, timeout 0.3 s, stop in ${stopMs} ms`,
      faults: timings.length,
      created: 20,
    });
  });

  it("slow portal with acks waiting: stop flushes them within Node-RED's close timeout", async () => {
    sandbox = await startSandbox({ rateLimit: false, events: 30 });
    const created = new DeliveryBook();
    created.noteQueue(sandbox);
    const flow = await loadFlow(sandbox, drainFlow({ drain: false }, 0), { book: created });
    sandbox.setFaults({ latencyMs: 2500, methods: ["event.offline.clear", "batch"] });
    flow.get.receive({});
    await until(() => flow.book.deliveries === 30, 5000, "the deliveries");
    await sleep(100); // the clear is on the wire now, waiting out the latency
    const stopping = Date.now();
    await helper.unload();
    const stopMs = Date.now() - stopping;
    should(stopMs).be.below(15000);
    sandbox.setFaults({});
    // Whatever the stop did, every event is either still on the portal or was handed to the clear node.
    const present = new Set(sandbox.records().map((r) => Number(r.ID)));
    should([...created.created].filter((id) => !present.has(id) && !created.delivered.has(id))).eql([]);
    record({
      area: "node-red",
      scenario: `slow clear 2.5 s, stop in ${stopMs} ms`,
      created: 30,
      delivered: flow.book.deliveries,
      acked: 30 - sandbox.stats().queue.total,
    });
  });

  it("a clear that hangs past Node-RED's close timeout does not block the stop; the records come back after it", async () => {
    // Node-RED cuts a node's close after nodeCloseTimeout (default 15 s) and logs "Close timed out".
    helper.settings({ userDir: t.userDir, httpNodeRoot: "/", nodeCloseTimeout: 4000 } as Parameters<
      typeof helper.settings
    >[0]);
    sandbox = await startSandbox({ rateLimit: false, events: 30 });
    const created = new DeliveryBook();
    created.noteQueue(sandbox);
    const flow = await loadFlow(sandbox, drainFlow({ drain: false }, 0), { book: created, clearWired: true });
    sandbox.setFaults({ latencyMs: 20000, methods: ["event.offline.clear", "batch"] });
    flow.get.receive({});
    await until(() => flow.book.deliveries === 30, 5000, "the deliveries");
    await sleep(100); // the clear is on the wire, and will be for 20 s
    const stopping = Date.now();
    await helper.unload();
    const stopMs = Date.now() - stopping;
    // Finished on its own, well before Node-RED would have cut it (which lands at 4000 ms and logs an error).
    should(stopMs).be.below(3800);
    sandbox.setFaults({});

    // Restart: whatever the aborted clear did, every event is acked or comes back.
    const again = await loadFlow(sandbox, drainFlow({}, 0), { book: created, clearWired: true });
    again.get.receive({});
    await until(() => sandbox.stats().queue.total === 0 && created.acks === 30, 5000, "the drain after the restart");
    should(created.lostIds(sandbox)).eql([]);
    record({
      area: "node-red",
      scenario: `clear hangs 20 s, stop in ${stopMs} ms (close timeout 4 s)`,
      faults: 1,
      created: 30,
      delivered: created.deliveries,
      duplicates: created.duplicates,
      acked: created.acks,
    });
  });
});
