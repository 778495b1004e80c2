import should from "should";
import { rest, sharedSandbox, webhookCall } from "./rest-call";

describe("sandbox: CRM methods share auth, the rate limit, time.operating and scopes", () => {
  const sandbox = sharedSandbox((s) => s.setOptions({ rateLimit: false, scopes: null }));

  it("needs auth like every method; a webhook works; time.operating counts per method", async () => {
    should((await rest(sandbox, "crm.deal.list", {}, { auth: null })).body.error).equal("NO_AUTH_FOUND");
    should((await rest(sandbox, "tasks.task.list", {}, { auth: "nope" })).body.error).equal("invalid_token");
    should((await webhookCall(sandbox, "user.get")).body.total).equal(1);
    const res = await rest(sandbox, "crm.deal.list");
    should(res.body.time.operating).be.a.Number();
    should(res.body.time.operating_reset_at).be.a.Number();
  });

  it("counts against the same bucket as the offline methods", async () => {
    sandbox.setOptions({ rateLimit: { burst: 3, perSecond: 0.001 } });
    const statuses = [];
    for (const method of ["crm.deal.list", "event.offline.list", "tasks.task.list", "user.get"]) {
      statuses.push((await rest(sandbox, method)).status);
    }
    should(statuses).eql([200, 200, 200, 503]);
  });

  it("scopes: a method of a scope the app lacks answers 403 insufficient_scope, alone and in a batch", async () => {
    sandbox.setOptions({ scopes: ["crm"] });
    const denied = await rest(sandbox, "tasks.task.list");
    should(denied.status).equal(403);
    should(denied.body.error).equal("insufficient_scope");
    should((await rest(sandbox, "user.get")).status).equal(403);
    should((await rest(sandbox, "crm.deal.list")).status).equal(200);
    const batch = await rest(sandbox, "batch", { cmd: { t: "tasks.task.list", d: "crm.deal.list" } });
    should(batch.body.result.result_error.t.error).equal("insufficient_scope");
    should(batch.body.result.result.d).eql([]);
    sandbox.setOptions({ scopes: null });
    should((await rest(sandbox, "tasks.task.list")).status).equal(200);
  });
});
