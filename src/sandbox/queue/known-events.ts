/**
 * The events event.bind knows. A portal answers ERROR_EVENT_NOT_FOUND for a name no module registered, so a
 * mistyped name in the trigger's "Bind events" fails here as it fails there. Not every event of every module:
 * the families of the modules the sandbox emulates and those a flow commonly binds (the events pages of the REST
 * docs); a name of another module is refused here although a portal with that module would take it.
 */
const FAMILIES: readonly RegExp[] = [
  /^ONCRM(DEAL|LEAD|CONTACT|COMPANY|QUOTE|INVOICE|ACTIVITY|DYNAMICITEM|REQUISITE|BANKDETAIL|ADDRESS|PRODUCT|PRODUCTPROPERTY|MEASURE|CURRENCY|TIMELINECOMMENT|TIMELINEITEMACTION|DEALRECURRING|INVOICERECURRING|TYPE|CATEGORY)(ADD|UPDATE|DELETE|SETSTATUS|MOVETOCATEGORY|EXPOSE|USERFIELDADD|USERFIELDUPDATE|USERFIELDDELETE|USERFIELDSETENUMVALUES)$/,
  /^ONCRMDEAL(STAGE|CATEGORY)?(ADD|UPDATE|DELETE|MOVETOCATEGORY)$/,
  /^ONTASK(ADD|UPDATE|DELETE|COMMENTADD|COMMENTUPDATE|COMMENTDELETE)$/,
  /^ONUSER(ADD)$/,
  /^ONAPP(INSTALL|UNINSTALL|UPDATE|PAYMENT|TEST|METHODCONFIRM|USERREADY)$/,
  /^ONCALENDAR(ENTRY|SECTION)(ADD|UPDATE|DELETE)$/,
  /^ONCATALOG(PRODUCT|SECTION|PRICE|STORE|DOCUMENT)[A-Z]*(ADD|UPDATE|DELETE)$/,
  /^ONSONETGROUP(ADD|UPDATE|DELETE|SUBJECTADD|SUBJECTUPDATE|SUBJECTDELETE)$/,
  /^ONIM[A-Z]+$/,
  /^ONDEPARTMENT(ADD|UPDATE|DELETE)$/,
  /^ONOFFLINEEVENT$/,
];

export function isKnownEvent(name: string): boolean {
  return FAMILIES.some((family) => family.test(name));
}
