import type { IncomingMessage } from "node:http";

/** A body that could not be read, with the HTTP status to answer. */
export class BodyReadError extends Error {
  constructor(
    readonly status: 400 | 413 | 415,
    message: string,
  ) {
    super(message);
    this.name = "BodyReadError";
  }
}

/**
 * Reads a request body as UTF-8 text, refusing more than `limit` bytes (413) — by its Content-Length before
 * reading anything, or as soon as the stream passes the limit — and compressed bodies (415), which no portal
 * sends. On refusal the rest of the stream is drained so the client still receives the answer.
 */
export function readLimitedBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    if (req.readableEnded) {
      // Someone else read the stream and kept nothing we recognise: waiting for "end" would hang forever.
      reject(new BodyReadError(400, "the body was already consumed by another middleware"));
      return;
    }
    const encoding = String(req.headers["content-encoding"] ?? "identity").toLowerCase();
    if (encoding !== "identity") {
      req.resume();
      reject(new BodyReadError(415, `unsupported content encoding "${encoding}"`));
      return;
    }
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      reject(new BodyReadError(413, `body of ${declared} bytes exceeds the limit of ${limit}`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    const onData = (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(new BodyReadError(413, `body exceeds the limit of ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.once("end", () => {
      if (!failed) resolve(Buffer.concat(chunks).toString("utf8"));
    });
    req.once("error", (err) => {
      if (failed) return;
      failed = true;
      reject(new BodyReadError(400, `the body could not be read: ${err.message}`));
    });
    req.once("aborted", () => {
      if (failed) return;
      failed = true;
      reject(new BodyReadError(400, "the client aborted the request"));
    });
  });
}
