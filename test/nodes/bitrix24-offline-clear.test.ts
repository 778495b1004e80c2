import should from "should";
import type { OfflineEventsApi } from "../../src/core/queue/offline-api";
import type { OfflineGetResult } from "../../src/core/rest/types";
import { clearNode } from "../kit/flows.cjs";
import { batchMsg, eventMsgs, type OutMsg } from "../kit/messages";
import { caught, collect, helper, lastStatus, nodeRedPerTest, nodes, spied } from "../kit/node-red";
import { sleep, until } from "../wait";

describe("bitrix24-offline-clear node", function () {
  this.timeout(10000);
  const t = nodeRedPerTest();
  const { current: sandbox, start } = t;

  async function load(clear: Record<string, unknown> = {}, portal: Record<string, unknown> = {}) {
    const flow = [clearNode({ id: "c", ...clear, wires: [["out"]] }), { id: "out", type: "helper" }, ...caught(["c"])];
    await t.load([nodes.clear, nodes.catch], flow, { portal: { rateLimit: 50, rateBurst: 50, ...portal } });
    const api = (helper.getNode("p") as unknown as { api: OfflineEventsApi }).api;
    return { node: spied("c"), api, out: collect<OutMsg>("out"), caught: collect<OutMsg>("caught") };
  }

  async function fetchHeld(api: OfflineEventsApi, count: number, authConnector?: string): Promise<OfflineGetResult> {
    sandbox.addEvents(count, authConnector ? { connector: authConnector } : undefined);
    const got = await api.get({ clear: 0, limit: count, ...(authConnector ? { auth_connector: authConnector } : {}) });
    should(got.events).have.length(count);
    return got;
  }

  /** The sandbox started, the clear node loaded with `clear`, and `count` new records held by a get of our own. */
  async function loadHeld(count: number, clear: Record<string, unknown> = {}, authConnector?: string) {
    await start();
    const loaded = await load(clear);
    return { ...loaded, got: await fetchHeld(loaded.api, count, authConnector) };
  }

  function clearRequests(): number {
    return sandbox.stats().requests.byMethod["event.offline.clear"] ?? 0;
  }

  it("50 single-event acks cost exactly ONE event.offline.clear request; each msg passes on with acked=true", async () => {
    const { node, out, got } = await loadHeld(50);
    for (const msg of eventMsgs(got)) node.receive(msg as unknown as Record<string, unknown>);
    await until(() => out.length === 50);
    should(clearRequests()).equal(1);
    should(sandbox.stats().requests.byMethod.batch ?? 0).equal(0);
    should(sandbox.stats().queue.total).equal(0);
    should(out.every((m) => m.bitrix24.acked === true)).be.true();
    should(out.map((m) => m.bitrix24.id).sort((a, b) => a - b)).eql(got.events.map((e) => Number(e.ID)));
    await until(() => /acked/.test(lastStatus(node)?.text ?? ""));
    should(lastStatus(node)).match({ fill: "green", text: "bitrix24-offline-clear.status.acked" });
  });

  it("passes a msg on only after the portal confirmed its clear", async () => {
    const { node, out, got } = await loadHeld(1);
    sandbox.setFaults({ latencyMs: 150, methods: ["event.offline.clear"] });
    node.receive(eventMsgs(got)[0] as unknown as Record<string, unknown>);
    await sleep(60);
    should(out).have.length(0);
    should(lastStatus(node)).match({ fill: "blue", text: "bitrix24-offline-clear.status.pending" });
    await until(() => out.length === 1);
    should(sandbox.stats().queue.total).equal(0);
  });

  it("clears by message id", async () => {
    const { node, out, got } = await loadHeld(3, { by: "message_id" });
    const msgs = eventMsgs(got);
    node.receive(msgs[0] as unknown as Record<string, unknown>);
    node.receive(msgs[1] as unknown as Record<string, unknown>);
    await until(() => out.length === 2);
    should(sandbox.records().map((r) => r.ID)).eql([got.events[2].ID]);
    should(clearRequests()).equal(1);
  });

  it("by process clears every record of the msg's process (and nothing else)", async () => {
    const { node, out, got } = await loadHeld(4, { by: "process" });
    sandbox.addEvents(2);
    node.receive(eventMsgs(got)[0] as unknown as Record<string, unknown>);
    await until(() => out.length === 1);
    const left = sandbox.records();
    should(left).have.length(2);
    should(left.every((r) => r.PROCESS_ID === null)).be.true();
  });

  it("acks a batch msg (msg.payload = array of events) in one request", async () => {
    const { node, out, got } = await loadHeld(20);
    node.receive(batchMsg(got) as unknown as Record<string, unknown>);
    await until(() => out.length === 1);
    should(out[0].bitrix24.acked).be.true();
    should(sandbox.stats().queue.total).equal(0);
    should(clearRequests()).equal(1);
  });

  it("acks msgs after a split node (per-event msg.payload.ID with the batch's msg.bitrix24)", async () => {
    const { node, out, got } = await loadHeld(5);
    const batch = batchMsg(got);
    for (const event of got.events) {
      node.receive({ payload: event, bitrix24: { ...batch.bitrix24 }, parts: { id: "x", index: 0, count: 5 } });
    }
    await until(() => out.length === 5);
    should(sandbox.stats().queue.total).equal(0);
    should(clearRequests()).equal(1);
  });

  it("acks explicit msg.ids with msg.processId", async () => {
    const { node, out, got } = await loadHeld(3);
    node.receive({ ids: [Number(got.events[0].ID), got.events[1].ID], processId: got.process_id, _tag: "x" });
    await until(() => out.length === 1);
    should(out[0]._tag).equal("x");
    should(out[0].bitrix24.acked).be.true();
    should(sandbox.records().map((r) => r.ID)).eql([got.events[2].ID]);
  });

  it("a msg without a process id reaches Catch with a clear error and the original msg", async () => {
    await start();
    const { node, out, caught } = await load();
    node.receive({ payload: { ID: "5", MESSAGE_ID: "a".repeat(32) }, _tag: "lost" });
    await until(() => caught.length === 1);
    should(caught[0]._tag).equal("lost");
    should(caught[0].error?.message).match(
      /no process id: wire this node after a bitrix24-offline-get in ack mode, or set msg.processId/,
    );
    should(caught[0].error?.code).equal("INVALID_ARGUMENT");
    should(out).have.length(0);
    should(sandbox.stats().requests.total).equal(0);
    should(lastStatus(node)?.fill).equal("red");
  });

  it("refuses bad id types without calling the portal", async () => {
    await start();
    const { node, caught } = await load();
    node.receive({ ids: ["abc"], processId: "p".repeat(32) });
    await until(() => caught.length === 1);
    should(caught[0].error?.message).match(/msg\.ids must hold positive integer record ids/);
    should(sandbox.stats().requests.total).equal(0);
  });

  it("carries the auth_connector: events fetched with connector X are really deleted", async () => {
    const { node, out, got } = await loadHeld(3, {}, "crm_x");
    for (const msg of eventMsgs(got, { authConnector: "crm_x" }))
      node.receive(msg as unknown as Record<string, unknown>);
    await until(() => out.length === 3);
    should(sandbox.records()).have.length(0);
    should(sandbox.stats().deleted).equal(3);
  });

  it("acking the same event twice is harmless", async () => {
    const { node, out, got } = await loadHeld(2);
    const [first] = eventMsgs(got);
    node.receive(first as unknown as Record<string, unknown>);
    node.receive(structuredClone(first) as unknown as Record<string, unknown>);
    await until(() => out.length === 2);
    node.receive(structuredClone(first) as unknown as Record<string, unknown>);
    await until(() => out.length === 3);
    should(sandbox.records().map((r) => r.ID)).eql([got.events[1].ID]);
  });

  it("a portal failure reaches Catch with every msg of the failed call; nothing passes on", async () => {
    const { node, out, caught, got } = await loadHeld(3);
    sandbox.setFaults({ errorRate: 1, errorCode: "ACCESS_DENIED", methods: ["event.offline.clear"] });
    const msgs = eventMsgs(got).map((m, i) => ({ ...m, _tag: `m${i}` }));
    for (const msg of msgs) node.receive(msg as unknown as Record<string, unknown>);
    await until(() => caught.length === 3);
    should(caught.map((m) => m._tag).sort()).eql(["m0", "m1", "m2"]);
    should(caught[0].error?.code).equal("ACCESS_DENIED");
    should((caught[0].bitrix24.error as { code: string }).code).equal("ACCESS_DENIED");
    should(out).have.length(0);
    should(sandbox.records()).have.length(3);
    await until(() => lastStatus(node)?.fill === "red");
  });

  it("gathers spread-out acks for coalesceMs and sends them once the whole batch has arrived", async () => {
    const { node, out, got } = await loadHeld(5, { coalesceMs: 5000 });
    const startedAt = Date.now();
    for (const msg of eventMsgs(got)) {
      node.receive(msg as unknown as Record<string, unknown>);
      await sleep(20);
    }
    await until(() => out.length === 5);
    should(Date.now() - startedAt).be.below(2000); // released by batch completion, not the 5 s window
    should(clearRequests()).equal(1);
  });

  it("close flushes pending acks (held by coalesceMs) before the flow stops", async () => {
    await start();
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    const { node, api, out } = await load({ coalesceMs: 60000 });
    const got = await fetchHeld(api, 4);
    // Three of four: the batch is not complete, so the acks wait for the window.
    for (const msg of eventMsgs(got).slice(0, 3)) node.receive(msg as unknown as Record<string, unknown>);
    await sleep(30);
    should(out).have.length(0);
    should(clearRequests()).equal(0);
    await helper.unload();
    should(sandbox.records().map((r) => r.ID)).eql([got.events[3].ID]);
    should(clearRequests()).equal(1);
    await sleep(20);
    should(timers()).be.belowOrEqual(before);
  });

  it("shows a red status and fails msgs when no portal is configured", async () => {
    await start();
    const flow: Array<Record<string, unknown>> = [{ id: "c", type: "bitrix24-offline-clear", portal: "", wires: [[]] }];
    await helper.load([nodes.portal, nodes.clear], flow as Parameters<typeof helper.load>[1]);
    const node = spied("c");
    should(lastStatus(node)?.fill).equal("red");
    node.receive({ ids: [1], processId: "p".repeat(32) });
    await until(() => node.error.args.length === 2);
    should(String((node.error.args[1][0] as Error).message)).match(/INVALID_CONFIG/);
  });
});
