/** Shapes of the Bitrix24 REST offline-event API, named exactly as the method pages in shared/seeds name them. */

/** One record of the offline queue, as event.offline.get returns it. */
export interface OfflineEvent {
  ID: string;
  TIMESTAMP_X: string;
  EVENT_NAME: string;
  EVENT_DATA: unknown;
  EVENT_ADDITIONAL: unknown;
  MESSAGE_ID: string;
}

/** A record as event.offline.list shows it: also who holds it and whether it is marked as an error. */
export interface OfflineListRecord extends OfflineEvent {
  PROCESS_ID: string | null;
  ERROR: string;
}

/** Keys are `<operator><FIELD>`, e.g. `>=ID`, `=EVENT_NAME`; values are scalars. */
export type OfflineFilter = Record<string, string | number>;
export type OfflineOrder = Record<string, "ASC" | "DESC">;
export type Flag = 0 | 1;

export interface OfflineGetParams {
  filter?: OfflineFilter;
  order?: OfflineOrder;
  limit?: number;
  clear?: Flag;
  process_id?: string;
  auth_connector?: string;
  error?: Flag;
}

export interface OfflineGetResult {
  process_id: string | null;
  events: OfflineEvent[];
}

export interface OfflineClearParams {
  process_id: string;
  /** Never together with message_id, never empty (an empty list clears the whole process). */
  id?: number[];
  message_id?: string[];
  auth_connector?: string;
}

export interface OfflineErrorParams {
  process_id: string;
  message_id: string[];
  auth_connector?: string;
}

export interface OfflineListParams {
  filter?: Record<string, string | number>;
  order?: OfflineOrder;
  /** (page - 1) * 50 */
  start?: number;
  auth_connector?: string;
}

export interface OfflineListPage {
  records: OfflineListRecord[];
  total: number;
  next?: number;
}

export interface EventBinding {
  event: string;
  handler?: string;
  auth_type?: string;
  connector_id?: string;
  offline: 0 | 1;
}

/** The `time` block every REST answer carries. */
export interface RestTime {
  start: number;
  finish: number;
  duration: number;
  processing: number;
  date_start: string;
  date_finish: string;
  operating?: number;
  operating_reset_at?: number;
}

export interface CallResult<T> {
  result: T;
  total?: number;
  next?: number;
  time?: RestTime;
}

export interface BatchCommand {
  method: string;
  params?: Record<string, unknown>;
}
