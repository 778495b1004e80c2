"use strict";
// The flows every kind of test and the benchmark build: this package's nodes as a user wires them, with the
// property names of DESIGN.md. Plain CommonJS so that both the benchmark (plain .mjs on the build) and the
// tests (TypeScript through tsx) import the same file; the types are in flows.d.cts.

/** Credentials of a bitrix24-portal config node for the sandbox's OAuth application (start tokens). */
function portalCredentials(sandbox, extra = {}) {
  const c = sandbox.credentials;
  return {
    clientId: c.clientId,
    clientSecret: c.clientSecret,
    accessToken: c.accessToken,
    refreshToken: c.refreshToken,
    applicationToken: c.applicationToken,
    ...extra,
  };
}

/** The `auth` of a core client with the sandbox's OAuth application and start tokens. */
function sandboxAuth(sandbox, oauthServer = sandbox.oauthUrl) {
  const c = sandbox.credentials;
  return {
    type: "oauth",
    clientId: c.clientId,
    clientSecret: c.clientSecret,
    accessToken: c.accessToken,
    refreshToken: c.refreshToken,
    oauthServer,
  };
}

/** A bitrix24-portal config node "p" on the sandbox, its OAuth server the sandbox too; `extra` wins. */
function portalConfig(sandbox, extra = {}) {
  return {
    id: "p",
    type: "bitrix24-portal",
    portalUrl: sandbox.url,
    authType: "oauth",
    oauthServer: sandbox.url,
    rateLimit: 100,
    rateBurst: 100,
    ...extra,
  };
}

/** A get node's properties as the editor saves them: ack mode, one msg per event, drain until empty. */
const GET_NODE = Object.freeze({
  type: "bitrix24-offline-get",
  limit: 50,
  mode: "ack",
  filter: "",
  order: "",
  errorRecords: false,
  authConnector: "",
  output: "event",
  drain: true,
  maxInFlight: 500,
  ackTimeout: 300,
  maxDeliveries: 3,
});

/** A get node on portal "p" (GET_NODE); `over` wins (id, wires, z, portal, ...). */
function getNode(over = {}) {
  return { ...GET_NODE, portal: "p", ...over };
}

/** A clear node on portal "p", by record id; `over` wins. */
function clearNode(over = {}) {
  return { type: "bitrix24-offline-clear", portal: "p", by: "id", ...over };
}

/** A trigger node on portal "p" that fires only when told to: no endpoint, no poll, nothing on deploy. */
function triggerNode(over = {}) {
  return {
    type: "bitrix24-offline-trigger",
    portal: "p",
    path: "",
    interval: 0,
    onDeploy: false,
    bindEvents: "",
    publicUrl: "",
    ...over,
  };
}

/** A list node on portal "p": the whole queue, every page. */
function listNode(over = {}) {
  return { type: "bitrix24-offline-list", portal: "p", filter: "", order: "", allPages: true, ...over };
}

module.exports = { GET_NODE, clearNode, getNode, listNode, portalConfig, portalCredentials, sandboxAuth, triggerNode };
