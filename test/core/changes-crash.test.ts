import { type ChildProcess, spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { bindOffline } from "../sandbox/rest-call";
import { until } from "../wait";

/**
 * Issue 21's crash test: the process that tracks changes is SIGKILLed between emit and ack, and between the
 * portal's confirmed ack and the state write. On restart the redelivered events carry the same changes, and no
 * later event shows a change twice or misses one.
 */

interface Line {
  id?: number;
  object?: string;
  redelivered?: boolean;
  changes?: { changes: Record<string, { before: unknown; after: unknown }> | null; firstSeen: boolean };
  summary?: unknown;
  failure?: string;
  fatal?: string;
}

describe("changes survive SIGKILL (child processes on one state directory)", function () {
  this.timeout(60000);
  let sandbox: Sandbox;
  let stateDir: string;
  let child: ChildProcess | undefined;

  before(async () => {
    sandbox = await startSandbox({ rateLimit: false });
    stateDir = await fs.mkdtemp(join(tmpdir(), "b24-changes-crash-"));
    sandbox.crm.seed("deal", 3);
    await bindOffline(sandbox, ["ONCRMDEALUPDATE"]);
  });

  after(async () => {
    child?.kill("SIGKILL");
    await sandbox.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  /** Starts the child; resolves its output lines so far when `done` says so (then kills it, unless it exited). */
  async function run(step: string, done: (lines: Array<Line | string>) => boolean): Promise<Array<Line | string>> {
    const c = sandbox.credentials;
    const lines: Array<Line | string> = [];
    let buffer = "";
    child = spawn(
      process.execPath,
      ["--require", require.resolve("tsx/cjs"), join(__dirname, "fixtures", "changes-child.ts")],
      {
        env: {
          ...process.env,
          NODE_V8_COVERAGE: "",
          STEP: step,
          PORTAL_URL: sandbox.url,
          CLIENT_ID: c.clientId,
          CLIENT_SECRET: c.clientSecret,
          ACCESS_TOKEN: c.accessToken,
          REFRESH_TOKEN: c.refreshToken,
          STATE_DIR: stateDir,
        },
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    child.stdout?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split("\n");
      buffer = parts.pop() ?? "";
      for (const p of parts) lines.push(p.startsWith("{") ? (JSON.parse(p) as Line) : p);
    });
    const proc = child;
    await until(() => done(lines) || proc.exitCode !== null, 30000, `the child (${step})`);
    if (proc.exitCode === null) {
      proc.kill("SIGKILL");
      await new Promise((r) => proc.once("exit", r));
    }
    should(lines.filter((l) => typeof l === "object" && (l.fatal || l.failure))).eql([]);
    return lines;
  }

  const deliveries = (lines: Array<Line | string>) =>
    lines.filter((l): l is Line => typeof l === "object" && l.id !== undefined);
  const edit = (id: number, fields: Record<string, string | number>) =>
    sandbox.portalCall("crm.deal.update", { id, fields });

  it("killed between emit and ack, and between ack and the state write: same changes again, none twice, none missed", async () => {
    for (let id = 1; id <= 3; id++) edit(id, { TITLE: `t${id}` });
    const first = deliveries(await run("run", (l) => l.includes("DONE")));
    should(first.map((d) => d.changes?.firstSeen)).eql([true, true, true]);
    should(sandbox.records()).be.empty();

    const stage1 = String(sandbox.crm.get("deal", 1)?.STAGE_ID);
    edit(1, { STAGE_ID: "WON" });
    edit(2, { OPPORTUNITY: 4321 });
    // 1) SIGKILL between emit and ack
    const emitted = deliveries(await run("no-ack", (l) => deliveries(l).length === 2));
    const byObject = (ds: Line[]) => new Map(ds.map((d) => [d.object, d.changes?.changes]));
    const shown = byObject(emitted);
    should(shown.get("1")).match({ STAGE_ID: { before: stage1, after: "WON", afterLabel: "Deal successful" } });
    should(Object.keys(shown.get("2") ?? {})).eql(["OPPORTUNITY"]);

    // 2) restarted: the same events come back with the same changes; acked; SIGKILL before the state write
    const again = await run("hang-commit", (l) => l.includes("COMMIT") && deliveries(l).length === 2);
    should(deliveries(again).every((d) => d.redelivered)).be.true();
    should(byObject(deliveries(again))).eql(shown);
    await until(() => sandbox.records().length === 0, 5000, "the portal has the acks"); // the clear went through

    // 3) restarted: the acked changes count as acknowledged (not shown twice), the new one is not missed
    const amount3 = sandbox.crm.get("deal", 3)?.OPPORTUNITY;
    edit(1, { STAGE_ID: "LOSE" });
    edit(3, { OPPORTUNITY: 99 });
    const after = deliveries(await run("run", (l) => l.includes("DONE")));
    should(after.every((d) => !d.redelivered)).be.true();
    should(byObject(after)).eql(
      new Map([
        [
          "1",
          { STAGE_ID: { before: "WON", after: "LOSE", beforeLabel: "Deal successful", afterLabel: "Deal failed" } },
        ],
        ["3", { OPPORTUNITY: { before: amount3, after: sandbox.crm.get("deal", 3)?.OPPORTUNITY } }],
      ]),
    );
    should(sandbox.records()).be.empty();
  });
});
