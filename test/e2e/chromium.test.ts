import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import should from "should";
import { findChromium } from "./chromium";

/**
 * The browser tests need nothing but `npm install`: with CHROMIUM_PATH unset, the browser is the npm package's
 * build, and it starts and renders with a PATH that holds no Chromium (only decoys that would tell on a lookup).
 */
const ROOT = join(__dirname, "..", "..");
const PACKAGE_DIR = join(ROOT, "node_modules", "@sparticuz", "chromium");
const VERSION: string = JSON.parse(readFileSync(join(PACKAGE_DIR, "package.json"), "utf8")).version;

/** Runs `fn` with CHROMIUM_PATH set to `value` (or unset), restoring it after. */
function withChromiumPath<T>(value: string | undefined, fn: () => T): T {
  const saved = process.env.CHROMIUM_PATH;
  if (value === undefined) delete process.env.CHROMIUM_PATH;
  else process.env.CHROMIUM_PATH = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.CHROMIUM_PATH;
    else process.env.CHROMIUM_PATH = saved;
  }
}

describe("the browser the editor tests use", function () {
  this.timeout(120000);

  it("without CHROMIUM_PATH is the npm package's Chromium, unpacked under the temp folder", () => {
    const browser = withChromiumPath(undefined, findChromium);
    should(browser.origin).equal(`@sparticuz/chromium@${VERSION}`);
    should(browser.executablePath).equal(join(tmpdir(), `b24-chromium-${VERSION}`, "chromium"));
    const version = spawnSync(browser.executablePath, ["--version"], {
      encoding: "utf8",
      env: { ...process.env, ...browser.env },
    });
    should(version.status).equal(0, version.stderr);
    // the package's major version is the Chromium major it carries
    should(version.stdout).match(new RegExp(`^Chromium ${VERSION.split(".")[0]}\\.`));
  });

  it("is CHROMIUM_PATH's when set, and says so when CHROMIUM_PATH names nothing", () => {
    const packaged = withChromiumPath(undefined, findChromium).executablePath;
    const chosen = withChromiumPath(packaged, findChromium);
    should(chosen).eql({ executablePath: packaged, origin: "CHROMIUM_PATH", env: {} });
    const missing = join(tmpdir(), "b24-no-such-chromium");
    should(() => withChromiumPath(missing, findChromium)).throw(`CHROMIUM_PATH names ${missing}, which does not exist`);
  });

  it("starts and renders a page with no Chromium on PATH and CHROMIUM_PATH unset", async () => {
    // PATH holds only decoys named like system browsers: any lookup by name runs one, and it leaves a mark
    const decoys = mkdtempSync(join(tmpdir(), "b24-no-chromium-path-"));
    const mark = join(decoys, "a decoy ran");
    for (const name of ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"]) {
      writeFileSync(join(decoys, name), `#!/bin/sh\necho "$0" >> '${mark}'\nexit 1\n`);
      chmodSync(join(decoys, name), 0o755);
    }
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: decoys, NODE_V8_COVERAGE: "" };
    delete env.CHROMIUM_PATH;
    const script = `
      const { launchChromium } = require(${JSON.stringify(join(__dirname, "chromium.ts"))});
      (async () => {
        const browser = await launchChromium({ locale: "ru-RU", viewport: { width: 800, height: 600 } });
        const page = await browser.context.newPage();
        await page.setContent("<p>Привет</p><script>document.querySelector('p').textContent += ' ' + navigator.language</script>");
        const shot = await page.screenshot();
        const report = { text: await page.textContent("p"), userAgent: await page.evaluate(() => navigator.userAgent), png: shot.length };
        await browser.close();
        process.stdout.write(JSON.stringify(report));
      })().catch((err) => { console.error(err); process.exit(1); });`;
    try {
      const child = spawn(process.execPath, ["--require", "tsx/cjs", "-e", script], { cwd: ROOT, env });
      let out = "";
      let err = "";
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
      });
      child.stderr.on("data", (chunk: Buffer) => {
        err += chunk.toString();
      });
      const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
      should(code).equal(0, err);
      const report = JSON.parse(out) as { text: string; userAgent: string; png: number };
      should(report.text).equal("Привет ru-RU");
      should(report.userAgent).match(new RegExp(`HeadlessChrome/${VERSION.split(".")[0]}\\.`));
      should(report.png).above(1000);
      should(existsSync(mark)).equal(false, "a Chromium was looked up on PATH");
    } finally {
      rmSync(decoys, { recursive: true, force: true });
    }
  });
});
