/** One row of the emulated b_rest_event_offline table. */
export interface QueueRecord {
  id: number;
  /** TIMESTAMP_X in unix seconds: the portal stores it to the second. */
  tsSec: number;
  /** Order of the last change (insert or collapse): breaks TIMESTAMP_X ties the way the fast path sees them. */
  seq: number;
  eventName: string;
  eventData: unknown;
  eventAdditional: unknown;
  messageId: string;
  connector: string;
  /** "" while the record waits; the holder's 32-character id once a get with clear=0 took it. */
  processId: string;
  error: 0 | 1;
}
