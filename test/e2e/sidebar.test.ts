import { mkdirSync } from "node:fs";
import { join } from "node:path";
import axios from "axios";
import type { Page } from "playwright-core";
import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { findChromium, launchChromium, type OpenBrowser } from "./chromium";
import { PORTAL_ID, sandboxPortal, until } from "./example-flows";
import { freshUserDir } from "./installed-package";
import { type FlowNode, type NodeRedProcess, startNodeRed } from "./node-red-process";

/**
 * The editor's "Bitrix24" sidebar tab in a real (headless) Chromium, on the installed package: it appears, its
 * chart moves while the sandbox drains, an error shows with a link that reveals its node, in English and in
 * Russian. ONE browser for all of it (a Chromium start costs seconds); Russian through the editor's own language
 * setting (localStorage "editor-language"), as a user picks it under Settings.
 */
const ARTIFACTS = join(__dirname, "..", "..", "test-artifacts", "editor");
const EVENTS = 400;
/** The scraper's login: httpNodeAuth guards all of httpNodeRoot, metricsPath included, as it guards http in. */
const SCRAPER = { username: "scraper", password: "scrape-me" };
const bcrypt = require("bcryptjs") as { hashSync(text: string, rounds: number): string };

/** A drain slow enough to watch: 2 requests/s after a small burst, 10 events per get. */
function flows(sandbox: Sandbox): FlowNode[] {
  return [
    { id: "t1", type: "tab", label: "Drain" },
    { id: "t2", type: "tab", label: "Faulty" },
    sandboxPortal(sandbox, { rateLimit: 2, rateBurst: 6, metricsPath: "/bitrix24/metrics" }),
    {
      id: "go",
      type: "inject",
      z: "t1",
      x: 120,
      y: 80,
      name: "start",
      once: true,
      onceDelay: 0.5,
      repeat: "",
      wires: [["g1"]],
    },
    {
      id: "g1",
      type: "bitrix24-offline-get",
      z: "t1",
      x: 320,
      y: 80,
      name: "drain deals",
      portal: PORTAL_ID,
      limit: 10,
      mode: "ack",
      wires: [["c1"], [], []],
    },
    { id: "c1", type: "bitrix24-offline-clear", z: "t1", x: 540, y: 80, portal: PORTAL_ID, by: "id", wires: [[]] },
    // on another tab, so that the reveal link visibly takes the editor there
    {
      id: "bad",
      type: "inject",
      z: "t2",
      x: 120,
      y: 80,
      name: "bad limit",
      once: false,
      repeat: "",
      props: [{ p: "limit", v: "-1", vt: "num" }],
      wires: [["g2"]],
    },
    {
      id: "g2",
      type: "bitrix24-offline-get",
      z: "t2",
      name: "faulty get",
      portal: PORTAL_ID,
      limit: 10,
      wires: [[], [], []],
    },
  ];
}

async function openEditor(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.locator('.red-ui-palette-node[data-palette-type="bitrix24-offline-get"]').waitFor({ timeout: 60000 });
}

/** Clicks the sidebar's Bitrix24 tab as a user does (from the tab bar, or its overflow menu when crowded). */
async function openTab(page: Page): Promise<void> {
  // Node-RED 4: a labelled tab in the sidebar's tab bar; Node-RED 5: an icon button in the sidebars' tab bar
  const tab = page.locator('#red-ui-tab-bitrix24-ops, button[data-tab-id="bitrix24-ops"]').first();
  await tab.waitFor({ state: "attached", timeout: 30000 });
  // Node-RED 5 restores the tab shown last: a click on the active tab would hide it again
  if (await page.locator(".b24ops").isVisible()) return;
  if (await tab.isVisible()) await tab.click();
  else
    await page.evaluate(() =>
      (globalThis as unknown as { RED: { sidebar: { show(id: string): void } } }).RED.sidebar.show("bitrix24-ops"),
    );
  await page.locator(".b24ops").waitFor({ timeout: 30000 });
}

function deliveredPoints(page: Page): Promise<string> {
  return page
    .locator("polyline.b24ops-delivered")
    .first()
    .getAttribute("points")
    .then((p) => p ?? "");
}

/** True when some point of the line lies above the chart's floor (y = 60): something was delivered. */
function risen(points: string): boolean {
  return points.split(" ").some((pair) => Number(pair.split(",")[1]) < 59.9);
}

describe("the editor's Bitrix24 sidebar in a real browser", function () {
  this.timeout(180000);
  let sandbox: Sandbox;
  let nodeRed: NodeRedProcess;
  let browser: OpenBrowser;

  before(async () => {
    findChromium();
    mkdirSync(ARTIFACTS, { recursive: true });
    sandbox = await startSandbox({ events: EVENTS });
    nodeRed = await startNodeRed(freshUserDir("sidebar"), {
      settings: { httpNodeAuth: { user: SCRAPER.username, pass: bcrypt.hashSync(SCRAPER.password, 4) } },
    });
    browser = await launchChromium({ locale: "en-US", viewport: { width: 1600, height: 1000 } });
  });

  after(async () => {
    await browser?.close();
    await nodeRed?.stop();
    await sandbox?.close();
  });

  it("en-US: the tab shows the portal, its chart moves while the sandbox drains, an error reveals its node", async () => {
    const page = await browser.context.newPage();
    await openEditor(page, nodeRed.url);
    await openTab(page);
    // nothing deployed yet: the tab says so in plain words
    should(await page.locator(".b24ops-empty").textContent()).match(/No Bitrix24 portal in use/);
    await page
      .locator(".b24ops-portal")
      .waitFor({ state: "detached" })
      .catch(() => undefined);

    await nodeRed.deploy(flows(sandbox));
    // the editor only offers to load flows deployed behind its back: load them, as a user would
    await openEditor(page, nodeRed.url);
    await openTab(page);
    const portal = page.locator(`.b24ops-portal[data-portal="${PORTAL_ID}"]`);
    await portal.waitFor({ timeout: 30000 });
    should(await portal.locator(".b24ops-name").textContent()).equal("Sandbox portal");

    // the drain runs at the portal's 2 requests/s: the chart rises, and moves from one second to the next
    await until(async () => risen(await deliveredPoints(page)), "the delivered line to rise", 30000);
    const before = await deliveredPoints(page);
    await until(async () => (await deliveredPoints(page)) !== before, "the chart to move", 15000);
    should(sandbox.stats().queue.total).be.above(0); // it moved while the sandbox was still draining
    await until(
      async () => /of 6/.test((await portal.locator(".b24ops-facts").textContent()) ?? ""),
      "the bucket's fill",
      10000,
    );
    const legend = (await portal.locator(".b24ops-legend").textContent()) ?? "";
    should(legend)
      .match(/delivered [\d.]+\/s/)
      .and.match(/acknowledged [\d.]+\/s/)
      .and.match(/bound 20\/s \(2 requests\/s\)/);
    const nodes = portal.locator(".b24ops-nodes");
    await until(async () => /drain deals/.test((await nodes.textContent()) ?? ""), "the get node's row", 10000);
    should(await nodes.locator('[data-node="g1"] .b24ops-pair-label').allTextContents()).eql([
      "in flight",
      "unacked",
      "redelivered",
      "dead-lettered",
      "unchanged",
      "last drain",
    ]);
    // the queue's depth: one event.offline.list, while the tab is open
    await until(
      async () => Number(await portal.locator(".b24ops-queue-number").textContent()) > 0,
      "the queue's depth",
      20000,
    );
    await page.screenshot({ path: join(ARTIFACTS, "10-sidebar-draining.png") });

    // an error: the faulty get node refuses msg.limit = -1; the sidebar lists it with its code and a link
    await axios.post(`${nodeRed.url}/inject/bad`);
    const error = portal.locator(".b24ops-error-item").first();
    await error.waitFor({ timeout: 15000 });
    should(await error.locator(".b24ops-code").textContent()).equal("INVALID_ARGUMENT");
    const active = () =>
      page.evaluate(() =>
        (globalThis as unknown as { RED: { workspaces: { active(): string } } }).RED.workspaces.active(),
      );
    should(await active()).equal("t1");
    await error.locator(".b24ops-reveal").click();
    // the link takes the editor to the node's flow and makes the node flash
    await until(async () => (await active()) === "t2", "the faulty node's flow shown", 10000);
    // (Node-RED 4 marks the node's rectangle, Node-RED 5 the node's group)
    await page
      .locator('g[id="g2"] .red-ui-flow-node-highlighted, g[id="g2"].red-ui-flow-node-highlighted')
      .first()
      .waitFor({ timeout: 5000 });
    await page.screenshot({ path: join(ARTIFACTS, "11-sidebar-error-revealed.png") });

    // the drain finishes: every event acknowledged, and the counts say so
    await until(() => sandbox.stats().queue.total === 0, "the drain to finish", 120000);
    await until(
      async () => new RegExp(`\\b${EVENTS}\\b`).test((await nodes.locator('[data-node="g1"]').textContent()) ?? ""),
      "the last drain's row",
      15000,
    ).catch(() => undefined); // the row shows the LAST drain's count, which may be a tail: not the point here
    const anonymous = await axios.get(`${nodeRed.url}/bitrix24/metrics`, { validateStatus: () => true });
    should(anonymous.status).equal(401);
    const metrics = (await axios.get(`${nodeRed.url}/bitrix24/metrics`, { auth: SCRAPER })).data as string;
    should(metrics).match(new RegExp(`bitrix24_events_acked_total\\{[^}]*node="g1"[^}]*\\} ${EVENTS}\\n`));
    await page.close();
  });

  it("ru: the same tab speaks Russian", async () => {
    const page = await browser.context.newPage();
    // the editor's own language setting (Settings > View > Language), which wins over the browser's
    await page.addInitScript(() => localStorage.setItem("editor-language", "ru"));
    await openEditor(page, nodeRed.url);
    await openTab(page);
    const portal = page.locator(`.b24ops-portal[data-portal="${PORTAL_ID}"]`);
    await portal.waitFor();
    const headings = await portal.locator(".b24ops-heading").allTextContents();
    should(headings).eql(["Бюджет времени выполнения по методам (10 минут)", "Узлы получения", "Последние ошибки"]);
    should(await portal.locator(".b24ops-queue-label").textContent()).equal("в очереди");
    should(await portal.locator(".b24ops-legend").textContent()).match(/выдано [\d.]+\/с/);
    should(await portal.locator(".b24ops-reveal").first().getAttribute("title")).equal("Показать узел в потоке");
    // the tab's label (Node-RED 4) or its button's accessible name (Node-RED 5)
    const tab = page.locator('#red-ui-tab-bitrix24-ops, button[data-tab-id="bitrix24-ops"]').first();
    should(`${await tab.textContent()} ${await tab.getAttribute("aria-label")}`).match(/Битрикс24/);
    await page.screenshot({ path: join(ARTIFACTS, "12-sidebar-ru.png") });
    await page.close();
  });
});
