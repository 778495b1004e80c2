import should from "should";
import type { EventMessage } from "../../src/nodes/shared/msg-contract";
import { ackerNode, helper, nodeRedPerTest, nodes, spied } from "../kit/node-red";
import { bindOffline } from "../sandbox/rest-call";
import { until } from "../wait";

/** Issue 21 at the node: options changes / watchFields, msg.changes, firstSeen, unchanged events acked unseen. */

describe("bitrix24-offline-get node: changes option", function () {
  this.timeout(15000);
  const t = nodeRedPerTest();
  const sandbox = t.current;

  beforeEach(async () => {
    await t.start();
    sandbox.crm.seed("deal", 4);
    await bindOffline(sandbox, ["ONCRMDEALUPDATE", "ONCRMDEALDELETE"]);
  });

  async function load(get: Record<string, unknown>) {
    const { accessToken, clientId, clientSecret, refreshToken } = sandbox.credentials;
    const flow = [
      { id: "p", type: "bitrix24-portal", portalUrl: sandbox.url, authType: "oauth", oauthServer: sandbox.url },
      { id: "g", type: "bitrix24-offline-get", portal: "p", limit: 50, ...get, wires: [["out", "ack"], ["empty"], []] },
      { id: "ack", type: "test-acker", portal: "p", wires: [[]] },
      { id: "out", type: "helper" },
      { id: "empty", type: "helper" },
    ];
    await helper.load([nodes.portal, nodes.get, ackerNode], flow, {
      p: { clientId, clientSecret, accessToken, refreshToken },
    });
    const out: EventMessage[] = [];
    const empty: Array<{ payload: { unchanged?: number } }> = [];
    helper.getNode("out").on("input", (m: unknown) => out.push(m as EventMessage));
    helper.getNode("empty").on("input", (m: unknown) => empty.push(m as { payload: { unchanged?: number } }));
    return { node: spied("g"), out, empty };
  }

  const edit = (id: number, fields: Record<string, string | number>) =>
    sandbox.portalCall("crm.deal.update", { id, fields });
  const objectId = (msg: EventMessage) =>
    Number((msg.payload as { EVENT_DATA: { FIELDS: { ID: string } } }).EVENT_DATA.FIELDS.ID);

  it("per event: first sight, then the watched changes with labels; the rest acked unseen, counted in status and summary", async () => {
    for (let id = 1; id <= 4; id++) edit(id, { TITLE: `t${id}` });
    const { node, out, empty } = await load({ changes: true, watchFields: "STAGE_ID, OPPORTUNITY" });
    node.receive({});
    await until(() => empty.length === 1 && sandbox.stats().queue.total === 0);
    should(out).have.length(4);
    for (const msg of out) {
      should(msg.changes).be.null();
      should(msg.bitrix24.firstSeen).be.true();
      should(msg.entity).be.an.Object(); // changes turns Objects on
    }
    edit(1, { STAGE_ID: "WON" });
    edit(2, { TITLE: "title only" });
    edit(3, { OPPORTUNITY: 5000 });
    sandbox.portalCall("crm.deal.delete", { id: 4 });
    node.receive({});
    await until(() => empty.length === 2 && sandbox.stats().queue.total === 0);
    const second = out.slice(4);
    should(second.map(objectId).sort()).eql([1, 3, 4]);
    const won = second.find((m) => objectId(m) === 1)!;
    should(won.changes).match({ STAGE_ID: { after: "WON", afterLabel: "Deal successful" } });
    should(won.bitrix24).not.have.property("firstSeen");
    should(Object.keys(second.find((m) => objectId(m) === 3)!.changes!)).eql(["OPPORTUNITY"]);
    should(second.find((m) => m.topic === "ONCRMDEALDELETE")!.changes).be.null();
    should(empty[1].payload.unchanged).equal(1);
    // (the test runtime has no translations: the key stands for "n unchanged")
    await until(() =>
      /idle .* · bitrix24-offline-get\.status\.unchanged$/.test(node.status.args.at(-1)?.[0].text ?? ""),
    );
  });

  it("batch output: msg.changes and msg.bitrix24.firstSeen are arrays in the order of msg.payload", async () => {
    edit(1, { TITLE: "a" });
    const first = await load({ changes: true, output: "batch" });
    first.node.receive({});
    await until(() => first.empty.length === 1 && sandbox.stats().queue.total === 0);
    should(first.out[0].changes).eql([null]);
    should(first.out[0].bitrix24.firstSeen).eql([true]);
    edit(2, { TITLE: "b" });
    edit(1, { TITLE: "c" });
    first.node.receive({});
    await until(() => first.empty.length === 2 && sandbox.stats().queue.total === 0);
    const msg = first.out[1];
    const ids = (msg.payload as Array<{ EVENT_DATA: { FIELDS: { ID: string } } }>).map((e) => e.EVENT_DATA.FIELDS.ID);
    const changes = msg.changes as Array<Record<string, unknown> | null>;
    should(changes[ids.indexOf("2")]).be.null();
    should(changes[ids.indexOf("1")]).match({ TITLE: { before: "a", after: "c" } });
    should(msg.bitrix24.firstSeen).eql(ids.map((id) => id === "2"));
  });

  it("without the option old flows are unchanged (no msg.changes); a bad watchFields is refused on deploy", async () => {
    edit(1, { TITLE: "x" });
    const plain = await load({ entity: true });
    plain.node.receive({});
    await until(() => plain.empty.length === 1);
    should(plain.out[0]).not.have.property("changes");
    should(plain.out[0].bitrix24).not.have.property("firstSeen");
    await helper.unload();
    const bad = await load({ changes: true, watchFields: "STAGE_ID; DROP" });
    should(bad.node.status.args.at(-1)?.[0].fill).equal("red");
    should(String((bad.node.error.args[0][0] as Error).message)).match(/watchFields: "STAGE_ID;" is not a field name/);
  });
});
