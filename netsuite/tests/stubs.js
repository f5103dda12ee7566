'use strict';
// Stubs of the N modules the Concord scripts use, recording what the scripts did with them.
const nodeCrypto = require('node:crypto');

const Encoding = Object.freeze({ UTF_8: 'UTF_8', HEX: 'HEX', BASE_64: 'BASE_64' });

/** A record: `values` by SuiteScript field id, `texts` for getText, `sublists[id]` = array of line objects. */
function fakeRecord({ type, id, values = {}, texts = {}, sublists = {} }) {
  const rec = {
    type,
    id,
    values: { ...values },
    saved: 0,
    getValue: ({ fieldId }) => (fieldId in rec.values ? rec.values[fieldId] : null),
    getText: ({ fieldId }) => (fieldId in texts ? texts[fieldId] : String(rec.values[fieldId] ?? '')),
    setValue: ({ fieldId, value }) => { rec.values[fieldId] = value; },
    getLineCount: ({ sublistId }) => (sublists[sublistId] || []).length,
    getSublistValue: ({ sublistId, fieldId, line }) => sublists[sublistId][line][fieldId],
    save: () => { rec.saved += 1; return rec.id; },
  };
  return rec;
}

/** The N modules; `answers` are what https.post returns in turn (an Error is thrown instead). */
function netsuite({
  answers = [], secrets = { custsecret_concord_webhook: 'whsec_test' }, parameters = {},
  records = [], currencies = { 1: 'USD', 4: 'EUR' }, accountId = '1234567',
} = {}) {
  const posts = [];
  const created = [];
  const logs = [];
  const store = new Map(records.map((r) => [`${r.type}:${r.id}`, r]));
  let nextId = 900;
  const https = {
    post: (options) => {
      posts.push(options);
      const answer = answers.length > 1 ? answers.shift() : answers[0];
      if (answer === undefined) throw new Error('stub https: no answer left');
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
  const crypto = {
    HashAlg: Object.freeze({ SHA256: 'SHA256', SHA1: 'SHA1' }),
    createSecretKey: ({ secret, encoding }) => {
      if (!(secret in secrets)) {
        const error = new Error(`The secret ${secret} does not exist or this script may not use it`);
        error.name = 'INVALID_SECRET_KEY';
        throw error;
      }
      return { secret, encoding };
    },
    createHmac: ({ algorithm, key }) => {
      if (algorithm !== 'SHA256') throw new Error(`stub crypto: unexpected algorithm ${algorithm}`);
      const hmac = nodeCrypto.createHmac('sha256', Buffer.from(secrets[key.secret], 'utf8'));
      return {
        update: ({ input, inputEncoding }) => {
          if (inputEncoding !== Encoding.UTF_8) throw new Error('stub crypto: input is not UTF-8');
          hmac.update(Buffer.from(input, 'utf8'));
        },
        // NetSuite's hex digest is upper case: the script must not depend on the case.
        digest: ({ outputEncoding }) => {
          if (outputEncoding !== Encoding.HEX) throw new Error('stub crypto: digest is not hex');
          return hmac.digest('hex').toUpperCase();
        },
      };
    },
  };
  const record = {
    Type: Object.freeze({ INVOICE: 'invoice', CUSTOMER: 'customer' }),
    load: ({ type, id }) => {
      const found = store.get(`${type}:${id}`);
      if (!found) throw new Error(`stub record: no ${type} ${id}`);
      return found;
    },
    create: ({ type }) => {
      nextId += 1;
      const rec = fakeRecord({ type, id: String(nextId) });
      created.push(rec);
      store.set(`${type}:${rec.id}`, rec);
      return rec;
    },
  };
  const search = {
    Type: Object.freeze({ CURRENCY: 'currency' }),
    lookups: 0,
    lookupFields: ({ type, id, columns }) => {
      search.lookups += 1;
      if (type !== 'currency' || columns.join() !== 'symbol') throw new Error('stub search: unexpected lookup');
      return { symbol: currencies[id] || '' };
    },
    create: (options) => ({ searchOptions: options }),
  };
  const runtime = {
    accountId,
    getCurrentScript: () => ({ getParameter: ({ name }) => (name in parameters ? parameters[name] : null) }),
  };
  const log = {};
  for (const level of ['debug', 'audit', 'error', 'emergency']) {
    log[level] = ({ title, details }) => logs.push({ level, title, details });
  }
  const modules = {
    'N/https': https, 'N/crypto': crypto, 'N/encode': { Encoding }, 'N/record': record,
    'N/search': search, 'N/runtime': runtime, 'N/log': log,
  };
  return { modules, posts, created, logs, store, search };
}

/** The User Event context NetSuite passes to afterSubmit. */
function userEventContext(type, { newRecord = null, oldRecord = null } = {}) {
  return {
    type,
    newRecord,
    oldRecord,
    UserEventType: Object.freeze({
      CREATE: 'create', EDIT: 'edit', XEDIT: 'xedit', DELETE: 'delete', APPROVE: 'approve', CANCEL: 'cancel',
    }),
  };
}

/** Replaces the global Date's clock for the duration of `run` (the entry scripts read `new Date()`). */
function atTime(iso, run) {
  const RealDate = Date;
  const fixed = RealDate.parse(iso);
  class FixedDate extends RealDate {
    constructor(...args) { super(...(args.length ? args : [fixed])); }

    static now() { return fixed; }
  }
  global.Date = FixedDate;
  try {
    return run();
  } finally {
    global.Date = RealDate;
  }
}

module.exports = { fakeRecord, netsuite, userEventContext, atTime, Encoding };
