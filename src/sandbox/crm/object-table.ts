/**
 * One table of portal objects (deals, contacts, tasks, ...) in memory. IDs are ascending integers that are
 * never reused, like an auto-increment column; `ids` keeps them in order so list reads ordered by ID (the
 * common case, and the only one the "large volumes" walk uses) can start at a lower bound by binary search
 * instead of scanning or sorting the whole table.
 */

export type FieldValues = Record<string, unknown>;

export interface StoredObject {
  id: number;
  /** Canonical values by field name; absent = the field's default (sparse, so 100 000 rows stay light). */
  fields: FieldValues;
}

export class ObjectTable {
  private readonly rows = new Map<number, StoredObject>();
  /** Ascending; may still hold deleted ids until the next compaction. */
  private ids: number[] = [];
  private stale = 0;
  private nextId = 1;

  get size(): number {
    return this.rows.size;
  }

  insert(fields: FieldValues): StoredObject {
    const row: StoredObject = { id: this.nextId++, fields };
    this.rows.set(row.id, row);
    this.ids.push(row.id);
    return row;
  }

  get(id: number): StoredObject | undefined {
    return this.rows.get(id);
  }

  delete(id: number): boolean {
    if (!this.rows.delete(id)) return false;
    this.stale++;
    if (this.stale > 1024 && this.stale > this.ids.length / 2) {
      this.ids = this.ids.filter((i) => this.rows.has(i));
      this.stale = 0;
    }
    return true;
  }

  /** Rows in ascending ID order, starting at the first id >= `fromId`. */
  *ascending(fromId = 1): IterableIterator<StoredObject> {
    let lo = 0;
    let hi = this.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ids[mid] < fromId) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.ids.length; i++) {
      const row = this.rows.get(this.ids[i]);
      if (row) yield row;
    }
  }

  /** Rows in descending ID order, starting at the last id <= `toId`. */
  *descending(toId = Number.MAX_SAFE_INTEGER): IterableIterator<StoredObject> {
    for (let i = this.ids.length - 1; i >= 0; i--) {
      if (this.ids[i] > toId) continue;
      const row = this.rows.get(this.ids[i]);
      if (row) yield row;
    }
  }

  clear(): void {
    this.rows.clear();
    this.ids = [];
    this.stale = 0;
    this.nextId = 1;
  }
}
