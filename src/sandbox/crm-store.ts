import {
  CRM_ENTITY_NAMES,
  type CrmEntity,
  type CrmEntityName,
  crmEntities,
  crmView,
  readableFields,
} from "./crm-entities";
import { ObjectTable } from "./object-table";

/**
 * The sandbox portal's objects: one table per entity, the schemas (per sandbox, because a write may add a
 * user field), and seeding. Seeded objects are the portal's existing data: seeding queues no events.
 */

export type SeedableKind = CrmEntityName;

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
  private multiId = 0;

  readonly nextMultiId = (): number => ++this.multiId;

  /** What crm.<entity>.get would answer for this id, or undefined when there is no such object. */
  get(kind: CrmEntityName, id: number): Record<string, unknown> | undefined {
    const entity = this.entities[kind];
    const row = this.tables[kind].get(id);
    return row ? crmView(entity, row, readableFields(entity)) : undefined;
  }

  count(kind: CrmEntityName): number {
    return this.tables[kind].size;
  }

  /** Adds `count` plausible objects; deals point at seeded contacts and companies when there are some. */
  seed(kind: SeedableKind, count: number): void {
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

  clear(): void {
    for (const kind of CRM_ENTITY_NAMES) this.tables[kind].clear();
    this.entities = crmEntities();
    this.multiId = 0;
  }
}
