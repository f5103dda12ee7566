/**
 * Concord: re-send the envelopes concord_ue.js parked in customrecord_concord_outbox. Each pending
 * record that is due is posted again, the same body re-signed with a fresh timestamp (so Concord
 * deduplicates it by its event id); delivered ones become `sent`, failed ones wait twice as long as
 * the time before (15 min, 30 min, ... at most a day) and become `failed` after RETRY.maxAttempts,
 * with the last error kept. The logic is in concord_lib.js.
 *
 * Script parameters (set on the deployment): custscript_concord_mr_url and
 * custscript_concord_mr_secret, the same values as the User Event's.
 *
 * @NApiVersion 2.1
 * @NScriptType MapReduceScript
 * @NModuleScope SameAccount
 */
define(['N/https', 'N/crypto', 'N/encode', 'N/record', 'N/search', 'N/runtime', 'N/log', './concord_lib'],
  (https, crypto, encode, record, search, runtime, log, concord) => concord.resender(
    { https, crypto, encode, record, search, runtime, log, clock: () => new Date() },
    { url: 'custscript_concord_mr_url', secret: 'custscript_concord_mr_secret' },
  ));
