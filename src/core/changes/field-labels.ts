import type { BatchOutcome } from "../client/client";
import type { ObjectRef } from "../entities/entity-reads";
import type { Bitrix24Error } from "../rest/errors";
import { isJsonObject } from "../rest/json-object";
import type { BatchCommand } from "../rest/types";
import type { Changes } from "./compare";

/**
 * Readable values of list fields (issue 21): `beforeLabel` / `afterLabel` for a changed stage, status, source or
 * enumeration user field, from the portal's field metadata: `<entity>.fields` says which fields are lists
 * (`items` inline for enumeration user fields, `values` for task enums, `statusType` for CRM directories) and
 * `crm.status.list` with `ENTITY_ID` gives a directory (DEAL_STAGE, DEAL_STAGE_<category> for deal pipelines,
 * DYNAMIC_<type>_STAGE_<category> for smart-process pipelines, STATUS, SOURCE, ...). Read once per node and
 * cached; a directory is read again when a value it does not know turns up (a stage added since), once per such
 * value: one still unknown after that is not asked about again. Labels are a convenience: a failed read leaves
 * them out and never holds an event back.
 */

type ListField = { kind: "values"; labels: Map<string, string> } | { kind: "status"; statusType: string };

/** A metadata read that failed is tried again after this long. */
const RETRY_MS = 10 * 60_000;

export interface LabelTarget {
  ref: ObjectRef;
  /** The object as read now (category ids come from it). */
  entity: Record<string, unknown>;
  changes: Changes;
}

/** `crm.deal.list` → `crm.deal.fields`, `tasks.task.list` → `tasks.task.getfields`; user.get has no list fields. */
export function fieldsCommandOf(ref: ObjectRef): BatchCommand | undefined {
  const { method } = ref.rule;
  if (method === "user.get") return undefined;
  if (method === "tasks.task.list") return { method: "tasks.task.getfields" };
  if (!method.endsWith(".list")) return undefined;
  const params: Record<string, unknown> = {};
  if (ref.rule.typeParam && ref.typeId !== undefined) params[ref.rule.typeParam] = ref.typeId;
  return { method: `${method.slice(0, -".list".length)}.fields`, params };
}

function sameParams(a: BatchCommand, b: BatchCommand): boolean {
  return JSON.stringify(a.params ?? {}) === JSON.stringify(b.params ?? {});
}

function typeKeyOf(ref: ObjectRef): string {
  return `${ref.rule.method}:${ref.typeId ?? ""}`;
}

function labelMap(raw: unknown): Map<string, string> | undefined {
  const labels = new Map<string, string>();
  if (Array.isArray(raw)) {
    for (const item of raw) {
      if (isJsonObject(item) && item.ID !== undefined && item.VALUE !== undefined) {
        labels.set(String(item.ID), String(item.VALUE));
      }
    }
  } else if (isJsonObject(raw)) {
    for (const [k, v] of Object.entries(raw))
      if (typeof v === "string" || typeof v === "number") labels.set(k, String(v));
  } else {
    return undefined;
  }
  return labels;
}

/** The list fields of a `*.fields` answer (crm.item.fields and tasks.task.getfields nest them under `fields`). */
export function listFieldsOf(result: unknown): Map<string, ListField> {
  const out = new Map<string, ListField>();
  const fields = isJsonObject(result) && isJsonObject(result.fields) ? result.fields : result;
  if (!isJsonObject(fields)) return out;
  for (const [name, def] of Object.entries(fields)) {
    if (!isJsonObject(def)) continue;
    const values = labelMap(def.items) ?? labelMap(def.values);
    if (values && values.size > 0) {
      out.set(name, { kind: "values", labels: values });
      continue;
    }
    const statusType = typeof def.statusType === "string" ? def.statusType : undefined;
    if (def.type === "crm_status" && statusType) out.set(name, { kind: "status", statusType });
    else if (def.type === "crm_status" && /^stageId$/i.test(name)) out.set(name, { kind: "status", statusType: "" });
  }
  return out;
}

/** `stageId` → `STAGE_ID`: tasks.task.getFields names fields in UPPER_CASE, tasks.task.list answers camelCase. */
function upperSnake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
}

/** The list field a changed field is, under its own name or its UPPER_CASE one. */
function listFieldOf(fields: Map<string, ListField>, name: string): ListField | undefined {
  return fields.get(name) ?? fields.get(upperSnake(name));
}

function categoryOf(entity: Record<string, unknown>): string {
  const v = entity.CATEGORY_ID ?? entity.categoryId;
  return v === undefined || v === null || v === "" ? "0" : String(v);
}

/** The directory (crm.status.list ENTITY_ID) of a status field of this object. */
export function directoryOf(
  ref: ObjectRef,
  field: string,
  statusType: string,
  entity: Record<string, unknown>,
): string {
  if (ref.rule.method === "crm.item.list" && /^stageId$/i.test(field) && ref.typeId !== undefined) {
    return `DYNAMIC_${ref.typeId}_STAGE_${categoryOf(entity)}`;
  }
  if (statusType === "DEAL_STAGE") {
    const category = categoryOf(entity);
    return category === "0" ? "DEAL_STAGE" : `DEAL_STAGE_${category}`;
  }
  return statusType;
}

/** A value's label; a multiple field's values joined by ", " (only when every value has one). */
function labelOf(labels: Map<string, string>, value: unknown): string | undefined {
  if (value === null || value === undefined || value === "") return undefined;
  if (Array.isArray(value)) {
    const parts = value.map((v) => labels.get(String(v)));
    return parts.length > 0 && parts.every((p) => p !== undefined) ? parts.join(", ") : undefined;
  }
  return labels.get(String(value));
}

export class FieldLabels {
  /** Per object type: its list fields; null while a failed read waits for its retry. */
  private readonly types = new Map<string, { fields: Map<string, ListField> | null; at: number }>();
  private readonly directories = new Map<
    string,
    {
      labels: Map<string, string> | null;
      at: number;
      /** Values a re-read did not find either (a deleted stage): not worth another read. */
      missing: Set<string>;
    }
  >();
  /** Commands handed out and not yet absorbed: what each one reads. */
  private readonly asked = new Map<string, { type: string } | { dir: string; unknown: string[] }>();
  private keys = 0;

  constructor(
    /** Watched fields (empty = all): only their directories are worth reading ahead. */
    private readonly watch: readonly string[] = [],
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Reads that can ride along with the reads of these objects, before any change is known: the field metadata of
   * their types, and the directories of list fields that do not depend on the object (not pipeline stages, except
   * the default deal pipeline's). What a change needs beyond them, needs() asks for.
   */
  preload(refs: readonly ObjectRef[]): Record<string, BatchCommand> {
    const commands: Record<string, BatchCommand> = {};
    const now = this.now();
    const seen = new Set<string>();
    for (const ref of refs) {
      const typeKey = typeKeyOf(ref);
      if (seen.has(typeKey)) continue;
      seen.add(typeKey);
      const type = this.types.get(typeKey);
      if (!type || (type.fields === null && now - type.at > RETRY_MS)) {
        this.askType(commands, ref, typeKey);
        continue;
      }
      for (const [name, field] of type.fields ?? []) {
        if (field.kind !== "status" || (this.watch.length > 0 && !this.watch.includes(name))) continue;
        if (ref.rule.method === "crm.item.list" && /^stageId$/i.test(name)) continue;
        const dir = field.statusType;
        if (dir && !this.directories.has(dir)) this.askDirectory(commands, dir);
      }
    }
    return commands;
  }

  /**
   * The reads these changes' labels still need: first the types' field metadata, then (once known) the
   * directories. Call again after absorb() until it returns nothing (two requests at most, on first use).
   */
  needs(targets: readonly LabelTarget[]): Record<string, BatchCommand> {
    const commands: Record<string, BatchCommand> = {};
    const now = this.now();
    for (const t of targets) {
      const typeKey = typeKeyOf(t.ref);
      const type = this.types.get(typeKey);
      if (!type || (type.fields === null && now - type.at > RETRY_MS)) {
        this.askType(commands, t.ref, typeKey);
        continue;
      }
      if (!type.fields) continue;
      for (const [name, change] of Object.entries(t.changes)) {
        const field = listFieldOf(type.fields, name);
        if (field?.kind !== "status") continue;
        const dir = directoryOf(t.ref, name, field.statusType, t.entity);
        if (!dir) continue;
        const known = this.directories.get(dir);
        const unknown = [change.before, change.after]
          .flat()
          .filter((v): v is string | number => typeof v === "string" || typeof v === "number")
          .map(String)
          .filter((v) => v !== "" && !known?.labels?.has(v) && !known?.missing.has(v));
        const due = !known || (known.labels === null ? now - known.at > RETRY_MS : unknown.length > 0);
        if (due) this.askDirectory(commands, dir, unknown);
      }
    }
    return commands;
  }

  /** Takes the answers of preload()'s or needs()' commands (a failed read is remembered as such, and retried later). */
  absorb(commands: Record<string, BatchCommand>, outcome: BatchOutcome | Bitrix24Error): void {
    const now = this.now();
    for (const key of Object.keys(commands)) {
      const asked = this.asked.get(key);
      if (!asked) continue;
      this.asked.delete(key);
      const ok = !(outcome instanceof Error) && !outcome.errors[key] && key in outcome.result;
      const result = ok ? (outcome as BatchOutcome).result[key] : undefined;
      if ("dir" in asked) {
        let labels: Map<string, string> | null = null;
        if (ok && Array.isArray(result)) {
          labels = new Map();
          for (const row of result) {
            if (isJsonObject(row) && row.STATUS_ID !== undefined)
              labels.set(String(row.STATUS_ID), String(row.NAME ?? ""));
          }
        }
        // Values the read was for and did not find: never read again for them (a stage deleted since).
        const missing = new Set(labels ? asked.unknown.filter((v) => !labels?.has(v)) : []);
        for (const v of this.directories.get(asked.dir)?.missing ?? []) if (!labels?.has(v)) missing.add(v);
        this.directories.set(asked.dir, { labels, at: now, missing });
      } else {
        this.types.set(asked.type, { fields: ok ? listFieldsOf(result) : null, at: now });
      }
    }
  }

  /** A request that failed before its answers came (the stage reads again) leaves its keys here: keep it small. */
  private nextKey(): string {
    if (this.asked.size > 1000) this.asked.clear();
    return `labels_${this.keys++}`;
  }

  private askType(commands: Record<string, BatchCommand>, ref: ObjectRef, typeKey: string): void {
    const command = fieldsCommandOf(ref);
    if (!command) {
      this.types.set(typeKey, { fields: new Map(), at: this.now() });
      return;
    }
    if (Object.values(commands).some((c) => c.method === command.method && sameParams(c, command))) return;
    const key = this.nextKey();
    this.asked.set(key, { type: typeKey });
    commands[key] = command;
  }

  private askDirectory(commands: Record<string, BatchCommand>, dir: string, unknown: string[] = []): void {
    if (
      Object.values(commands).some((c) => (c.params?.filter as { ENTITY_ID?: string } | undefined)?.ENTITY_ID === dir)
    ) {
      return;
    }
    const key = this.nextKey();
    this.asked.set(key, { dir, unknown });
    commands[key] = { method: "crm.status.list", params: { filter: { ENTITY_ID: dir } } };
  }

  /** Puts beforeLabel / afterLabel on the changes of list fields whose labels are known. */
  label(t: LabelTarget): void {
    const fields = this.types.get(typeKeyOf(t.ref))?.fields;
    if (!fields) return;
    for (const [name, change] of Object.entries(t.changes)) {
      const field = listFieldOf(fields, name);
      if (!field) continue;
      const dir =
        field.kind === "status"
          ? this.directories.get(directoryOf(t.ref, name, field.statusType, t.entity))
          : undefined;
      const labels = field.kind === "values" ? field.labels : dir?.labels;
      if (!labels) continue;
      const before = labelOf(labels, change.before);
      const after = labelOf(labels, change.after);
      if (before !== undefined) change.beforeLabel = before;
      if (after !== undefined) change.afterLabel = after;
    }
  }
}
