import type { Sandbox } from "../../src/sandbox";
import type { FlowNode } from "./node-red-process";

/** scripts/demo-flow.cjs is the one place that turns examples/*.json into deployable flows (demo and tests). */
interface DemoFlowModule {
  demoFlow(options: {
    sandboxUrl: string;
    credentials: Sandbox["credentials"];
    publicUrl?: string;
    examples?: string[];
    inlineCredentials?: boolean;
    portal?: Record<string, unknown>;
  }): { flows: FlowNode[] };
  readExample(name: string): FlowNode[];
  EXAMPLES: string[];
  PORTAL_ID: string;
}

const demo = require("../../scripts/demo-flow.cjs") as DemoFlowModule;
export const EXAMPLES = demo.EXAMPLES;
export const PORTAL_ID = demo.PORTAL_ID;
export const readExample = demo.readExample;

/** One example, its portal pointed at the sandbox, credentials inline (as POST /flows takes them). */
export function exampleFlow(
  name: string,
  sandbox: Sandbox,
  options: { publicUrl?: string; portal?: Record<string, unknown> } = {},
): FlowNode[] {
  return demo.demoFlow({
    sandboxUrl: sandbox.url,
    credentials: sandbox.credentials,
    publicUrl: options.publicUrl,
    examples: [name],
    inlineCredentials: true,
    portal: options.portal,
  }).flows;
}

/** The portal config node alone, for flows the tests build themselves. */
export function sandboxPortal(sandbox: Sandbox, overrides: Record<string, unknown> = {}): FlowNode {
  const { clientId, clientSecret, accessToken, refreshToken, applicationToken } = sandbox.credentials;
  return {
    id: PORTAL_ID,
    type: "bitrix24-portal",
    name: "Sandbox portal",
    portalUrl: sandbox.url,
    authType: "oauth",
    oauthServer: sandbox.url,
    rateLimit: 2,
    rateBurst: 50,
    instances: 1,
    timeout: 30,
    ...overrides,
    credentials: { clientId, clientSecret, accessToken, refreshToken, applicationToken },
  };
}

export async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 60000,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
