/**
 * Concord's NetSuite side without NetSuite: the concord.netsuite.v1 envelope, its signature, the
 * delivery to Concord's /webhooks/netsuite and the outbox that keeps what could not be delivered.
 *
 * Contract (docs/netsuite-suitescript.md, read by codecs/netsuite.py and checked by app/signatures.py):
 * * the body is the envelope as JSON, the whole record in the REST shape (camelCase names,
 *   {id, refName} references, empty fields left out), never only the changed fields;
 * * `X-Concord-Signature: t=<unix seconds>,v1=<lowercase hex HMAC-SHA256 of "<t>.<body>">`, keyed
 *   with the API secret the script parameter names; `X-Concord-Account` is the account id;
 * * a resend posts the very same body, re-signed with a fresh t, so Concord's event id
 *   (`<recordType>:<id>:<lastModifiedDate ms>[:delete]`) is the same and the copy is deduplicated.
 *
 * Why a module of its own: the entry scripts (concord_ue.js, concord_outbox_mr.js) only hand it the
 * N modules and a clock, so every rule here runs under Node's test runner with stubs
 * (netsuite/tests/), and a Python test runs it against Concord's own verifier and codec.
 *
 * Failure policy, in one place (`outcomeOf`): 2xx is delivered; 408, 429, 5xx and exceptions are
 * transient (retried at once by the User Event, later by the resender); any other status is a refusal
 * that retrying now will not fix (bad signature, clock skew, wrong URL), parked all the same: once
 * the secret, clock or URL is fixed, the resender delivers it. The resender backs off exponentially
 * (15 min doubling, at most a day) and gives up after MAX_ATTEMPTS, keeping the last error on the
 * outbox record (status `failed`) for an operator to read and reset to `pending`.
 *
 * @NApiVersion 2.1
 * @NModuleScope SameAccount
 */
define([], () => {
  const ENVELOPE = 'concord.netsuite.v1';
  const SIGNATURE_HEADER = 'X-Concord-Signature';
  const ACCOUNT_HEADER = 'X-Concord-Account';
  // The API secret (Setup > Company > API Secrets) when the script parameter is left empty.
  const DEFAULT_SECRET_ID = 'custsecret_concord_webhook';

  const OUTBOX = Object.freeze({
    type: 'customrecord_concord_outbox',
    body: 'custrecord_concord_body',
    eventId: 'custrecord_concord_event_id',
    status: 'custrecord_concord_status',
    attempts: 'custrecord_concord_attempts',
    nextAttempt: 'custrecord_concord_next_attempt',
    lastError: 'custrecord_concord_last_error',
  });
  const STATUS = Object.freeze({ PENDING: 'pending', SENT: 'sent', FAILED: 'failed' });

  const RETRY = Object.freeze({
    immediateAttempts: 3, // in afterSubmit: SuiteScript cannot sleep, so these are back to back
    baseDelayMs: 15 * 60 * 1000, // the resender's schedule: every 15 minutes
    maxDelayMs: 24 * 60 * 60 * 1000,
    maxAttempts: 12, // about five days of tries, then `failed`
  });
  const MAX_APPLIED_INVOICES = 20;
  const MAX_ERROR_CHARS = 3900; // the last-error field is a text area (4,000 characters)

  const E_NO_URL = 'no Concord URL: set the script parameter %s on this deployment to '
    + 'https://<concord host>/webhooks/netsuite';
  const E_SECRET = 'cannot sign: the API secret %s is missing or not allowed for this script '
    + '(Setup > Company > API Secrets: create it with Concord\'s CONCORD_NETSUITE_WEBHOOK_SECRET and '
    + 'allow this script)';
  const E_REFUSED = 'Concord answered HTTP %s';
  const E_UNREACHABLE = 'Concord unreachable: %s';
  const E_OUTBOX = 'could not park the event in the outbox, it is lost until the record is saved again: %s';

  const format = (template, ...args) => args.reduce((text, arg) => text.replace('%s', String(arg)), template);

  // [REST field, SuiteScript field id, kind]; kinds: text, number, ref, select, status, date.
  // The customer's CRM link is sent under its own id, the REST name of a custom field
  // (Concord's CONCORD_NETSUITE_CRM_LINK_FIELD, default custentity_sf_account_id).
  const FIELDS = Object.freeze({
    customer: [
      ['companyName', 'companyname', 'text'], ['firstName', 'firstname', 'text'],
      ['lastName', 'lastname', 'text'], ['email', 'email', 'text'],
      ['externalId', 'externalid', 'text'], ['currency', 'currency', 'ref'],
      ['custentity_sf_account_id', 'custentity_sf_account_id', 'text'],
      ['terms', 'terms', 'ref'], ['overdueBalance', 'overduebalance', 'number'],
      ['creditHoldOverride', 'creditholdoverride', 'select'],
    ],
    invoice: [
      ['tranId', 'tranid', 'text'], ['externalId', 'externalid', 'text'],
      ['entity', 'entity', 'ref'], ['status', 'status', 'status'],
      ['total', 'total', 'number'], ['taxTotal', 'taxtotal', 'number'],
      ['amountRemaining', 'amountremaining', 'number'], ['currency', 'currency', 'ref'],
      ['dueDate', 'duedate', 'date'],
    ],
    customerpayment: [
      ['customer', 'customer', 'ref'], ['status', 'status', 'status'],
      ['payment', 'payment', 'number'], ['currency', 'currency', 'ref'],
    ],
    creditmemo: [
      ['externalId', 'externalid', 'text'], ['entity', 'entity', 'ref'],
      ['status', 'status', 'status'], ['total', 'total', 'number'],
      ['currency', 'currency', 'ref'],
    ],
    salesorder: [
      ['tranId', 'tranid', 'text'], ['externalId', 'externalid', 'text'],
      ['entity', 'entity', 'ref'], ['status', 'status', 'status'],
      ['total', 'total', 'number'], ['currency', 'currency', 'ref'],
    ],
  });
  // Applying, unapplying or deleting these changes invoices without running the invoices' own
  // User Events: the invoices they touch are sent from here.
  const WITH_APPLY = Object.freeze(['customerpayment', 'creditmemo']);

  const isEmpty = (value) => value === null || value === undefined || value === '';

  // YYYY-MM-DD of a NetSuite date (a Date at midnight in the account's time zone).
  const isoDate = (d) => [d.getFullYear(), d.getMonth() + 1, d.getDate()]
    .map((n, i) => String(n).padStart(i === 0 ? 4 : 2, '0')).join('-');

  /** The record in the REST record shape: camelCase names, {id, refName} refs, empty fields left out. */
  const restShape = (rec, type) => {
    const out = { id: String(rec.id) };
    for (const [name, fieldId, kind] of FIELDS[type]) {
      const value = rec.getValue({ fieldId });
      if (isEmpty(value)) continue;
      if (kind === 'ref' || kind === 'select') {
        out[name] = { id: String(value), refName: rec.getText({ fieldId }) };
      } else if (kind === 'status') {
        // statusRef is the stable id ("paidInFull"); status the display text ("Paid In Full").
        out[name] = { id: String(rec.getValue({ fieldId: 'statusRef' }) || value), refName: String(value) };
      } else if (kind === 'number') {
        out[name] = Number(value);
      } else if (kind === 'date') {
        out[name] = isoDate(value);
      } else {
        out[name] = String(value);
      }
    }
    if (WITH_APPLY.includes(type)) {
      const items = [];
      const lines = rec.getLineCount({ sublistId: 'apply' });
      for (let line = 0; line < lines; line += 1) {
        if (!rec.getSublistValue({ sublistId: 'apply', fieldId: 'apply', line })) continue;
        items.push({
          apply: true,
          doc: { id: String(rec.getSublistValue({ sublistId: 'apply', fieldId: 'doc', line })) },
          amount: Number(rec.getSublistValue({ sublistId: 'apply', fieldId: 'amount', line })),
        });
      }
      out.apply = { items };
    }
    return out;
  };

  /**
   * The envelope of `rec` (a record of `type`). `at` is now: a deletion is stamped with it, after
   * the record's last modification; `currencyCode(id)` resolves a currency's ISO code.
   */
  const envelope = ({ rec, type, eventType, deleted, accountId, at, currencyCode }) => ({
    envelope: ENVELOPE,
    recordType: type,
    id: String(rec.id),
    eventType,
    lastModifiedDate: (deleted ? at : rec.getValue({ fieldId: 'lastmodifieddate' }) || at).toISOString(),
    accountId,
    currencyCode: currencyCode(rec.getValue({ fieldId: 'currency' })),
    record: restShape(rec, type),
  });

  /** The event id Concord derives from the envelope (codecs/netsuite.py), for the outbox and logs. */
  const eventIdOf = (env) => `${env.recordType}:${env.id}:${Date.parse(env.lastModifiedDate)}`
    + (env.eventType === 'delete' ? ':delete' : '');

  /** The X-Concord-Signature value: `hmacHex(message)` is HMAC-SHA256 of the message, in hex. */
  const signatureHeader = (body, t, hmacHex) => `t=${t},v1=${hmacHex(`${t}.${body}`).toLowerCase()}`;

  /** Exponential backoff after `attempts` failed rounds: 15 min, 30 min, 1 h, ... at most a day. */
  const backoffMs = (attempts) => Math.min(RETRY.baseDelayMs * 2 ** Math.max(attempts - 1, 0), RETRY.maxDelayMs);

  const clip = (text) => (text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS)}...` : text);

  /** {ok, retryable, detail} of one HTTP answer. */
  const outcomeOf = (response) => {
    const code = Number(response.code);
    if (code >= 200 && code < 300) return { ok: true, retryable: false, detail: `HTTP ${code}` };
    const transient = code === 408 || code === 429 || code >= 500;
    const body = typeof response.body === 'string' ? response.body.slice(0, 300) : '';
    return { ok: false, retryable: transient, detail: format(E_REFUSED, code) + (body ? `: ${body}` : '') };
  };

  /**
   * The state of a parked event after one more delivery round at `now` (a Date). Pure: the resender
   * writes what it returns.
   */
  const afterRound = (parked, outcome, now) => {
    const attempts = parked.attempts + 1;
    if (outcome.ok) return { status: STATUS.SENT, attempts, nextAttempt: null, lastError: parked.lastError };
    if (attempts >= RETRY.maxAttempts) {
      return { status: STATUS.FAILED, attempts, nextAttempt: null, lastError: clip(outcome.detail) };
    }
    return {
      status: STATUS.PENDING,
      attempts,
      nextAttempt: new Date(now.getTime() + backoffMs(attempts)),
      lastError: clip(outcome.detail),
    };
  };

  /** Whether a parked event is due at `now`: pending, and its next attempt (if any) has come. */
  const isDue = (parked, now) => parked.status === STATUS.PENDING
    && (!parked.nextAttempt || parked.nextAttempt.getTime() <= now.getTime());

  /**
   * The delivery half both scripts share. deps: the N modules (https, crypto, encode, record, runtime,
   * log) and `clock` (() => Date); params: the script parameter ids of the URL and the secret's id.
   */
  const transport = (deps, params) => {
    const { https, crypto, encode, record, runtime, log, clock } = deps;
    const parameter = (name) => runtime.getCurrentScript().getParameter({ name });

    const hmacHex = (secretId) => (message) => {
      const key = crypto.createSecretKey({ secret: secretId, encoding: encode.Encoding.UTF_8 });
      const hmac = crypto.createHmac({ algorithm: crypto.HashAlg.SHA256, key });
      hmac.update({ input: message, inputEncoding: encode.Encoding.UTF_8 });
      return hmac.digest({ outputEncoding: encode.Encoding.HEX });
    };

    /** Post `body` up to `tries` times, re-signed each time; returns the last outcome. */
    const deliver = (body, tries) => {
      const url = parameter(params.url);
      if (isEmpty(url)) return { ok: false, retryable: false, detail: format(E_NO_URL, params.url) };
      const secretId = parameter(params.secret) || DEFAULT_SECRET_ID;
      let outcome = null;
      for (let attempt = 1; attempt <= tries; attempt += 1) {
        const t = Math.floor(clock().getTime() / 1000);
        let signature;
        try {
          signature = signatureHeader(body, t, hmacHex(secretId));
        } catch (e) {
          return { ok: false, retryable: false, detail: `${format(E_SECRET, secretId)}: ${e.name}: ${e.message}` };
        }
        try {
          const response = https.post({
            url,
            body,
            headers: {
              'Content-Type': 'application/json',
              [ACCOUNT_HEADER]: runtime.accountId,
              [SIGNATURE_HEADER]: signature,
            },
          });
          outcome = outcomeOf(response);
        } catch (e) {
          outcome = { ok: false, retryable: true, detail: format(E_UNREACHABLE, `${e.name}: ${e.message}`) };
        }
        if (outcome.ok || !outcome.retryable) break;
      }
      return outcome;
    };

    /** Keep an undelivered envelope for the resender; returns the outbox record's id, or null. */
    const park = (body, eventId, outcome) => {
      try {
        const parked = record.create({ type: OUTBOX.type });
        parked.setValue({ fieldId: OUTBOX.body, value: body });
        parked.setValue({ fieldId: OUTBOX.eventId, value: eventId });
        parked.setValue({ fieldId: OUTBOX.status, value: STATUS.PENDING });
        parked.setValue({ fieldId: OUTBOX.attempts, value: 1 });
        parked.setValue({ fieldId: OUTBOX.nextAttempt, value: new Date(clock().getTime() + backoffMs(1)) });
        parked.setValue({ fieldId: OUTBOX.lastError, value: clip(outcome.detail) });
        return parked.save();
      } catch (e) {
        log.error({ title: 'Concord outbox', details: `${eventId}: ${format(E_OUTBOX, `${e.name}: ${e.message}`)}` });
        return null;
      }
    };

    return { deliver, park };
  };

  /** afterSubmit of the User Event script (concord_ue.js). */
  const userEvent = (deps, params) => {
    const { record, search, runtime, log, clock } = deps;
    const { deliver, park } = transport(deps, params);
    const isoCodes = {}; // currency internal id -> ISO code, per execution

    const currencyCode = (currencyId) => {
      if (isEmpty(currencyId)) return undefined;
      if (!(currencyId in isoCodes)) {
        // The currency record's "symbol" is its ISO 4217 code ("USD"); 1 governance unit.
        const found = search.lookupFields({ type: search.Type.CURRENCY, id: currencyId, columns: ['symbol'] });
        isoCodes[currencyId] = found.symbol || undefined;
      }
      return isoCodes[currencyId];
    };

    const send = (rec, type, eventType, deleted) => {
      const env = envelope({
        rec, type, eventType, deleted, accountId: runtime.accountId, at: clock(), currencyCode,
      });
      const body = JSON.stringify(env);
      const outcome = deliver(body, RETRY.immediateAttempts);
      if (outcome.ok) return;
      const eventId = eventIdOf(env);
      log.audit({ title: 'Concord: parked', details: `${eventId}: ${outcome.detail}` });
      park(body, eventId, outcome);
    };

    const appliedInvoices = (...recs) => {
      const ids = new Set();
      for (const rec of recs.filter(Boolean)) {
        restShape(rec, rec.type).apply.items.forEach((item) => ids.add(item.doc.id));
      }
      return [...ids].slice(0, MAX_APPLIED_INVOICES);
    };

    return (context) => {
      try {
        const type = (context.newRecord || context.oldRecord).type;
        if (!FIELDS[type]) return;
        const eventType = context.type;
        const deleted = eventType === context.UserEventType.DELETE;
        let rec = deleted ? context.oldRecord : context.newRecord;
        if (eventType === context.UserEventType.XEDIT) {
          // newRecord carries only the edited fields; the envelope needs the whole record.
          rec = record.load({ type, id: context.newRecord.id });
        }
        send(rec, type, eventType, deleted);
        if (WITH_APPLY.includes(type)) {
          for (const id of appliedInvoices(context.oldRecord, deleted ? null : rec)) {
            send(record.load({ type: record.Type.INVOICE, id }), 'invoice', 'edit', false);
          }
        }
      } catch (e) {
        // Never fail the user's save: the record is already committed. Saving it again re-sends it.
        log.error({ title: 'Concord afterSubmit', details: `${e.name}: ${e.message}` });
      }
    };
  };

  /** The Map/Reduce resender (concord_outbox_mr.js): getInputData, map, summarize. */
  const resender = (deps, params) => {
    const { record, search, log, clock } = deps;
    const { deliver } = transport(deps, params);

    const getInputData = () => search.create({
      type: OUTBOX.type,
      filters: [[OUTBOX.status, 'is', STATUS.PENDING]],
      columns: ['internalid'],
    });

    const map = (context) => {
      const { id } = JSON.parse(context.value);
      const rec = record.load({ type: OUTBOX.type, id });
      const parked = {
        status: rec.getValue({ fieldId: OUTBOX.status }),
        attempts: Number(rec.getValue({ fieldId: OUTBOX.attempts })) || 0,
        nextAttempt: rec.getValue({ fieldId: OUTBOX.nextAttempt }) || null,
        lastError: rec.getValue({ fieldId: OUTBOX.lastError }) || '',
      };
      const now = clock();
      if (!isDue(parked, now)) {
        context.write({ key: 'not_due', value: id });
        return;
      }
      const next = afterRound(parked, deliver(rec.getValue({ fieldId: OUTBOX.body }), 1), now);
      rec.setValue({ fieldId: OUTBOX.status, value: next.status });
      rec.setValue({ fieldId: OUTBOX.attempts, value: next.attempts });
      rec.setValue({ fieldId: OUTBOX.nextAttempt, value: next.nextAttempt });
      rec.setValue({ fieldId: OUTBOX.lastError, value: next.lastError });
      rec.save();
      if (next.status === STATUS.FAILED) {
        log.error({
          title: 'Concord: gave up',
          details: `${rec.getValue({ fieldId: OUTBOX.eventId })} after ${next.attempts} attempts: ${next.lastError}`,
        });
      }
      context.write({ key: next.status, value: id });
    };

    const summarize = (summary) => {
      const counts = {};
      summary.output.iterator().each((key) => {
        counts[key] = (counts[key] || 0) + 1;
        return true;
      });
      summary.mapSummary.errors.iterator().each((key, error) => {
        log.error({ title: 'Concord resender', details: `outbox record ${key}: ${error}` });
        return true;
      });
      log.audit({ title: 'Concord resender', details: JSON.stringify(counts) });
      return counts;
    };

    return { getInputData, map, summarize };
  };

  return {
    ENVELOPE,
    SIGNATURE_HEADER,
    ACCOUNT_HEADER,
    DEFAULT_SECRET_ID,
    OUTBOX,
    STATUS,
    RETRY,
    FIELDS,
    restShape,
    envelope,
    eventIdOf,
    signatureHeader,
    backoffMs,
    outcomeOf,
    afterRound,
    isDue,
    userEvent,
    resender,
  };
});
