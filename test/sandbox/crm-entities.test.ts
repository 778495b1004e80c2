import should from "should";
import { bindOffline, rest, sharedSandbox } from "./rest-call";

describe("sandbox: crm.contact.*, crm.lead.*, crm.company.*", () => {
  const sandbox = sharedSandbox();

  for (const [entity, event] of [
    ["contact", "ONCRMCONTACT"],
    ["lead", "ONCRMLEAD"],
    ["company", "ONCRMCOMPANY"],
  ] as const) {
    it(`crm.${entity}: add, get, update, list, delete and ${event}ADD/UPDATE/DELETE`, async () => {
      await bindOffline(
        sandbox,
        ["ADD", "UPDATE", "DELETE"].map((action) => `${event}${action}`),
        "c",
      );
      const add = await rest(sandbox, `crm.${entity}.add`, {
        fields: { TITLE: "T", NAME: "Ann", PHONE: [{ VALUE: "+100", VALUE_TYPE: "WORK" }] },
      });
      should(add.body.result).equal(1);
      const got = (await rest(sandbox, `crm.${entity}.get`, { id: 1 })).body.result;
      should(got.ID).equal("1");
      should(got.PHONE).eql([{ ID: "1", VALUE_TYPE: "WORK", VALUE: "+100", TYPE_ID: "PHONE" }]);
      should(got.HAS_PHONE).equal("Y");
      should(got).not.have.property("EMAIL");
      await rest(sandbox, `crm.${entity}.update`, { id: 1, fields: { COMMENTS: "c" } });
      const list = await rest(sandbox, `crm.${entity}.list`, { filter: { PHONE: "+100" }, select: ["ID", "PHONE"] });
      should(list.body.result).have.length(1);
      should(list.body.result[0].PHONE[0].VALUE).equal("+100");
      should(list.body.total).equal(1);
      should((await rest(sandbox, `crm.${entity}.delete`, { id: 1 })).body.result).be.true();
      should((await rest(sandbox, `crm.${entity}.get`, { id: 1 })).body).eql({
        error: "",
        error_description: "Not found",
      });
      should(sandbox.records().map((r) => [r.EVENT_NAME, r.EVENT_DATA])).eql([
        [`${event}ADD`, { FIELDS: { ID: "1" } }],
        [`${event}UPDATE`, { FIELDS: { ID: "1" } }],
        [`${event}DELETE`, { FIELDS: { ID: "1" } }],
      ]);
      const fields = (await rest(sandbox, `crm.${entity}.fields`)).body.result;
      should(fields.PHONE).have.properties({ type: "crm_multifield", isMultiple: true });
    });
  }

  it("contact fields are a person's; seeded contacts have names and an e-mail; deals point at them", async () => {
    sandbox.crm.seed("contact", 10);
    sandbox.crm.seed("deal", 5);
    const contact = sandbox.crm.get("contact", 3);
    should(contact).have.properties({ ID: "3", HAS_EMAIL: "Y" });
    should(contact?.NAME).be.a.String();
    should(contact?.EMAIL).be.an.Array();
    should(Number(sandbox.crm.get("deal", 5)?.CONTACT_ID)).be.within(1, 10);
    const fields = (await rest(sandbox, "crm.contact.fields")).body.result;
    should(fields).have.properties(["NAME", "LAST_NAME", "COMPANY_IDS", "EMAIL"]);
    should(fields).not.have.property("STAGE_ID");
    const lead = (await rest(sandbox, "crm.lead.fields")).body.result;
    should(lead.STATUS_ID).have.properties({ type: "crm_status", statusType: "STATUS" });
  });
});
