import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { control, rest } from "./rest-call";

describe("sandbox: control API over HTTP", () => {
  let sandbox: Sandbox;

  before(async () => {
    sandbox = await startSandbox({ events: 4 });
  });
  after(async () => {
    await sandbox.close();
  });

  it("shows state and stats, adds events, sets faults and options, expires tokens, resets", async () => {
    const state = await control(sandbox.url, "state");
    should(state.body.url).equal(sandbox.url);
    should(state.body.credentials).eql(sandbox.credentials);
    should(state.body.options).match({ extendedMode: true, rateLimit: { burst: 50, perSecond: 2 } });
    should(state.body.stats.queue.unprocessed).equal(4);
    const names = (await control(sandbox.url, "records")).body.map((r: { EVENT_NAME: string }) => r.EVENT_NAME);
    should(names).eql(["ONCRMDEALUPDATE", "ONCRMDEALADD", "ONCRMCONTACTUPDATE", "ONCRMLEADADD"]);

    const added = await control(sandbox.url, "events", { count: 3, name: "ONCRMLEADADD", connector: "c1" });
    should(added.body.stats.queue.total).equal(7);
    const collapsed = await control(sandbox.url, "events", { count: 5, data: { FIELDS: { ID: "999" } } });
    should(collapsed.body.stats.queue.total).equal(8);

    await control(sandbox.url, "faults", { errorRate: 1, errorCode: "PORTAL_DELETED" });
    should((await rest(sandbox, "feature.get", { CODE: "x" })).body.error).equal("PORTAL_DELETED");
    await control(sandbox.url, "faults", {});
    await control(sandbox.url, "options", { rateLimit: false, extendedMode: false });
    should((await control(sandbox.url, "state")).body.options).match({ rateLimit: false, extendedMode: false });
    should((await rest(sandbox, "event.offline.get", { clear: 0 })).body.error).equal("WRONG_LICENSE");
    await control(sandbox.url, "options", { extendedMode: true });

    await control(sandbox.url, "expire-tokens", {});
    should((await rest(sandbox, "feature.get", { CODE: "x" })).body.error).equal("expired_token");
    await control(sandbox.url, "reset", {});
    const stats = (await control(sandbox.url, "stats")).body;
    should(stats.queue.total).equal(0);
    should(stats.requests.total).equal(0);
    should((await rest(sandbox, "feature.get", { CODE: "x" })).status).equal(200);
    should((await control(sandbox.url, "nope", {})).status).equal(404);
  });
});

describe("sandbox: CLI", () => {
  let child: ChildProcess | undefined;

  afterEach(() => {
    if (child && child.exitCode === null) child.kill("SIGKILL");
  });

  it("prints one JSON line once listening, serves the portal, trickles events and exits on SIGTERM", async () => {
    const cli = join(__dirname, "../../src/sandbox/cli.ts");
    child = spawn(
      process.execPath,
      ["--import", "tsx", cli, "--port", "0", "--events", "5", "--rate-limit", "off", "--trickle", "50/s"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stderr!.on("data", (d) => {
      stderr += d;
    });
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no JSON line; stderr: ${stderr}`)), 15000);
      child!.stdout!.on("data", (d) => {
        stdout += d;
        if (stdout.includes("\n")) {
          clearTimeout(timer);
          resolve(stdout.split("\n")[0]);
        }
      });
    });
    const info = JSON.parse(line);
    should(Object.keys(info)).eql([
      "url",
      "clientId",
      "clientSecret",
      "accessToken",
      "refreshToken",
      "applicationToken",
      "webhookUrl",
    ]);
    await new Promise((r) => setTimeout(r, 300));
    const res = await fetch(`${info.url}/rest/event.offline.list.json?auth=${info.accessToken}`);
    const list = (await res.json()) as { total: number };
    should(list.total).be.above(5);
    const [code, signal] = await Promise.all([
      once(child, "exit").then(([c, s]) => [c, s]),
      Promise.resolve(child.kill("SIGTERM")),
    ]).then(([exit]) => exit as [number | null, string | null]);
    should(code).equal(0);
    should(signal).be.null();
    should(stdout.trim().split("\n")).have.length(1);
    should(stderr).match(/listening/);
  });
});
