import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type BrowserContext, chromium } from "playwright-core";

/**
 * The one place that finds and starts the headless Chromium of the editor tests and scripts/screenshot.mjs.
 * The browser arrives with `npm install`, like every other dependency: @sparticuz/chromium carries a
 * brotli-packed headless Chromium (Linux x64) in its tarball. CHROMIUM_PATH, when set, names a Chromium of the
 * machine's own instead. Nothing here looks at PATH or /usr/bin.
 */

/** Headless as root without a sandbox, and off the network: the machine's network is closed, and a test's
 * browser has no business calling home (without these it tries Google's hosts at every start). */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface ChromiumBinary {
  executablePath: string;
  /** what chose it: "CHROMIUM_PATH" or the npm package with its version */
  origin: string;
  /** variables the browser process needs on top of ours */
  env: Record<string, string>;
}

const PACKAGE = "@sparticuz/chromium";

function packageVersion(entry: string): string {
  // the entry is <package>/build/cjs/index.cjs; its package.json is not in the package's "exports"
  const manifest = JSON.parse(readFileSync(join(dirname(entry), "..", "..", "package.json"), "utf8"));
  return String(manifest.version);
}

/**
 * Unpacks the package's Chromium (browser, SwiftShader, fonts, and the NSS libraries it may need) once per
 * package version into <tmp>/b24-chromium-<version>. The package's own cache is /tmp/chromium whatever its
 * version, written in place: a stale or half-written binary there would be launched. Here each unpack goes to
 * its own folder, renamed into place when complete, so concurrent test processes never see a partial one.
 */
function unpackedPackage(entry: string, version: string): string {
  const dir = join(tmpdir(), `b24-chromium-${version}`);
  if (existsSync(join(dir, "chromium"))) return dir;
  const staging = mkdtempSync(`${dir}.unpacking-`);
  try {
    // The package unpacks into os.tmpdir(); a child with its own TMPDIR keeps this process's untouched. The
    // Amazon Linux marker makes it unpack its NSS libraries too, for machines without them (see nssFallback).
    const unpack = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(entry)}).executablePath()`], {
      env: { ...process.env, TMPDIR: staging, AWS_EXECUTION_ENV: "AWS_Lambda_nodejs20.x" },
      encoding: "utf8",
    });
    if (unpack.status !== 0) throw new Error(`could not unpack ${PACKAGE}@${version}: ${unpack.stderr}`);
    // Its own fonts.conf names /tmp/fonts. This one adds the packed Open Sans (Latin and Cyrillic) to the
    // machine's fonts, if it has any, and prefers it for the editor's sans-serif stack: text then renders the
    // same on every machine, fonts installed or not (monospace and other scripts still come from the machine).
    const sans = ["sans-serif", "Helvetica Neue", "Helvetica", "Arial"]
      .map(
        (family) =>
          `  <alias binding="strong"><family>${family}</family><prefer><family>Open Sans</family></prefer></alias>\n`,
      )
      .join("");
    writeFileSync(
      join(staging, "fonts.conf"),
      `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n` +
        `  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>\n` +
        `  <dir>${join(dir, "fonts", "fonts")}</dir>\n  <cachedir>${join(dir, "fontconfig-cache")}</cachedir>\n` +
        `${sans}</fontconfig>\n`,
    );
    chmodSync(staging, 0o755); // mkdtemp's 0700 would hide the cache from the machine's other users
    try {
      renameSync(staging, dir);
    } catch (err) {
      // another process finished first: use its copy
      if (!existsSync(join(dir, "chromium"))) throw err;
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return dir;
}

/**
 * The packed browser links the NSS libraries (libnss3, libnspr4) and libexpat, which Debian's images carry but
 * a slimmer machine may not: the machine's own are used when they load, the package's copies when not.
 */
function nssFallback(executablePath: string, dir: string): Record<string, string> {
  const probe = spawnSync(executablePath, ["--version"], { encoding: "utf8" });
  if (probe.status === 0) return {};
  if (!/error while loading shared libraries/.test(probe.stderr)) {
    throw new Error(`${executablePath} --version failed (${probe.status}): ${probe.stderr}`);
  }
  const libs = join(dir, "al2023", "lib");
  const path = [libs, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":");
  return { LD_LIBRARY_PATH: path };
}

/** The Chromium to launch: CHROMIUM_PATH's, or the npm package's, unpacked on first use. */
export function findChromium(): ChromiumBinary {
  const override = process.env.CHROMIUM_PATH;
  if (override) {
    if (!existsSync(override)) throw new Error(`CHROMIUM_PATH names ${override}, which does not exist`);
    return { executablePath: override, origin: "CHROMIUM_PATH", env: {} };
  }
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new Error(`${PACKAGE} is a Linux x64 build: on ${process.platform}-${process.arch} set CHROMIUM_PATH`);
  }
  let entry: string;
  try {
    // from __filename: under tsx's tsImport (scripts/screenshot.mjs) the plain require's answers carry a query
    entry = createRequire(__filename).resolve(PACKAGE);
  } catch {
    throw new Error(`${PACKAGE} is not installed: run npm install (or set CHROMIUM_PATH)`);
  }
  const version = packageVersion(entry);
  const dir = unpackedPackage(entry, version);
  const executablePath = join(dir, "chromium");
  return {
    executablePath,
    origin: `${PACKAGE}@${version}`,
    env: { FONTCONFIG_FILE: join(dir, "fonts.conf"), ...nssFallback(executablePath, dir) },
  };
}

export interface OpenBrowser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** A headless Chromium with a fresh profile, removed again on close. */
export async function launchChromium(options: {
  locale: string;
  viewport: { width: number; height: number };
}): Promise<OpenBrowser> {
  const browser = findChromium();
  const profile = mkdtempSync(join(tmpdir(), "b24-chromium-profile-"));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: browser.executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      env: { ...process.env, ...browser.env },
      ...options,
    });
    return {
      context,
      close: async () => {
        await context.close();
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw new Error(`could not start Chromium from ${browser.origin} (${browser.executablePath}): ${err}`);
  }
}
