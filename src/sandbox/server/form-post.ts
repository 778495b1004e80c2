import { type ClientRequest, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

/**
 * A POST the way a portal sends its own calls out (ONOFFLINEEVENT pushes, installation POSTs): a PHP-style form
 * body and the portal's User-Agent. The caller listens for the answer and ends the request with the body.
 */
export function portalFormPost(url: URL, body: string, timeoutMs: number): ClientRequest {
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  const req = send(url, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "content-length": Buffer.byteLength(body),
      "user-agent": "Bitrix24 Webhook Engine",
    },
    timeout: timeoutMs,
  });
  req.on("timeout", () => req.destroy(new Error("timeout")));
  return req;
}
