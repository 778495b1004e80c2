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
// Each node type has its folder (src/nodes/<type>/), each editor plugin too (src/plugins/<name>/); Node-RED looks
// for their help and labels in locales/<lang>/<type>.{html,json} and for icons in icons/, both beside the .js.
const folders = ["nodes", "plugins"].flatMap((kind) =>
  existsSync(join(root, "src", kind)) ? readdirSync(join(root, "src", kind)).map((type) => ({ kind, type })) : [],
);
for (const { kind, type } of folders) {
  const html = join(root, "src", kind, type, `${type}.html`);
  if (!existsSync(html)) continue; // shared glue, not a node type
  const typeOut = join(out, kind, type);
  mkdirSync(typeOut, { recursive: true });
  cpSync(html, join(typeOut, `${type}.html`));
  for (const lang of readdirSync(join(root, "locales"))) {
    for (const ext of ["json", "html"]) {
      const file = join(root, "locales", lang, `${type}.${ext}`);
      if (existsSync(file)) cpSync(file, join(typeOut, "locales", lang, `${type}.${ext}`), { recursive: true });
    }
  }
  if (kind === "nodes") cpSync(join(root, "icons"), join(typeOut, "icons"), { recursive: true });
}
