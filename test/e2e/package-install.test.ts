import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import axios from "axios";
import should from "should";
import { type NodeRedProcess, startNodeRed } from "./node-red-process";

const root = join(__dirname, "..", "..");
const pkg = require("../../package.json") as { name: string; "node-red": { nodes: Record<string, string> } };
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

describe("the packed tarball in a fresh Node-RED user directory", function () {
  this.timeout(180000);
  let work: string;
  let nodeRed: NodeRedProcess | undefined;

  before(() => {
    work = mkdtempSync(join(tmpdir(), "b24-pack-"));
    // nodes/ is already built by `npm test`; the tarball must still carry it (and nothing from src/ or test/)
    execFileSync(npm, ["pack", "--ignore-scripts", "--pack-destination", work], { cwd: root, stdio: "pipe" });
    const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"));
    should.exist(tarball);
    const userDir = join(work, "user");
    execFileSync("mkdir", ["-p", userDir]);
    writeFileSync(join(userDir, "package.json"), JSON.stringify({ name: "node-red-project", private: true }));
    execFileSync(npm, ["install", "--no-audit", "--no-fund", "--omit=dev", join(work, tarball as string)], {
      cwd: userDir,
      stdio: "pipe",
    });
  });

  after(async () => {
    await nodeRed?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("ships the build output, examples and docs but no sources or tests", () => {
    const listing = execFileSync("tar", ["-tzf", join(work, readdirSync(work).find((f) => f.endsWith(".tgz")) ?? "")])
      .toString()
      .split("\n");
    should(listing).containEql("package/nodes/nodes/bitrix24-portal.js");
    should(listing).containEql("package/nodes/nodes/bitrix24-portal.html");
    should(listing).containEql("package/nodes/nodes/locales/ru/bitrix24-portal.json");
    should(listing).containEql("package/examples/basic-sync.json");
    should(listing.some((f) => f.startsWith("package/src/") || f.startsWith("package/test/"))).be.false();
    should(listing.some((f) => f.endsWith(".map") || f.endsWith(".d.ts"))).be.false();
  });

  it("starts Node-RED with every node type registered, enabled and error-free", async () => {
    nodeRed = await startNodeRed(join(work, "user"));
    const response = await axios.get(`${nodeRed.url}/nodes`, { headers: { Accept: "application/json" } });
    const sets = (response.data as Array<{ module: string; types: string[]; enabled: boolean; err?: string }>).filter(
      (s) => s.module === pkg.name,
    );
    const types = sets.flatMap((s) => s.types);
    should(types.sort()).eql(Object.keys(pkg["node-red"].nodes).sort());
    for (const set of sets) {
      should(set.err).be.undefined();
      should(set.enabled).be.true();
    }
  });

  it("serves the editor dialogs and the Russian labels", async () => {
    const html = await axios.get(`${nodeRed?.url}/nodes`, { headers: { Accept: "text/html" } });
    should(html.data).match(/RED\.nodes\.registerType\("bitrix24-portal"/);
    should(html.data).match(/data-help-name="bitrix24-portal"/);
    const ru = await axios.get(`${nodeRed?.url}/locales/${pkg.name}/bitrix24-portal?lng=ru`);
    should(ru.data["bitrix24-portal"].label.portalUrl).equal("Адрес портала");
  });
});
