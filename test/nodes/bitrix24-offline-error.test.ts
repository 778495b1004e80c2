import should from "should";
import type { OfflineEventsApi } from "../../src/core/queue/offline-api";
import type { Sandbox } from "../../src/sandbox";
import { eventMsgs, type OutMsg } from "../kit/messages";
import { caught as catchOf, collect, helper, nodeRedPerTest, nodes, type SpiedNode, spied } from "../kit/node-red";
import { until } from "../wait";

describe("bitrix24-offline-error node", function () {
  this.timeout(10000);
  const t = nodeRedPerTest();
  let sandbox: Sandbox;
  let node: SpiedNode;
  let api: OfflineEventsApi;
  let out: OutMsg[];
  let caught: OutMsg[];

  beforeEach(async () => {
    sandbox = await t.start();
    const flow = [
      { id: "e", type: "bitrix24-offline-error", portal: "p", wires: [["out"]] },
      { id: "out", type: "helper" },
      ...catchOf(["e"]),
    ];
    await t.load([nodes.error, nodes.catch], flow, { portal: { rateLimit: 50, rateBurst: 50 } });
    out = collect<OutMsg>("out");
    caught = collect<OutMsg>("caught");
    api = (helper.getNode("p") as unknown as { api: OfflineEventsApi }).api;
    node = spied("e");
  });

  async function fetchHeld(count: number, options: { authConnector?: string; error?: 0 | 1 } = {}) {
    const got = await api.get({
      clear: 0,
      limit: count,
      ...(options.authConnector ? { auth_connector: options.authConnector } : {}),
      ...(options.error ? { error: options.error } : {}),
    });
    should(got.events).have.length(count);
    return got;
  }

  function send(msg: unknown): void {
    node.receive(msg as Record<string, unknown>);
  }

  it("marks records (coalesced into one request): ERROR=1 and PROCESS_ID null on the portal", async () => {
    sandbox.addEvents(6);
    const got = await fetchHeld(6);
    const msgs = eventMsgs(got);
    for (const msg of msgs.slice(0, 5)) send(msg);
    await until(() => out.length === 5);
    should(out.every((m) => m.bitrix24.acked === true)).be.true();
    should(sandbox.stats().requests.byMethod["event.offline.error"]).equal(1);
    const records = sandbox.records();
    const marked = records.filter((r) => r.ERROR === "1");
    should(marked.map((r) => r.ID).sort()).eql(
      got.events
        .slice(0, 5)
        .map((e) => e.ID)
        .sort(),
    );
    should(marked.every((r) => r.PROCESS_ID === null)).be.true();
    // The sixth is untouched and still held.
    should(records.find((r) => r.ID === got.events[5].ID)).match({ ERROR: "0", PROCESS_ID: got.process_id });
    // A get with error=1 returns them later.
    const replay = await api.get({ clear: 0, error: 1, limit: 50 });
    should(replay.events).have.length(5);
    await until(() => /status\.acked/.test(node.status.args.at(-1)?.[0].text ?? ""));
  });

  it("marks a batch msg's events and carries the auth_connector", async () => {
    sandbox.addEvents(3, { connector: "c9" });
    const got = await fetchHeld(3, { authConnector: "c9" });
    send({
      payload: got.events,
      bitrix24: { ...eventMsgs(got, { authConnector: "c9" })[0].bitrix24, id: 0, messageId: "" },
    });
    await until(() => out.length === 1);
    const records = sandbox.records();
    should(records.every((r) => r.ERROR === "1" && r.PROCESS_ID === null)).be.true();
    should(records).have.length(3);
  });

  it("refuses a msg of records fetched with error=1, saying to store and clear them", async () => {
    sandbox.addEvents(1);
    const first = await fetchHeld(1);
    await api.error({ process_id: first.process_id!, message_id: [first.events[0].MESSAGE_ID] });
    const replay = await fetchHeld(1, { error: 1 });
    const before = sandbox.stats().requests.total;
    send({ ...eventMsgs(replay, { error: 1 })[0], _tag: "again" });
    await until(() => caught.length === 1);
    should(caught[0]._tag).equal("again");
    should(caught[0].error?.message).match(/fetched with error=1/);
    should(caught[0].error?.message).match(/cannot mark them again/);
    should(caught[0].error?.message).match(/clear them with bitrix24-offline-clear/);
    should(out).have.length(0);
    should(sandbox.stats().requests.total).equal(before);
  });

  it("refuses msg.ids alone (the portal marks by MESSAGE_ID) and a msg without a process id", async () => {
    send({ ids: [1], processId: "p".repeat(32), _tag: "ids" });
    send({ messageIds: ["a".repeat(32)], _tag: "noproc" });
    await until(() => caught.length === 2);
    const byTag = Object.fromEntries(caught.map((m) => [m._tag, m.error?.message ?? ""]));
    should(byTag.ids).match(/MESSAGE_ID only/);
    should(byTag.noproc).match(/no process id: wire this node after a bitrix24-offline-get in ack mode/);
    should(sandbox.stats().requests.total).equal(0);
  });

  it("a portal failure reaches Catch with the original msg", async () => {
    sandbox.addEvents(2);
    const got = await fetchHeld(2);
    sandbox.setFaults({ errorRate: 1, errorCode: "ACCESS_DENIED", methods: ["event.offline.error"] });
    for (const msg of eventMsgs(got)) send({ ...msg, _tag: msg.bitrix24.id });
    await until(() => caught.length === 2);
    should(caught.every((m) => m.error?.code === "ACCESS_DENIED")).be.true();
    should(out).have.length(0);
    should(sandbox.records().every((r) => r.ERROR === "0")).be.true();
  });
});
