// The README's pictures, reproducible: starts the demo (scripts/demo.mjs, on free ports) or uses a running
// editor given as EDITOR_URL, opens it in the editor tests' headless Chromium (test/e2e/chromium.ts: the one
// npm installs, or CHROMIUM_PATH's) through playwright-core, and saves docs/flow.png (the basic example flow
// with live node statuses), docs/sidebar.png (the editor's Bitrix24 sidebar tab while the demo drains) and
// docs/get-dialog.png (the get node's edit dialog). Needs a build (npm run build).
//   node scripts/screenshot.mjs
import { spawn } from "node:child_process";
import { mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { tsImport } from "tsx/esm/api";
import { freePort } from "../test/kit/free-port.cjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const docs = join(root, "docs");
const { launchChromium } = await tsImport("../test/e2e/chromium.ts", import.meta.url);
const FLOW_TAB = "Bitrix24: basic sync";
// the nodes of examples/basic-sync.json whose status text must be showing before the picture is taken
const STATUS_NODES = ["bs-trigger", "bs-get", "bs-synced"];
// how long the sidebar watches the demo before its picture: long enough for the chart to show the trickle
const SIDEBAR_WATCH_MS = 45000;

async function until(condition, what, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The demo as `npm start` runs it, on free ports; answers its editor URL and how to stop it. */
async function startDemo() {
  const port = await freePort();
  const child = spawn(process.execPath, [join(root, "scripts/demo.mjs")], {
    env: { ...process.env, PORT: String(port), SANDBOX_PORT: String(await freePort()) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (chunk) => {
    out += chunk.toString();
  });
  const url = `http://127.0.0.1:${port}/`;
  await until(() => out.includes(url) || child.exitCode !== null, "the demo's editor URL", 90000);
  if (child.exitCode !== null) throw new Error(`the demo exited (${child.exitCode}):\n${out}`);
  return {
    url,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", resolve);
        child.kill("SIGINT");
      }),
  };
}

mkdirSync(docs, { recursive: true });
const demo = process.env.EDITOR_URL ? { url: process.env.EDITOR_URL, stop: async () => {} } : await startDemo();
let browser;
try {
  // wide enough for the zoomed flow beside the sidebar, tall enough for the whole get node dialog
  browser = await launchChromium({ locale: "en-US", viewport: { width: 1920, height: 1400 } });
  const page = await browser.context.newPage();
  await page.goto(demo.url);
  await page.locator('.red-ui-palette-node[data-palette-type="bitrix24-offline-get"]').waitFor({ timeout: 60000 });
  await page.locator("#red-ui-workspace-tabs .red-ui-tab", { hasText: FLOW_TAB }).click();
  const chart = page.locator("#red-ui-workspace-chart");
  // one zoom step (110 %) makes the flow about 1200 px wide; Node-RED zooms about the view's centre, so
  // scroll back to the flow's top left corner
  await page.locator("#red-ui-view-zoom-in").click();
  await chart.evaluate((element) => {
    element.scrollLeft = 0;
    element.scrollTop = 0;
  });
  // away from the tab and the buttons: no tooltip over the flow
  const view = await chart.boundingBox();
  if (!view) throw new Error("the workspace is not visible");
  await page.mouse.move(view.x + view.width - 20, view.y + view.height - 20);
  const flowNodes = chart.locator("g.red-ui-flow-node-group");
  for (const id of STATUS_NODES) {
    const label = chart.locator(`g.red-ui-flow-node-group[id="${id}"] .red-ui-flow-node-status-label`);
    await until(async () => ((await label.textContent()) ?? "").trim() !== "", `the status of ${id}`);
  }
  // the first drain of the seeded 200 events is over: the statuses show the steady trickle
  await page.waitForTimeout(3000);

  // crop to the nodes (their status texts included) with a margin, inside the visible chart
  const boxes = [];
  for (const node of await flowNodes.all()) {
    const box = await node.boundingBox();
    if (box) boxes.push(box);
  }
  if (boxes.length === 0) throw new Error("no flow nodes visible on the workspace");
  const margin = 40;
  const left = Math.max(view.x, Math.min(...boxes.map((b) => b.x)) - margin);
  const top = Math.max(view.y, Math.min(...boxes.map((b) => b.y)) - margin);
  const right = Math.min(view.x + view.width, Math.max(...boxes.map((b) => b.x + b.width)) + margin + 60);
  const bottom = Math.min(view.y + view.height, Math.max(...boxes.map((b) => b.y + b.height)) + margin);
  const flowPng = join(docs, "flow.png");
  await page.screenshot({ path: flowPng, clip: { x: left, y: top, width: right - left, height: bottom - top } });

  // the Bitrix24 sidebar tab, a little wider than the default so the chart and the numbers have room
  // (from the tab bar, or as the tab's menu entry does when the bar hides it for lack of room)
  const tab = page.locator("#red-ui-tab-bitrix24-ops");
  if (await tab.isVisible()) await tab.click();
  else await page.evaluate(() => globalThis.RED.sidebar.show("bitrix24-ops"));
  const separator = await page.locator("#red-ui-sidebar-separator").boundingBox();
  if (separator) {
    await page.mouse.move(separator.x + separator.width / 2, separator.y + 200);
    await page.mouse.down();
    await page.mouse.move(separator.x - 160, separator.y + 200, { steps: 10 });
    await page.mouse.up();
  }
  await page.locator(".b24ops-portal").first().waitFor({ timeout: 30000 });
  await page.waitForTimeout(SIDEBAR_WATCH_MS);
  const sidebarPng = join(docs, "sidebar.png");
  // down to the last portal's numbers: the tab's empty lower part says nothing
  const sidebar = await page.locator("#red-ui-sidebar").boundingBox();
  const last = await page.locator(".b24ops-portal").last().boundingBox();
  if (!sidebar || !last) throw new Error("the sidebar is not visible");
  const height = Math.min(sidebar.height, last.y + last.height + 12 - sidebar.y);
  await page.screenshot({ path: sidebarPng, clip: { x: sidebar.x, y: sidebar.y, width: sidebar.width, height } });

  await chart.locator('g.red-ui-flow-node-group[id="bs-get"]').dblclick();
  await page.locator("#node-input-portal").waitFor();
  await page.waitForTimeout(500); // the tray slides in
  // the tray is as tall as the window: shrink the window to the form, so the picture has no empty half
  const lastRow = await page.locator("#dialog-form .form-row:visible").last().boundingBox();
  if (!lastRow) throw new Error("the get node's form is not visible");
  await page.setViewportSize({ width: 1920, height: Math.ceil(lastRow.y + lastRow.height + 70) });
  await page.waitForTimeout(500);
  const dialogPng = join(docs, "get-dialog.png");
  await page.locator(".red-ui-tray").last().screenshot({ path: dialogPng });
  await page.locator("#node-dialog-cancel").click();

  for (const file of [flowPng, sidebarPng, dialogPng]) {
    console.log(`${file}: ${Math.round(statSync(file).size / 1024)} KB`);
  }
} finally {
  await browser?.close();
  await demo.stop();
}
