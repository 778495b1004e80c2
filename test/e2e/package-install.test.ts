import { execFileSync } from "node:child_process";
import axios from "axios";
import should from "should";
import { freshUserDir, installedPackage } from "./installed-package";
import { NODE_BINARY, NODE_RED_DIR, type NodeRedProcess, startNodeRed } from "./node-red-process";

const pkg = require("../../package.json") as {
  name: string;
  "node-red": { nodes: Record<string, string>; plugins: Record<string, string> };
};

describe("the packed tarball in a fresh Node-RED user directory", function () {
  this.timeout(180000);
  let nodeRed: NodeRedProcess | undefined;

  after(async () => {
    await nodeRed?.stop();
  });

  it("ships the build output, examples and docs but no sources or tests", () => {
    const listing = execFileSync("tar", ["-tzf", installedPackage().tarball]).toString().split("\n");
    should(listing).containEql("package/nodes/nodes/bitrix24-portal/bitrix24-portal.js");
    should(listing).containEql("package/nodes/nodes/bitrix24-portal/bitrix24-portal.html");
    should(listing).containEql("package/nodes/nodes/bitrix24-portal/locales/ru/bitrix24-portal.json");
    should(listing).containEql("package/nodes/sandbox/cli.js");
    for (const file of Object.values(pkg["node-red"].nodes)) should(listing).containEql(`package/${file}`);
    // the editor's Bitrix24 sidebar: a plugin with its editor half and its labels
    for (const file of Object.values(pkg["node-red"].plugins)) {
      should(listing).containEql(`package/${file}`);
      should(listing).containEql(`package/${file.replace(/\.js$/, ".html")}`);
    }
    should(listing).containEql("package/nodes/plugins/bitrix24-sidebar/locales/ru/bitrix24-sidebar.json");
    should(listing).containEql("package/examples/basic-sync.json");
    should(listing.some((f) => f.startsWith("package/src/") || f.startsWith("package/test/"))).be.false();
    should(listing.some((f) => f.endsWith(".map") || f.endsWith(".d.ts"))).be.false();
  });

  it("starts Node-RED with every node type registered, enabled and error-free", async () => {
    nodeRed = await startNodeRed(freshUserDir("install"));
    const response = await axios.get(`${nodeRed.url}/nodes`, { headers: { Accept: "application/json" } });
    const sets = (response.data as Array<{ module: string; types: string[]; enabled: boolean; err?: string }>).filter(
      (s) => s.module === pkg.name,
    );
    const types = sets.flatMap((s) => s.types);
    should(types.sort()).eql(Object.keys(pkg["node-red"].nodes).sort());
    should(types).have.length(8);
    for (const set of sets) {
      should(set.err).be.undefined();
      should(set.enabled).be.true();
    }
    // which Node-RED and Node ran this (the compatibility matrix reads it from the test title's output)
    const settings = (await axios.get(`${nodeRed.url}/settings`)).data as { version: string };
    const nodeVersion = execFileSync(NODE_BINARY, ["--version"]).toString().trim();
    console.log(`      Node-RED ${settings.version} (${NODE_RED_DIR}) on Node ${nodeVersion}`);
  });

  it("serves the editor dialogs and the Russian labels", async () => {
    const html = await axios.get(`${nodeRed?.url}/nodes`, { headers: { Accept: "text/html" } });
    const page = String(html.data);
    const missing = Object.keys(pkg["node-red"].nodes).flatMap((type) =>
      [
        new RegExp(`RED\\.nodes\\.registerType\\(["']${type}["']`),
        `data-template-name="${type}"`,
        `data-help-name="${type}"`,
      ]
        .filter((needle) => (typeof needle === "string" ? !page.includes(needle) : !needle.test(page)))
        .map((needle) => `${type}: ${needle}`),
    );
    should(missing).eql([]);
    const ru = await axios.get(`${nodeRed?.url}/locales/${pkg.name}/bitrix24-portal?lng=ru`);
    should(ru.data["bitrix24-portal"].label.portalUrl).equal("Адрес портала");
    // the sidebar plugin: loaded without error, its labels served to the editor
    const plugins = (await axios.get(`${nodeRed?.url}/plugins`, { headers: { Accept: "application/json" } }))
      .data as Array<{ module: string; id: string; enabled: boolean; err?: string }>;
    should(plugins.filter((p) => p.module === pkg.name).map((p) => [p.id, p.enabled, p.err])).eql([
      [`${pkg.name}/bitrix24-sidebar`, true, undefined],
    ]);
    const messages = await axios.get(`${nodeRed?.url}/plugins/messages?lng=ru`);
    should(messages.data[`${pkg.name}/bitrix24-sidebar`]["bitrix24-sidebar"].label).equal("Битрикс24");
  });
});
