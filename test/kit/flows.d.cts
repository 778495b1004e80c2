/** Types of flows.cjs (shared by the tests and the benchmark). */
interface SandboxLike {
  url: string;
  oauthUrl?: string;
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
/** A node of a flow: what was given (its id, say) and the type it is known by. */
type Node<T> = T & { type: string; [key: string]: unknown };

export declare function portalConfig<T extends FlowNode = FlowNode>(sandbox: SandboxLike, extra?: T): Node<T>;
export declare const GET_NODE: Readonly<FlowNode>;
export declare function getNode<T extends FlowNode = FlowNode>(over?: T): Node<T>;
export declare function clearNode<T extends FlowNode = FlowNode>(over?: T): Node<T>;
export declare function triggerNode<T extends FlowNode = FlowNode>(over?: T): Node<T>;
export declare function listNode<T extends FlowNode = FlowNode>(over?: T): Node<T>;
export declare function sandboxAuth(
  sandbox: SandboxLike,
  oauthServer?: string,
): {
  type: "oauth";
  clientId: string;
  clientSecret: string;
  accessToken: string;
  refreshToken: string;
  oauthServer: string;
};
