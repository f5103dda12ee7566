/**
 * Concord: post a signed concord.netsuite.v1 envelope to Concord after every save of a record it
 * tracks (customer, invoice, customer payment, credit memo, sales order); what cannot be delivered
 * goes to the outbox (customrecord_concord_outbox) for concord_outbox_mr.js. The logic is in
 * concord_lib.js; docs/netsuite-suitescript.md says what is sent and how to deploy it.
 *
 * Script parameters (set on each deployment): custscript_concord_ue_url, Concord's
 * https://<host>/webhooks/netsuite; custscript_concord_ue_secret, the script id of the API secret
 * holding CONCORD_NETSUITE_WEBHOOK_SECRET (empty: custsecret_concord_webhook).
 *
 * @NApiVersion 2.1
 * @NScriptType UserEventScript
 * @NModuleScope SameAccount
 */
define(['N/https', 'N/crypto', 'N/encode', 'N/record', 'N/search', 'N/runtime', 'N/log', './concord_lib'],
  (https, crypto, encode, record, search, runtime, log, concord) => ({
    afterSubmit: concord.userEvent(
      { https, crypto, encode, record, search, runtime, log, clock: () => new Date() },
      { url: 'custscript_concord_ue_url', secret: 'custscript_concord_ue_secret' },
    ),
  }));
