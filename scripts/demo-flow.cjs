// The flows the demo (and the end-to-end tests) deploy: every example in its own tab, all sharing one
// bitrix24-portal config pointed at a running sandbox, with the sandbox's credentials.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const EXAMPLES = ["basic-sync", "push", "error-replay", "queue-monitor"];
const PORTAL_ID = "b24-sandbox-portal";

function demoFlow({ sandboxUrl, credentials, publicUrl, examples = EXAMPLES }) {
  const flows = [];
  let portal;
  for (const name of examples) {
    const tab = `tab-${name}`;
    flows.push({ id: tab, type: "tab", label: `Bitrix24: ${name.replace("-", " ")}`, disabled: false, info: "" });
    for (const node of JSON.parse(readFileSync(join(__dirname, "..", "examples", `${name}.json`), "utf8"))) {
      if (node.type === "bitrix24-portal") {
        portal = { ...node, portalUrl: sandboxUrl, oauthServer: sandboxUrl };
        continue;
      }
      if (node.type === "bitrix24-offline-trigger" && node.publicUrl) node.publicUrl = publicUrl;
      flows.push({ ...node, z: tab });
    }
  }
  flows.push(portal);
  return {
    flows,
    credentials: {
      [PORTAL_ID]: {
        clientId: credentials.clientId,
        clientSecret: credentials.clientSecret,
        accessToken: credentials.accessToken,
        refreshToken: credentials.refreshToken,
        applicationToken: credentials.applicationToken,
      },
    },
  };
}

module.exports = { demoFlow, EXAMPLES, PORTAL_ID };
