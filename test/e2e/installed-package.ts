import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * The package as users get it: `npm pack` of the built tree, installed with `npm install <tarball>` into a
 * Node-RED user directory. Packing and installing take ~10 s, so it happens ONCE per mocha run; every test
 * then gets a fresh user directory whose node_modules links to that one installation.
 */
export interface InstalledPackage {
  /** Temporary directory holding the tarball and the installation. */
  work: string;
  tarball: string;
  /** The user directory the tarball was installed into (package.json + node_modules). */
  installDir: string;
}

const root = join(__dirname, "..", "..");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
let installed: InstalledPackage | undefined;

export function installedPackage(): InstalledPackage {
  if (installed) return installed;
  const work = mkdtempSync(join(tmpdir(), "b24-e2e-"));
  process.once("exit", () => rmSync(work, { recursive: true, force: true }));
  // nodes/ is already built by `npm test` (or `npm run build`): the tarball must carry it; --ignore-scripts
  // so packing does not rebuild underneath tests that are running
  execFileSync(npm, ["pack", "--ignore-scripts", "--pack-destination", work], { cwd: root, stdio: "pipe" });
  const name = readdirSync(work).find((f) => f.endsWith(".tgz"));
  if (!name) throw new Error(`npm pack wrote no tarball into ${work}`);
  const tarball = join(work, name);
  const installDir = join(work, "install");
  mkdirSync(installDir);
  writeFileSync(join(installDir, "package.json"), JSON.stringify({ name: "node-red-project", private: true }));
  execFileSync(npm, ["install", "--no-audit", "--no-fund", "--omit=dev", "--ignore-scripts", tarball], {
    cwd: installDir,
    stdio: "pipe",
  });
  installed = { work, tarball, installDir };
  return installed;
}

/** A new, empty Node-RED user directory with the installed package (its node_modules is shared, read-only). */
export function freshUserDir(label: string): string {
  const { work, installDir } = installedPackage();
  const userDir = mkdtempSync(join(work, `${label}-`));
  execFileSync("cp", [join(installDir, "package.json"), join(userDir, "package.json")]);
  symlinkSync(join(installDir, "node_modules"), join(userDir, "node_modules"), "dir");
  return userDir;
}
