import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { type QueueKey, queueKeyString } from "./instance-registry";

/**
 * The journal's file format and names (process-journal.ts holds what is written when). A journal file is a log:
 * one line per write, each line the WHOLE state (a version 1 journal document); the last complete line wins.
 *
 * One file per queue key AND per instance (`journal-<host>-<hash>@<instanceId>.json`): several Node-RED instances
 * on one machine share the state folder, and each must write only its own file (an append to a file another
 * process replaced would go to a deleted inode). A file whose instance is dead is taken over by renaming it to
 * `...@<taker>+<random>.json` (a rename succeeds once, so two takers never both adopt it). A file without
 * `@<instanceId>` was written by a version before the registry: nobody live owns it.
 */

export type JournalKey = QueueKey;

export interface JournalRecord {
  id: number;
  messageId: string;
  /** How many times the record has been emitted (1 = first delivery). */
  deliveryCount: number;
}

export interface JournalProcess {
  processId: string;
  /** Number of records the get that opened the process returned: the lower bound of a re-select's limit. */
  size: number;
  /** Epoch ms of the last (re)delivery. */
  deliveredAt: number;
  pending: JournalRecord[];
}

export interface JournalFile {
  version: 1;
  key: JournalKey;
  updatedAt: number;
  processes: JournalProcess[];
  /**
   * Epoch ms at which the oldest get of the writer still in flight started (absent: none). Such a get may have
   * held records under a process id that is in no journal yet: neighbours must not take those as orphans.
   */
  fetching?: number;
}

export interface JournalLoadWarning {
  code: "JOURNAL_UNREADABLE";
  file: string;
  /** Where the unreadable file was moved, so nobody loses the evidence. */
  movedTo: string;
  description: string;
}

/** The string that identifies a journal; also what goes into its file name (hashed). */
export const journalKeyString = queueKeyString;

/** Common start of every file name of a key's journals: readable host for people, hash for uniqueness. */
export function journalPrefix(key: JournalKey): string {
  const hash = createHash("sha256").update(journalKeyString(key)).digest("hex").slice(0, 16);
  const host = key.portalHost.toLowerCase().replace(/[^a-z0-9.-]+/g, "_") || "portal";
  return `journal-${host}-${hash}`;
}

/** The instance that owns a journal file of `prefix`; "" for a file from before the registry; undefined: not one. */
export function journalOwner(prefix: string, name: string): string | undefined {
  if (!name.startsWith(prefix) || !name.endsWith(".json")) return undefined;
  const rest = name.slice(prefix.length, -".json".length);
  if (rest === "") return "";
  const m = /^@([A-Za-z0-9_-]+)(\+[a-z0-9]+)?$/.exec(rest);
  return m ? m[1] : undefined;
}

function isRecord(value: unknown): value is JournalRecord {
  const r = value as JournalRecord;
  return (
    typeof r === "object" &&
    r !== null &&
    Number.isSafeInteger(r.id) &&
    typeof r.messageId === "string" &&
    Number.isSafeInteger(r.deliveryCount)
  );
}

/**
 * The last complete line of a journal log. Lines that do not parse are skipped from the end (a torn append);
 * a file without any parseable line throws, like a garbled file.
 */
function lastEntry(text: string): unknown {
  const lines = text.split("\n");
  let firstError: unknown;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i].trim() === "") continue;
    try {
      return JSON.parse(lines[i]);
    } catch (err) {
      firstError ??= err;
    }
  }
  throw firstError ?? new Error("the journal is empty");
}

/** A journal's state: its processes and the start of its writer's oldest get in flight. Throws on a bad file. */
export function parseJournal(text: string, key: JournalKey): { processes: JournalProcess[]; fetching?: number } {
  const data = lastEntry(text) as Partial<JournalFile>;
  if (data.version !== 1 || !Array.isArray(data.processes)) throw new Error("not a version 1 journal");
  if (!data.key || journalKeyString(data.key as JournalKey) !== journalKeyString(key)) {
    throw new Error("the journal belongs to another portal, application, connector or error flag");
  }
  const processes = data.processes
    .filter((p): p is JournalProcess => typeof p?.processId === "string" && p.processId !== "")
    .map((p) => ({
      processId: p.processId,
      size: Number.isSafeInteger(p.size) && p.size > 0 ? p.size : 0,
      deliveredAt: Number.isFinite(p.deliveredAt) ? p.deliveredAt : 0,
      pending: Array.isArray(p.pending) ? p.pending.filter(isRecord) : [],
    }));
  return Number.isFinite(data.fetching) ? { processes, fetching: data.fetching } : { processes };
}

/** Replaces `file` atomically and durably: temp file, fsync, rename, fsync of the directory. */
export async function writeFileDurably(dir: string, file: string, text: string | Buffer): Promise<void> {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  const handle = await fs.open(tmp, "w", 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await syncDirectory(dir);
}

export async function syncDirectory(dir: string): Promise<void> {
  // A rename is durable only once the directory entry is; some platforms refuse fsync on a directory.
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, "r");
    await handle.sync();
  } catch {
    // best effort
  } finally {
    await handle?.close();
  }
}

/** Reads a journal file; an unreadable one is moved aside (kept for inspection) and reported. */
export async function readJournalFile(
  file: string,
  key: JournalKey,
): Promise<{ processes: JournalProcess[]; fetching?: number; warning?: JournalLoadWarning }> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { processes: [] };
    throw err;
  }
  try {
    return parseJournal(text, key);
  } catch (err) {
    // Keep the unreadable file for inspection; the orphan sweep finds the records it named.
    const movedTo = `${file}.unreadable-${Date.now()}`;
    await fs.rename(file, movedTo).catch(() => undefined);
    const description = err instanceof Error ? err.message : String(err);
    return { processes: [], warning: { code: "JOURNAL_UNREADABLE", file, movedTo, description } };
  }
}

/** The journal files of a key in `dir`, with their owners ("" = from before the registry). */
export async function journalFiles(dir: string, key: JournalKey): Promise<Array<{ file: string; owner: string }>> {
  const prefix = journalPrefix(key);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const owner = journalOwner(prefix, name);
    return owner === undefined ? [] : [{ file: join(dir, name), owner }];
  });
}
