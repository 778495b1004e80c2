import should from "should";
import type { BatchOutcome } from "../../src/core/client/client";
import {
  BUILTIN_ENTITY_MAP,
  type EntityAttachment,
  isDeleteEvent,
  parseEntityMap,
  planEntityReads,
  ruleFor,
} from "../../src/core/entities/entity-reads";
import { Bitrix24Error } from "../../src/core/rest/errors";
import type { OfflineEvent } from "../../src/core/rest/types";

let seq = 0;
function ev(name: string, data: unknown): OfflineEvent {
  seq++;
  return {
    ID: String(seq),
    TIMESTAMP_X: "2026-01-01T00:00:00+00:00",
    EVENT_NAME: name,
    EVENT_DATA: data,
    EVENT_ADDITIONAL: {},
    MESSAGE_ID: `m${seq}`,
  };
}

function outcome(result: Record<string, unknown>, errors: Record<string, Bitrix24Error> = {}): BatchOutcome {
  return { result, errors, total: {}, next: {}, requests: 1 };
}

describe("entity reads (map, commands, answers)", () => {
  it("maps CRM, smart-process, task and user events; deletes are recognised with or without a type suffix", () => {
    should(ruleFor(BUILTIN_ENTITY_MAP, "ONCRMDEALUPDATE")?.method).equal("crm.deal.list");
    should(ruleFor(BUILTIN_ENTITY_MAP, "onCrmContactAdd")?.method).equal("crm.contact.list");
    should(ruleFor(BUILTIN_ENTITY_MAP, "ONCRMQUOTEDELETE")?.method).equal("crm.quote.list");
    should(ruleFor(BUILTIN_ENTITY_MAP, "ONCRMINVOICESETSTATUS")?.method).equal("crm.invoice.list");
    should(ruleFor(BUILTIN_ENTITY_MAP, "ONCRMDYNAMICITEMUPDATE_147")?.method).equal("crm.item.list");
    should(ruleFor(BUILTIN_ENTITY_MAP, "ONTASKUPDATE")?.method).equal("tasks.task.list");
    should(ruleFor(BUILTIN_ENTITY_MAP, "ONUSERADD")?.method).equal("user.get");
    // Not the object's own events: user-field and recurring events name other things.
    should(ruleFor(BUILTIN_ENTITY_MAP, "ONCRMDEALUSERFIELDADD")).be.undefined();
    should(ruleFor(BUILTIN_ENTITY_MAP, "ONCRMDEALRECURRINGADD")).be.undefined();
    should(isDeleteEvent("ONCRMDYNAMICITEMDELETE_147")).be.true();
    should(isDeleteEvent("ONTASKDELETE")).be.true();
    should(isDeleteEvent("ONCRMDEALUPDATE")).be.false();
  });

  it("one list command per object type (and type id), ids deduplicated, `@ID` filter and all fields", () => {
    const events = [
      ev("ONCRMDEALUPDATE", { FIELDS: { ID: "7" } }),
      ev("ONCRMDEALADD", { FIELDS: { ID: 8 } }),
      ev("ONCRMDEALUPDATE", { FIELDS: { ID: "7" } }),
      ev("ONCRMCONTACTUPDATE", { FIELDS: { ID: "3" } }),
      ev("ONTASKUPDATE", { FIELDS_BEFORE: { ID: "12" }, FIELDS_AFTER: { ID: "12" } }),
      ev("ONCRMDYNAMICITEMUPDATE", { FIELDS: { ID: "5", ENTITY_TYPE_ID: "1038" } }),
      ev("ONCRMDYNAMICITEMUPDATE", { FIELDS: { ID: "6", ENTITY_TYPE_ID: "31" } }),
      ev("ONCRMDEALDELETE", { FIELDS: { ID: "9" } }),
      ev("ONSOMETHINGELSE", { FIELDS: { ID: "1" } }),
    ];
    const got: Record<number, EntityAttachment> = {};
    const plan = planEntityReads(events, BUILTIN_ENTITY_MAP, (i, a) => {
      got[i] = a;
    });
    const commands = Object.values(plan.commands);
    should(commands.map((c) => c.method).sort()).eql([
      "crm.contact.list",
      "crm.deal.list",
      "crm.item.list",
      "crm.item.list",
      "tasks.task.list",
    ]);
    const deal = commands.find((c) => c.method === "crm.deal.list");
    should(deal?.params).eql({ filter: { "@ID": ["7", "8"] }, select: ["*", "UF_*"] });
    const items = commands.filter((c) => c.method === "crm.item.list").map((c) => c.params);
    should(items).containDeep([{ entityTypeId: "1038", filter: { "@id": ["5"] } }, { entityTypeId: "31" }]);
    should(commands.find((c) => c.method === "tasks.task.list")?.params).containDeep({ filter: { ID: ["12"] } });
    // The delete is settled without a read; the unknown event gets nothing at all.
    should(got[7]).eql({ entity: null, missing: true });
    should(got).not.have.property("8");
  });

  it("more than 50 ids of one type become several commands", () => {
    const events = Array.from({ length: 120 }, (_, i) => ev("ONCRMLEADUPDATE", { FIELDS: { ID: String(i + 1) } }));
    const plan = planEntityReads(events, BUILTIN_ENTITY_MAP, () => undefined);
    should(
      Object.values(plan.commands).map((c) => (c.params as { filter: Record<string, string[]> }).filter["@ID"].length),
    ).eql([50, 50, 20]);
  });

  it("matches answers back: found, deleted since (missing), and task / item answer shapes", () => {
    const events = [
      ev("ONCRMDEALUPDATE", { FIELDS: { ID: "7" } }),
      ev("ONCRMDEALUPDATE", { FIELDS: { ID: "8" } }),
      ev("ONTASKADD", { FIELDS_AFTER: { ID: "12" } }),
      ev("ONCRMDYNAMICITEMADD", { FIELDS: { ID: "5", ENTITY_TYPE_ID: "1038" } }),
    ];
    const got: Record<number, EntityAttachment> = {};
    const plan = planEntityReads(events, BUILTIN_ENTITY_MAP, (i, a) => {
      got[i] = a;
    });
    const keyOf = (method: string) => Object.entries(plan.commands).find(([, c]) => c.method === method)?.[0] ?? "";
    const failures = plan.attach(
      outcome({
        [keyOf("crm.deal.list")]: [{ ID: "7", TITLE: "latest" }],
        [keyOf("tasks.task.list")]: { tasks: [{ id: "12", title: "task" }] },
        [keyOf("crm.item.list")]: { items: [{ id: 5, title: "item" }] },
      }),
    );
    should(failures).eql([]);
    should(got[0]).eql({ entity: { ID: "7", TITLE: "latest" } });
    should(got[1]).eql({ entity: null, missing: true });
    should(got[2].entity).eql({ id: "12", title: "task" });
    should(got[3].entity).eql({ id: 5, title: "item" });
  });

  it("a failed read gives its events the error (and is returned once per method), other types still get theirs", () => {
    const events = [
      ev("ONTASKUPDATE", { FIELDS_AFTER: { ID: "1" } }),
      ev("ONTASKUPDATE", { FIELDS_AFTER: { ID: "2" } }),
      ev("ONCRMDEALUPDATE", { FIELDS: { ID: "7" } }),
      ev("ONCRMDEALUPDATE", { NOTHING: true }),
    ];
    const got: Record<number, EntityAttachment> = {};
    const plan = planEntityReads(events, BUILTIN_ENTITY_MAP, (i, a) => {
      got[i] = a;
    });
    const taskKey = Object.entries(plan.commands).find(([, c]) => c.method === "tasks.task.list")?.[0] ?? "";
    const dealKey = Object.entries(plan.commands).find(([, c]) => c.method === "crm.deal.list")?.[0] ?? "";
    const denied = new Bitrix24Error({
      code: "insufficient_scope",
      status: 403,
      method: "tasks.task.list",
      description: "The request requires higher privileges than provided by the access token",
    });
    const failures = plan.attach(outcome({ [dealKey]: [{ ID: "7" }] }, { [taskKey]: denied }));
    should(failures.map((f) => [f.method, f.error.code])).eql([["tasks.task.list", "insufficient_scope"]]);
    should(got[0]).eql({
      entity: null,
      error: { code: "insufficient_scope", status: 403, method: "tasks.task.list", description: denied.description },
    });
    should(got[1].error?.code).equal("insufficient_scope");
    should(got[2]).eql({ entity: { ID: "7" } });
    should(got[3].error).containDeep({ code: "ENTITY_ID_MISSING", method: "crm.deal.list" });
  });

  it("a whole request that failed leaves every read event without its object, with the error", () => {
    const got: EntityAttachment[] = [];
    const plan = planEntityReads([ev("ONCRMDEALUPDATE", { FIELDS: { ID: "7" } })], BUILTIN_ENTITY_MAP, (_, a) => {
      got.push(a);
    });
    const failures = plan.attach(new Bitrix24Error({ code: "NETWORK_ERROR", description: "socket hang up" }));
    should(failures).have.length(1);
    should(got[0]).containDeep({ entity: null, error: { code: "NETWORK_ERROR", method: "crm.deal.list" } });
  });

  it("a user map adds event families over the built-in one; bad JSON or a bad entry is a clear config error", () => {
    const map = parseEntityMap(
      JSON.stringify({
        "ONCATALOGPRODUCT*": {
          method: "catalog.product.list",
          id: "FIELDS.ID",
          filterKey: "@id",
          records: "products",
          idField: "id",
          select: ["id", "name"],
          params: { filter: { iblockId: 14 } },
        },
      }),
    );
    should(ruleFor(map, "ONCRMDEALUPDATE")?.method).equal("crm.deal.list");
    const rule = ruleFor(map, "ONCATALOGPRODUCTUPDATE");
    should(rule?.method).equal("catalog.product.list");
    const plan = planEntityReads([ev("ONCATALOGPRODUCTUPDATE", { FIELDS: { ID: 4 } })], map, () => undefined);
    should(Object.values(plan.commands)[0].params).eql({
      filter: { iblockId: 14, "@id": ["4"] },
      select: ["id", "name"],
    });
    should(parseEntityMap("")).equal(BUILTIN_ENTITY_MAP);
    should(() => parseEntityMap("{nope")).throw(/entityMap: not valid JSON/);
    should(() => parseEntityMap("[]")).throw(/entityMap: must be a JSON object/);
    should(() => parseEntityMap('{"ONX": {"id": "FIELDS.ID"}}')).throw(/"ONX".method must be a non-empty string/);
    should(() => parseEntityMap('{"ONX": {"method": "a.list", "id": 5}}')).throw(/"ONX".id must be a path/);
    try {
      parseEntityMap('{"ONX": "crm.deal.list"}');
      should.fail(false, true, "no error");
    } catch (err) {
      should(err).be.instanceOf(Bitrix24Error);
      should((err as Bitrix24Error).code).equal("INVALID_CONFIG");
    }
  });
});
