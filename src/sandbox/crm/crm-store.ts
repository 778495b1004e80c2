import { isoFromSeconds } from "../server/rest-time";
import {
  CRM_ENTITY_NAMES,
  type CrmEntity,
  type CrmEntityName,
  crmEntities,
  crmView,
  readableFields,
} from "./crm-entities";
import type { Schema } from "./list-query";
import {
  itemSchema,
  itemView,
  seedItemFields,
  seedTaskFields,
  taskSchema,
  taskView,
  userSchema,
  userView,
} from "./object-fields";
import { ObjectTable } from "./object-table";
import { StatusDirectory } from "./status-directory";

/**
 * The sandbox portal's objects: one table per entity, the schemas (per sandbox, because a write may add a
 * user field), and seeding. Seeded objects are the portal's existing data: seeding queues no events.
 */

/** Every kind of object the sandbox holds; "item" is the smart process (entityTypeId 128). */
export type SeedableKind = CrmEntityName | "item" | "task" | "user";

/** How many objects of each kind to seed (the CLI's --deals, --contacts, ... and POST /_sandbox/objects). */
export interface SeedCounts {
  deals?: number;
  contacts?: number;
  leads?: number;
  companies?: number;
  items?: number;
  tasks?: number;
  users?: number;
}

// Companies and contacts first, so seeded deals can point at them.
const SEED_ORDER: readonly [keyof SeedCounts, SeedableKind][] = [
  ["users", "user"],
  ["companies", "company"],
  ["contacts", "contact"],
  ["leads", "lead"],
  ["deals", "deal"],
  ["items", "item"],
  ["tasks", "task"],
];

export function isSeedableKind(name: string): name is SeedableKind {
  return SEED_ORDER.some(([, kind]) => kind === name);
}

export const SEED_FLAGS: readonly (keyof SeedCounts)[] = SEED_ORDER.map(([flag]) => flag);

const DEAL_STAGES = ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "WON", "LOSE"];
const FIRST_NAMES = ["Anna", "Boris", "Clara", "Dmitri", "Elena", "Fedor", "Galina", "Ivan"];
const LAST_NAMES = ["Ivanova", "Petrov", "Smirnova", "Kuznetsov", "Popova", "Sokolov", "Lebedeva", "Kozlov"];

export class CrmStore {
  entities: Record<CrmEntityName, CrmEntity> = crmEntities();
  readonly tables: Record<CrmEntityName, ObjectTable> = {
    deal: new ObjectTable(),
    contact: new ObjectTable(),
    lead: new ObjectTable(),
    company: new ObjectTable(),
  };
  readonly items = new ObjectTable();
  readonly tasks = new ObjectTable();
  readonly users = new ObjectTable();
  /** crm.status.list's directories (stages, statuses, sources). */
  readonly statuses = new StatusDirectory();
  itemSchema: Schema = itemSchema();
  taskSchema: Schema = taskSchema();
  userSchema: Schema = userSchema();
  private multiId = 0;

  constructor() {
    this.addAdministrator();
  }

  readonly nextMultiId = (): number => ++this.multiId;

  /** What crm.<entity>.get would answer for this id, or undefined when there is no such object. */
  get(kind: SeedableKind, id: number): Record<string, unknown> | undefined {
    const row = this.table(kind).get(id);
    if (!row) return undefined;
    if (kind === "item") return itemView(this.itemSchema, row);
    if (kind === "task") return taskView(this.taskSchema, row);
    if (kind === "user") return userView(this.userSchema, row);
    const entity = this.entities[kind];
    return crmView(entity, row, readableFields(entity));
  }

  count(kind: SeedableKind): number {
    return this.table(kind).size;
  }

  table(kind: SeedableKind): ObjectTable {
    if (kind === "item") return this.items;
    if (kind === "task") return this.tasks;
    if (kind === "user") return this.users;
    return this.tables[kind];
  }

  /** Adds `count` plausible objects; deals point at seeded contacts and companies when there are some. */
  seed(kind: SeedableKind, count: number): void {
    if (kind === "item" || kind === "task" || kind === "user") {
      this.seedOther(kind, count);
      return;
    }
    const entity = this.entities[kind];
    const table = this.tables[kind];
    const nowSec = Math.floor(Date.now() / 1000);
    const contacts = this.tables.contact.size;
    const companies = this.tables.company.size;
    for (let i = 0; i < count; i++) {
      const row = table.insert({});
      const n = row.id;
      const fields = entity.initial(n, nowSec);
      if (kind === "deal") {
        fields.STAGE_ID = DEAL_STAGES[n % DEAL_STAGES.length];
        fields.OPPORTUNITY = (n * 137) % 100_000;
        if (contacts > 0) fields.CONTACT_ID = 1 + (n % contacts);
        if (companies > 0) fields.COMPANY_ID = 1 + (n % companies);
      } else if (kind === "contact" || kind === "lead") {
        fields.NAME = FIRST_NAMES[n % FIRST_NAMES.length];
        fields.LAST_NAME = LAST_NAMES[(n >> 3) % LAST_NAMES.length];
        fields.EMAIL = [
          { ID: String(this.nextMultiId()), VALUE_TYPE: "WORK", VALUE: `person${n}@example.com`, TYPE_ID: "EMAIL" },
        ];
      }
      entity.derive(fields);
      row.fields = fields;
    }
  }

  private seedOther(kind: "item" | "task" | "user", count: number): void {
    const nowSec = Math.floor(Date.now() / 1000);
    const nowIso = isoFromSeconds(nowSec);
    const table = this.table(kind);
    const users = this.users.size;
    for (let i = 0; i < count; i++) {
      const row = table.insert({});
      const n = row.id;
      if (kind === "item") row.fields = seedItemFields(n, nowSec);
      else if (kind === "task") row.fields = seedTaskFields(n, nowIso, users);
      else {
        row.fields = {
          NAME: FIRST_NAMES[n % FIRST_NAMES.length],
          LAST_NAME: LAST_NAMES[(n >> 3) % LAST_NAMES.length],
          EMAIL: `user${n}@example.com`,
          DATE_REGISTER: nowIso,
        };
      }
    }
  }

  /** User 1, the administrator the webhook and the app's tokens act as. */
  private addAdministrator(): void {
    const now = isoFromSeconds(Math.floor(Date.now() / 1000));
    this.users.insert({
      NAME: "Admin",
      LAST_NAME: "Sandbox",
      EMAIL: "admin@example.com",
      DATE_REGISTER: now,
      IS_ONLINE: "Y",
    });
  }

  seedAll(counts: SeedCounts): void {
    for (const [flag, kind] of SEED_ORDER) {
      const n = Math.floor(Number(counts[flag] ?? 0));
      if (n > 0) this.seed(kind, n);
    }
  }

  /** How many objects each table holds. */
  counts(): Record<SeedableKind, number> {
    return {
      deal: this.count("deal"),
      contact: this.count("contact"),
      lead: this.count("lead"),
      company: this.count("company"),
      item: this.items.size,
      task: this.tasks.size,
      user: this.users.size,
    };
  }

  clear(): void {
    for (const kind of CRM_ENTITY_NAMES) this.tables[kind].clear();
    this.entities = crmEntities();
    for (const table of [this.items, this.tasks, this.users]) table.clear();
    this.itemSchema = itemSchema();
    this.taskSchema = taskSchema();
    this.userSchema = userSchema();
    this.addAdministrator();
    this.multiId = 0;
  }
}
