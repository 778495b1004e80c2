import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";

/** The field metadata the changes option reads labels from: crm.status.* and tasks.task.getFields. */
describe("sandbox: crm.status.list / add and tasks.task.getFields", () => {
  let sandbox: Sandbox;
  before(async () => {
    sandbox = await startSandbox({ rateLimit: false });
  });
  after(async () => {
    await sandbox.close();
  });

  it("lists one directory by ENTITY_ID in SORT order, pages of 50; add makes a new stage (also of a pipeline)", () => {
    const stages = sandbox.portalCall("crm.status.list", { filter: { ENTITY_ID: "DEAL_STAGE" } });
    const rows = stages.result as Array<{ STATUS_ID: string; NAME: string; ENTITY_ID: string }>;
    should(rows.map((r) => r.STATUS_ID)).eql([
      "NEW",
      "PREPARATION",
      "PREPAYMENT_INVOICE",
      "EXECUTING",
      "FINAL_INVOICE",
      "WON",
      "LOSE",
    ]);
    should(rows.find((r) => r.STATUS_ID === "WON")?.NAME).equal("Deal successful");
    should(stages.total).equal(7);
    sandbox.portalCall("crm.status.add", { fields: { ENTITY_ID: "DEAL_STAGE_3", STATUS_ID: "C3:NEW", NAME: "Fresh" } });
    const pipeline = sandbox.portalCall("crm.status.list", { filter: { ENTITY_ID: "DEAL_STAGE_3" } }).result;
    should(pipeline).match([{ STATUS_ID: "C3:NEW", NAME: "Fresh", CATEGORY_ID: "3" }]);
    should(() =>
      sandbox.portalCall("crm.status.add", { fields: { ENTITY_ID: "DEAL_STAGE_3", STATUS_ID: "C3:NEW", NAME: "x" } }),
    ).throw(/already exists/);
    for (let i = 0; i < 60; i++) {
      sandbox.portalCall("crm.status.add", {
        fields: { ENTITY_ID: "SOURCE", STATUS_ID: `S${i}`, NAME: `Source ${i}` },
      });
    }
    const page = sandbox.portalCall("crm.status.list", { filter: { ENTITY_ID: "SOURCE" } });
    should(page.result).have.length(50);
    should(page.next).equal(50);
    should(sandbox.portalCall("crm.status.list", { filter: { ENTITY_ID: "SOURCE" }, start: 50 }).result).have.length(
      15,
    );
  });

  it("tasks.task.getFields describes the enums (STATUS, PRIORITY, MARK) with their values", () => {
    const { fields } = sandbox.portalCall("tasks.task.getFields").result as {
      fields: Record<string, { type: string; values?: Record<string, string> }>;
    };
    should(fields.STATUS).match({ type: "enum", values: { "5": "Completed" } });
    should(fields.TITLE.type).equal("string");
  });
});
