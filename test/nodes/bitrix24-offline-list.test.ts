import axios from "axios";
import should from "should";
import type { QueueSummary } from "../../src/core/queue/queue-summary";
import { listNode } from "../kit/flows.cjs";
import { nextMsg, nodeRedPerTest, nodes, spied } from "../kit/node-red";

interface ListMsg {
  payload: Array<{ ID: string; PROCESS_ID: string | null; ERROR: string; EVENT_NAME: string }>;
  total: number;
  next?: number;
  summary: QueueSummary;
}

describe("bitrix24-offline-list node", () => {
  const t = nodeRedPerTest();
  const sandbox = t.current;
  beforeEach(() => t.start());

  async function load(list: Record<string, unknown> = {}) {
    const flow = [listNode({ id: "l", ...list, wires: [["out"]] }), { id: "out", type: "helper" }];
    await t.load([nodes.list], flow, { portal: { rateLimit: 2, rateBurst: 50 } });
    return spied("l");
  }

  function next(): Promise<ListMsg> {
    return nextMsg<ListMsg>("out");
  }

  function listRequests(): number {
    return sandbox.stats().requests.byMethod["event.offline.list"] ?? 0;
  }

  it("reads every page with allPages (120 records -> 3 requests)", async () => {
    sandbox.addEvents(120);
    const node = await load({ allPages: true });
    const out = next();
    node.receive({});
    const msg = await out;
    should(msg.payload.length).equal(120);
    should(msg.total).equal(120);
    should(new Set(msg.payload.map((r) => r.ID)).size).equal(120);
    should(listRequests()).equal(3);
    should(msg.summary).match({ total: 120, counted: 120, unprocessed: 120, held: 0, error: 0 });
    should(Object.values(msg.summary.byEvent).reduce((a, b) => a + b, 0)).equal(120);
    should(msg.summary.oldest).be.a.String();
    const statuses = node.status.args.map((a) => a[0]);
    should(statuses).containDeep([{ fill: "blue", text: "bitrix24-offline-list.status.listing" }]);
    should(statuses[statuses.length - 1]).match({ fill: "green", text: "bitrix24-offline-list.status.listed" });
  });

  it("reads one page of 50 without allPages, with the portal's total and next", async () => {
    sandbox.addEvents(120);
    const node = await load({ allPages: false });
    let out = next();
    node.receive({});
    let msg = await out;
    should(msg.payload.length).equal(50);
    should(msg.total).equal(120);
    should(msg.next).equal(50);
    should(msg.summary).match({ total: 120, counted: 50 });
    should(listRequests()).equal(1);

    out = next();
    node.receive({ start: 100 });
    msg = await out;
    should(msg.payload.length).equal(20);
    should(msg.next).be.undefined();
  });

  it("filters on PROCESS_ID and ERROR, from config or msg, and counts held records", async () => {
    sandbox.addEvents(30);
    // Another consumer holds 5 records.
    const { data } = await axios.post(`${sandbox.url}/rest/event.offline.get.json`, {
      auth: sandbox.credentials.accessToken,
      clear: 0,
      limit: 5,
    });
    const processId = data.result.process_id as string;
    const node = await load({ filter: '{"=ERROR": 0}', order: '{"ID": "DESC"}' });

    let out = next();
    node.receive({ filter: { "=PROCESS_ID": processId } });
    let msg = await out;
    should(msg.payload.length).equal(5);
    should(msg.payload.every((r) => r.PROCESS_ID === processId)).be.true();
    should(msg.summary).match({ held: 5, unprocessed: 0, error: 0 });

    out = next();
    node.receive({});
    msg = await out;
    should(msg.payload.length).equal(30);
    should(Number(msg.payload[0].ID)).be.above(Number(msg.payload[29].ID));
    should(msg.summary).match({ held: 5, unprocessed: 25 });
  });

  it("refuses a bad config filter on deploy, naming it, and fails msgs with it", async () => {
    const node = await load({ filter: '{"=NOT_A_FIELD": 1}' });
    should(node.status.args[0][0].fill).equal("red");
    should(node.error.args.length).equal(1);
    should(String((node.error.args[0][0] as Error).message)).match(/NOT_A_FIELD/);
    node.receive({});
    await new Promise((r) => setTimeout(r, 50));
    should(node.error.args.length).equal(2);
    should(listRequests()).equal(0);
  });

  it("refuses a bad msg.filter without a request, to Catch with the msg", async () => {
    const node = await load();
    const before = node.status.args.length;
    node.receive({ filter: { "=ID": [1, 2] }, _tag: "m1" });
    node.receive({ filter: "{not json" });
    await new Promise((r) => setTimeout(r, 50));
    should(node.error.args.length).equal(2);
    const [err, msg] = node.error.args[0] as [
      { code: string },
      { _tag: string; bitrix24: { error: { code: string } } },
    ];
    should(err.code).equal("INVALID_ARGUMENT");
    should(msg._tag).equal("m1");
    should(msg.bitrix24.error.code).equal("INVALID_ARGUMENT");
    should(listRequests()).equal(0);
    // Each refusal turned the status red. (Not "the last status call": in one full-suite run a status call with
    // no fill came after them, from outside this test; it did not reproduce in six runs of this file alone.)
    const after = node.status.args.slice(before).map((args: [{ fill?: string; text?: string }]) => args[0]);
    should(after.filter((s: { fill?: string }) => s.fill === "red").length).equal(2);
  });

  it("reports a portal error (non-admin token) to Catch", async () => {
    sandbox.setOptions({ admin: false });
    const node = await load();
    node.receive({});
    const until = Date.now() + 3000;
    while (node.error.args.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    should((node.error.args[0][0] as { code: string }).code).equal("ACCESS_DENIED");
  });
});
