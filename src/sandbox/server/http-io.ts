import type { IncomingMessage, ServerResponse } from "node:http";
import { type Params, parsePhpQuery } from "../php/php-params";

/** Reading requests and writing JSON answers, shared by the REST, OAuth and control routes. */

const MAX_BODY_BYTES = 64 * 1024 * 1024;

export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error("body too large"));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/** Query string first, then the body (JSON or PHP-style form) on top, as PHP's $_REQUEST merges them. */
export function requestParams(query: string, body: string, contentType: string | undefined): Params {
  const params: Params = parsePhpQuery(query);
  const trimmed = body.trim();
  if (!trimmed) return params;
  if ((contentType ?? "").includes("json") || trimmed.startsWith("{")) {
    try {
      const parsed: unknown = JSON.parse(trimmed);
      if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) {
        Object.assign(params, parsed);
      }
      return params;
    } catch {
      // A body that is not JSON is read as a form, the way PHP would see it.
    }
  }
  Object.assign(params, parsePhpQuery(trimmed));
  return params;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}
