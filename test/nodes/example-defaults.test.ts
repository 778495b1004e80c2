import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import should from "should";

/**
 * The editor shows a property an imported node lacks as empty (an unticked checkbox) while the runtime applies
 * its default: the dialog would lie, and a user clicking Done would save the opposite of what ran. So every
 * node of every example flow carries every property its editor declares.
 */
const ROOT = join(__dirname, "..", "..");

function editorDefaults(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const nodesDir = join(ROOT, "src", "nodes");
  for (const folder of readdirSync(nodesDir)) {
    const file = join(nodesDir, folder, `${folder}.html`);
    if (!existsSync(file)) continue; // shared glue, not a node type
    const html = readFileSync(file, "utf8");
    const type = /registerType\("([\w-]+)"/.exec(html)?.[1];
    // The block's own indentation finds its end and its keys (one level deeper), wherever registerType sits.
    const opening = /^( *)defaults: \{$/m.exec(html);
    if (!type || !opening) continue;
    const indent = opening[1];
    const block = html.slice(opening.index, html.indexOf(`\n${indent}},`, opening.index));
    const key = new RegExp(`^${indent}  (\\w+): \\{`, "gm");
    out.set(
      type,
      [...block.matchAll(key)].map((m) => m[1]),
    );
  }
  return out;
}

describe("example flows", () => {
  const defaults = editorDefaults();

  it("reads the editor defaults of all eight node types", () => {
    should([...defaults.keys()].sort()).eql([
      "bitrix24-call",
      "bitrix24-offline-clear",
      "bitrix24-offline-error",
      "bitrix24-offline-get",
      "bitrix24-offline-list",
      "bitrix24-offline-trigger",
      "bitrix24-portal",
      "bitrix24-postgres",
    ]);
    should(defaults.get("bitrix24-offline-get")).containEql("orphanSweep");
  });

  for (const file of readdirSync(join(ROOT, "examples")).filter((f) => f.endsWith(".json"))) {
    it(`${file}: every node of ours has every property its editor declares`, () => {
      const flow = JSON.parse(readFileSync(join(ROOT, "examples", file), "utf8")) as Array<Record<string, unknown>>;
      const missing: string[] = [];
      let ours = 0;
      for (const node of flow) {
        const keys = defaults.get(String(node.type));
        if (!keys) continue;
        ours++;
        for (const key of keys) if (!(key in node)) missing.push(`${node.id}.${key}`);
      }
      should(ours).be.above(0);
      should(missing).eql([]);
    });
  }
});
