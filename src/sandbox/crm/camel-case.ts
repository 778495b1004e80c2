/** `CREATED_DATE` -> `createdDate`, `UF_CRM_TASK` -> `ufCrmTask`: how tasks.task.* and crm.item.* name fields. */
export function camelCase(upper: string): string {
  return upper.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}
