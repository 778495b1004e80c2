import should from "should";
import { bindOffline, rest, sharedSandbox } from "./rest-call";

describe("sandbox: crm.item.* (smart process 128), tasks.task.*, user.get", () => {
  const sandbox = sharedSandbox();

  describe("crm.item.*", () => {
    it("add/get/update/delete answer {item} with camelCase fields and numbers; events carry ENTITY_TYPE_ID", async () => {
      await bindOffline(sandbox, ["ONCRMDYNAMICITEMADD", "ONCRMDYNAMICITEMUPDATE", "ONCRMDYNAMICITEMDELETE"], "c");
      const add = await rest(sandbox, "crm.item.add", {
        entityTypeId: 128,
        fields: { title: "Shipment", opportunity: 150.5, assignedById: 1, ufCrm128_Code: "X1" },
      });
      should(add.status).equal(200);
      const item = add.body.result.item;
      should(item).have.properties({
        id: 1,
        title: "Shipment",
        opportunity: 150.5,
        assignedById: 1,
        entityTypeId: 128,
        stageId: "DT128_1:NEW",
        companyId: 0,
        observers: [],
        ufCrm128_Code: "X1",
      });
      should(item.createdTime).match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/);
      const upd = await rest(sandbox, "crm.item.update", {
        entityTypeId: 128,
        id: 1,
        fields: { stageId: "DT128_1:CLIENT" },
      });
      should(upd.body.result.item).have.properties({ stageId: "DT128_1:CLIENT", previousStageId: "DT128_1:NEW" });
      const get = await rest(sandbox, "crm.item.get", { entityTypeId: 128, id: 1 });
      should(get.body.result.item).eql(sandbox.crm.get("item", 1));
      const del = await rest(sandbox, "crm.item.delete", { entityTypeId: 128, id: 1 });
      should(del.body.result).eql([]);
      should(sandbox.records().map((r) => [r.EVENT_NAME, r.EVENT_DATA])).eql(
        ["ADD", "UPDATE", "DELETE"].map((a) => [
          `ONCRMDYNAMICITEM${a}`,
          { FIELDS: { ID: "1", ENTITY_TYPE_ID: "128" } },
        ]),
      );
    });

    it("errors: unknown type, missing element, a filter or order field it does not know", async () => {
      const cases: [string, Record<string, unknown>, string, string][] = [
        ["crm.item.get", { entityTypeId: 999, id: 1 }, "NOT_FOUND", "Smart process not found"],
        ["crm.item.get", { entityTypeId: 128, id: 5 }, "NOT_FOUND", "Element not found"],
        ["crm.item.update", { entityTypeId: 128, id: 5, fields: {} }, "NOT_FOUND", "Element not found"],
        [
          "crm.item.list",
          { entityTypeId: 128, filter: { nope: 1 } },
          "INVALID_ARG_VALUE",
          "Invalid filter: field 'nope' is not allowed in filter",
        ],
        [
          "crm.item.list",
          { entityTypeId: 128, order: { id: "UP" } },
          "INVALID_ARG_VALUE",
          "Invalid order: allowed sort directions are ASC, DESC. But got 'UP' for field 'id'",
        ],
      ];
      for (const [method, params, error, description] of cases) {
        const res = await rest(sandbox, method, params);
        should({ status: res.status, body: res.body }).eql({
          status: 400,
          body: { error, error_description: description },
        });
      }
    });

    it("list answers {items} with total/next, select, filter groups with logic OR, and start=-1", async () => {
      sandbox.crm.seed("item", 60);
      const first = await rest(sandbox, "crm.item.list", { entityTypeId: 128, select: ["id", "title"] });
      should(first.body.result.items).have.length(50);
      should(first.body.result.items[0]).eql({ id: 1, title: "Item #1" });
      should(first.body.total).equal(60);
      should(first.body.next).equal(50);
      const or = await rest(sandbox, "crm.item.list", {
        entityTypeId: 128,
        select: ["id"],
        filter: { "0": { logic: "OR", "0": { id: 3 }, "1": { id: 7 } }, "<=id": 5 },
      });
      should(or.body.result.items).eql([{ id: 3 }]);
      const fast = await rest(sandbox, "crm.item.list", { entityTypeId: 128, filter: { ">id": 55 }, start: -1 });
      should(fast.body.result.items.map((i: { id: number }) => i.id)).eql([56, 57, 58, 59, 60]);
      should(fast.body.total).equal(0);
      should(fast.body).not.have.property("next");
      const fields = await rest(sandbox, "crm.item.fields", { entityTypeId: 128 });
      should(fields.body.result.fields.assignedById).have.properties({ type: "user", upperName: "ASSIGNED_BY_ID" });
    });
  });

  describe("tasks.task.*", () => {
    it("add/update/get/delete answer {task} with camelCase string values; events with FIELDS_BEFORE/AFTER", async () => {
      await bindOffline(sandbox, ["ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE"]);
      const add = await rest(sandbox, "tasks.task.add", { fields: { TITLE: "Call the client", RESPONSIBLE_ID: 1 } });
      should(add.body.result.task).have.properties({
        id: "1",
        title: "Call the client",
        responsibleId: "1",
        status: "2",
        createdBy: "1",
        accomplices: [],
      });
      const upd = await rest(sandbox, "tasks.task.update", { taskId: 1, fields: { STATUS: 5 } });
      should(upd.body.result.task.status).equal("5");
      should(upd.body.result.task.closedDate).be.a.String();
      const get = await rest(sandbox, "tasks.task.get", { taskId: 1, select: ["ID", "TITLE"] });
      should(get.body.result).eql({ task: { id: "1", title: "Call the client" } });
      should((await rest(sandbox, "tasks.task.delete", { taskId: 1 })).body.result).eql({ task: true });
      should((await rest(sandbox, "tasks.task.get", { taskId: 1 })).body.result).eql([]);
      should(sandbox.records().map((r) => [r.EVENT_NAME, r.EVENT_DATA])).eql([
        [
          "ONTASKADD",
          {
            FIELDS_BEFORE: "undefined",
            FIELDS_AFTER: { ID: "1" },
            IS_ACCESSIBLE_BEFORE: "N",
            IS_ACCESSIBLE_AFTER: "undefined",
          },
        ],
        [
          "ONTASKUPDATE",
          {
            FIELDS_BEFORE: { ID: "1" },
            FIELDS_AFTER: { ID: "1" },
            IS_ACCESSIBLE_BEFORE: "undefined",
            IS_ACCESSIBLE_AFTER: "undefined",
          },
        ],
        [
          "ONTASKDELETE",
          {
            FIELDS_BEFORE: { ID: "1" },
            FIELDS_AFTER: "undefined",
            IS_ACCESSIBLE_BEFORE: "undefined",
            IS_ACCESSIBLE_AFTER: "N",
          },
        ],
      ]);
    });

    it("errors as the pages give them", async () => {
      const cases: [string, Record<string, unknown>, string, string][] = [
        ["tasks.task.add", {}, "100", "Could not find value for parameter {fields} (internal error)"],
        ["tasks.task.add", { fields: { RESPONSIBLE_ID: 1 } }, "ERROR_CORE", "Task title not specified<br>"],
        ["tasks.task.add", { fields: { TITLE: "x" } }, "ERROR_CORE", "Assignee not specified<br>"],
        [
          "tasks.task.add",
          { fields: { TITLE: "x", RESPONSIBLE_ID: 77 } },
          "ERROR_CORE",
          'User specified in the "Assignee" field not found<br>',
        ],
        ["tasks.task.get", { taskId: "abc" }, "0", "wrong task id"],
        [
          "tasks.task.get",
          {},
          "100",
          "CTaskItem All parameters in the constructor must have real class type (internal error)",
        ],
        ["tasks.task.delete", { taskId: 9 }, "1048582", "No access to delete the task"],
        ["tasks.task.list", { order: { NOPE: "asc" } }, "0", "Invalid sorting key (internal error)"],
      ];
      for (const [method, params, error, description] of cases) {
        const res = await rest(sandbox, method, params);
        should({ method, status: res.status, body: res.body }).eql({
          method,
          status: 400,
          body: { error, error_description: description },
        });
      }
    });

    it("list answers {tasks}, ID descending by default, upper-case filter keys, paging", async () => {
      sandbox.crm.seed("user", 2);
      sandbox.crm.seed("task", 51);
      const first = await rest(sandbox, "tasks.task.list", { select: ["ID", "RESPONSIBLE_ID"] });
      should(first.body.result.tasks).have.length(50);
      should(first.body.result.tasks[0].id).equal("51");
      should(first.body.total).equal(51);
      should(first.body.next).equal(50);
      const byId = await rest(sandbox, "tasks.task.list", {
        filter: { ">ID": 48 },
        order: { ID: "asc" },
        select: ["ID"],
      });
      should(byId.body.result.tasks.map((t: { id: string }) => t.id)).eql(["49", "50", "51"]);
      const done = await rest(sandbox, "tasks.task.list", { filter: { REAL_STATUS: 5 }, select: ["ID"] });
      should(done.body.total).equal(10);
      const pattern = await rest(sandbox, "tasks.task.list", { filter: { TITLE: "Task #5%" }, select: ["ID"] });
      should(pattern.body.result.tasks.map((t: { id: string }) => t.id)).eql(["51", "50", "5"]);
    });
  });

  describe("user.get", () => {
    it("answers a list with total; user 1 is the administrator; filters, sort and paging", async () => {
      sandbox.crm.seed("user", 59);
      const first = await rest(sandbox, "user.get", {});
      should(first.body.result).have.length(50);
      should(first.body.total).equal(60);
      should(first.body.next).equal(50);
      should(first.body.result[0]).have.properties({ ID: "1", ACTIVE: true, NAME: "Admin", UF_DEPARTMENT: [1] });
      const one = await rest(sandbox, "user.get", { ID: 3 });
      should(one.body.result.map((u: { ID: string }) => u.ID)).eql(["3"]);
      const filtered = await rest(sandbox, "user.get", { filter: { ">ID": 57 } });
      should(filtered.body.result.map((u: { ID: string }) => u.ID)).eql(["58", "59", "60"]);
      const sorted = await rest(sandbox, "user.get", { SORT: "ID", ORDER: "desc" });
      should(sorted.body.result[0].ID).equal("60");
      const like = await rest(sandbox, "user.get", { filter: { EMAIL: "user1%" } });
      should(like.body.total).equal(10); // user10 .. user19 (user 1 is the administrator)
      should(sandbox.crm.get("user", 1)).have.properties({ EMAIL: "admin@example.com" });
    });
  });
});
