// The flows the demo (and the end-to-end tests) deploy: each example in its own tab, all sharing ONE
// bitrix24-portal config pointed at a running sandbox, with the sandbox's credentials.
const { readFileSync } = require("node:fs");
const { isAbsolute, join } = require("node:path");

const EXAMPLES = [
  "basic-sync",
  "deal-sync",
  "entity-sync",
  "stage-changes",
  "deal-export",
  "push",
  "error-replay",
  "queue-monitor",
];
const PORTAL_ID = "b24-sandbox-portal";

/** The nodes of one examples/<name>.json file, as shipped. */
function readExample(name) {
  return JSON.parse(readFileSync(join(__dirname, "..", "examples", `${name}.json`), "utf8"));
}

/**
 * options: sandboxUrl, oauthUrl (the sandbox's OAuth server, its own address as oauth.bitrix.info is; default
 * sandboxUrl, whose /oauth/token/ takes the start credentials), credentials (the sandbox's), publicUrl (where the sandbox reaches Node-RED, for push
 * bindings), examples (names, default all), inlineCredentials (true: credentials inside the portal node, as
 * POST /flows takes them; false: returned apart, as flows_cred.json holds them unencrypted), portal (property
 * overrides for the portal node, e.g. rateLimit), installPath (the portal node's installation endpoint: the
 * application token then comes from the sandbox's installation POST, not from the credentials), fileDir (where
 * the file nodes' relative paths point, instead of Node-RED's working directory).
 */
function demoFlow({
  sandboxUrl,
  oauthUrl = sandboxUrl,
  credentials,
  publicUrl,
  examples = EXAMPLES,
  inlineCredentials = false,
  portal = {},
  fileDir,
  installPath,
}) {
  const flows = [];
  let portalNode;
  for (const name of examples) {
    const tab = `tab-${name}`;
    flows.push({ id: tab, type: "tab", label: `Bitrix24: ${name.replace("-", " ")}`, disabled: false, info: "" });
    for (const node of readExample(name)) {
      if (node.type === "bitrix24-portal") {
        if (node.id !== PORTAL_ID) throw new Error(`examples/${name}.json: the portal node must be ${PORTAL_ID}`);
        portalNode = { ...node, portalUrl: sandboxUrl, oauthServer: oauthUrl, ...portal };
        if (installPath) portalNode.installPath = installPath;
        continue;
      }
      if (node.type === "bitrix24-offline-trigger" && node.publicUrl) node.publicUrl = publicUrl;
      if (node.type === "file" && fileDir && node.filename && !isAbsolute(node.filename)) {
        node.filename = join(fileDir, node.filename);
      }
      flows.push({ ...node, z: tab });
    }
  }
  if (!portalNode) throw new Error(`no bitrix24-portal node in examples ${examples.join(", ")}`);
  const portalCredentials = {
    clientId: credentials.clientId,
    clientSecret: credentials.clientSecret,
    accessToken: credentials.accessToken,
    refreshToken: credentials.refreshToken,
    applicationToken: credentials.applicationToken,
  };
  if (installPath) delete portalCredentials.applicationToken;
  if (inlineCredentials) portalNode.credentials = portalCredentials;
  flows.push(portalNode);
  return { flows, credentials: inlineCredentials ? {} : { [PORTAL_ID]: portalCredentials } };
}

module.exports = { demoFlow, readExample, EXAMPLES, PORTAL_ID };
