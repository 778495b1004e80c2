/** Types of flows.cjs (shared by the tests and the benchmark). */
interface SandboxLike {
  url: string;
  credentials: {
    clientId: string;
    clientSecret: string;
    accessToken: string;
    refreshToken: string;
    applicationToken: string;
  };
}

export type FlowNode = Record<string, unknown>;

export interface PortalCredentials {
  clientId: string;
  clientSecret: string;
  accessToken: string;
  refreshToken: string;
  applicationToken: string;
  [key: string]: string;
}

export declare function portalCredentials(sandbox: SandboxLike, extra?: Record<string, string>): PortalCredentials;
export declare function portalConfig(sandbox: SandboxLike, extra?: FlowNode): FlowNode;
export declare const GET_NODE: Readonly<FlowNode>;
export declare function getNode(over?: FlowNode): FlowNode;
export declare function clearNode(over?: FlowNode): FlowNode;
