// Recreates nodes/ (what Node-RED loads) from src/, icons/ and locales/.
// Node-RED looks for locales/ and icons/ next to each node's .js, so they are copied beside src/nodes' output.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// node-red's bundled npm 10 (first on PATH inside our npm scripts) runs `prepare` on `npm pack --ignore-scripts`
// all the same. The flag still reaches us: honour it, so the e2e tests' pack of the built tree does not rebuild
// nodes/ under tests that are running.
if (process.env.npm_lifecycle_event === "prepare" && process.env.npm_config_ignore_scripts === "true") {
  console.log("build skipped: npm was asked to --ignore-scripts");
  process.exit(0);
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "nodes");
rmSync(out, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [join(root, "node_modules/typescript/bin/tsc"), "-p", join(root, "tsconfig.build.json")],
  {
    stdio: "inherit",
  },
);
const nodesOut = join(out, "nodes");
mkdirSync(nodesOut, { recursive: true });
for (const file of readdirSync(join(root, "src/nodes"))) {
  if (file.endsWith(".html")) cpSync(join(root, "src/nodes", file), join(nodesOut, file));
}
for (const dir of ["locales", "icons"]) {
  if (existsSync(join(root, dir))) cpSync(join(root, dir), join(nodesOut, dir), { recursive: true });
}
