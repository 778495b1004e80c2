import should from "should";
import { bindOffline, rest, sharedSandbox } from "./rest-call";

const page = (filterId: string) => `crm.deal.list?order[ID]=ASC&filter[>ID]=${filterId}&select[]=ID&start=-1`;
const ids = (rows: { ID: string }[]) => rows.map((r) => Number(r.ID));

describe("sandbox: batch $result references over CRM objects", () => {
  const sandbox = sharedSandbox();

  it("chains pages: each command starts after the last ID of the one before", async () => {
    sandbox.crm.seed("deal", 120);
    const res = await rest(sandbox, "batch", {
      halt: 0,
      cmd: { p0: page("0"), p1: page("$result[p0][49][ID]"), p2: page("$result[p1][49][ID]") },
    });
    should(res.status).equal(200);
    const { result, result_error, result_total } = res.body.result;
    should(ids(result.p0)).eql(Array.from({ length: 50 }, (_, i) => i + 1));
    should(ids(result.p1)[0]).equal(51);
    should(ids(result.p2)).eql(Array.from({ length: 20 }, (_, i) => i + 101));
    should(result_error).eql([]);
    // start=-1: no count, so total 0 for every page
    should(result_total).eql({ p0: 0, p1: 0, p2: 0 });
  });

  it("resolves URL-encoded references, as the batch page's HTTP example sends them", async () => {
    sandbox.crm.seed("deal", 60);
    const encoded = encodeURIComponent("$result[p0][49][ID]");
    const res = await rest(sandbox, "batch", { cmd: { p0: page("0"), p1: page(encoded) } });
    should(ids(res.body.result.result.p1)).eql(Array.from({ length: 10 }, (_, i) => i + 51));
  });

  it("a whole-value reference to a list passes the list; a reference into text is replaced inside it", async () => {
    sandbox.crm.seed("deal", 3);
    const res = await rest(sandbox, "batch", {
      cmd: {
        add: "crm.deal.add?fields[TITLE]=made",
        get: "crm.deal.get?id=$result[add]",
        rename: "crm.deal.update?id=$result[add]&fields[TITLE]=copy of $result[get][TITLE] (#$result[add])",
        fields: "crm.deal.fields",
      },
    });
    should(res.body.result.result_error).eql([]);
    should(res.body.result.result.get.TITLE).equal("made");
    should(sandbox.crm.get("deal", 4)?.TITLE).equal("copy of made (#4)");
  });

  it("a reference into a short page is left as written; a numeric filter then reads it as 0", async () => {
    sandbox.crm.seed("deal", 60);
    const res = await rest(sandbox, "batch", {
      cmd: {
        p0: page("0"),
        p1: page("$result[p0][49][ID]"),
        // p1 has 10 rows: [49] does not exist
        p2: page("$result[p1][49][ID]"),
        bad: "crm.deal.get?id=$result[nothing][ID]",
      },
    });
    const { result, result_error } = res.body.result;
    should(ids(result.p1)).have.length(10);
    // ">ID" = "$result[p1][49][ID]" -> 0: the first page again, which a chaining client must not take as new
    should(ids(result.p2)[0]).equal(1);
    should(result_error.bad).eql({ error: "", error_description: "ID is not defined or invalid." });
  });

  it("writes in a batch queue their events, with auth_connector per command", async () => {
    await bindOffline(sandbox, ["ONCRMDEALADD"], "k");
    await bindOffline(sandbox, ["ONCRMDEALADD"], "z");
    const res = await rest(sandbox, "batch", {
      cmd: ["crm.deal.add?fields[TITLE]=a&auth_connector=k", "crm.deal.add?fields[TITLE]=b"],
    });
    should(res.body.result.result).eql([1, 2]);
    should(sandbox.records().map((r) => [r.CONNECTOR, r.EVENT_DATA])).eql([
      ["z", { FIELDS: { ID: "1" } }],
      ["k", { FIELDS: { ID: "2" } }],
      ["z", { FIELDS: { ID: "2" } }],
    ]);
  });
});
