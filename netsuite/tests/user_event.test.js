'use strict';
// concord_ue.js (and concord_lib.js under it) with the N modules stubbed: the envelope per record
// type and event type, the signature, immediate retries and the outbox.
const assert = require('node:assert/strict');
const nodeCrypto = require('node:crypto');
const { test } = require('node:test');

const { load } = require('./amd');
const { netsuite, userEventContext, atTime, fakeRecord } = require('./stubs');
const {
  MODIFIED, customer, invoice, payment, creditMemo, salesOrder,
} = require('./samples');

const NOW = '2026-11-02T10:00:00.000Z';
const NOW_S = Date.parse(NOW) / 1000;
const URL = 'https://concord.example.com/webhooks/netsuite';
const OK = { code: 200, body: '{"ok":true}' };

/** Runs concord_ue.js's afterSubmit at NOW against stubs; returns the stubs' records. */
function run(context, options = {}) {
  const ns = netsuite({ answers: [OK], parameters: { custscript_concord_ue_url: URL }, ...options });
  const script = load('concord_ue.js', ns.modules);
  atTime(NOW, () => script.afterSubmit(context));
  return { ...ns, sent: ns.posts.map((post) => JSON.parse(post.body)) };
}

test('an edited invoice is posted as the whole record in the REST shape', () => {
  const { sent, posts } = run(userEventContext('edit', { newRecord: invoice(), oldRecord: invoice() }));
  assert.equal(posts.length, 1);
  assert.equal(posts[0].url, URL);
  assert.deepEqual(sent[0], {
    envelope: 'concord.netsuite.v1',
    recordType: 'invoice',
    id: '1215',
    eventType: 'edit',
    lastModifiedDate: MODIFIED,
    accountId: '1234567',
    currencyCode: 'USD',
    record: {
      id: '1215',
      tranId: 'INV1215',
      externalId: 'in_1OaBcDeFgHiJkLmN',
      entity: { id: '220', refName: 'Dunder Mifflin' },
      status: { id: 'open', refName: 'Open' },
      total: 1000,
      taxTotal: 80.25,
      amountRemaining: 1000,
      currency: { id: '1', refName: 'USA' },
      dueDate: '2026-12-08',
    },
  });
});

test('a new customer carries the CRM link field, its select values and its ISO currency', () => {
  const { sent } = run(userEventContext('create', { newRecord: customer() }));
  assert.equal(sent[0].eventType, 'create');
  assert.equal(sent[0].currencyCode, 'USD');
  assert.deepEqual(sent[0].record, {
    id: '220',
    companyName: 'Dunder Mifflin',
    email: 'ap@dundermifflin.com',
    externalId: '001A000001DunDER',
    currency: { id: '1', refName: 'USA' },
    custentity_sf_account_id: '001A000001DunDER',
    terms: { id: '2', refName: 'Net 30' },
    overdueBalance: 120.5,
    creditHoldOverride: { id: 'AUTO', refName: 'Auto' },
  });
});

test('empty fields are left out, not sent as null or empty strings', () => {
  const { sent } = run(userEventContext('edit', {
    newRecord: customer({ email: '', custentity_sf_account_id: null, terms: undefined }),
  }));
  for (const field of ['email', 'custentity_sf_account_id', 'terms']) {
    assert.ok(!(field in sent[0].record), `${field} was sent`);
  }
});

test('a sales order and a credit memo in their own currency', () => {
  const order = run(userEventContext('create', { newRecord: salesOrder() })).sent[0];
  assert.equal(order.recordType, 'salesorder');
  assert.deepEqual(order.record.status, { id: 'pendingFulfillment', refName: 'Pending Fulfillment' });
  assert.equal(order.record.externalId, '006A000000OppTy');
  const memo = run(userEventContext('create', { newRecord: creditMemo([]) })).sent[0];
  assert.equal(memo.currencyCode, 'EUR');
  assert.equal(memo.record.total, 250);
  assert.deepEqual(memo.record.apply, { items: [] });
});

test('a payment sends its applied lines, then every invoice it is applied to', () => {
  const lines = [
    { apply: true, doc: '1215', amount: 600 },
    { apply: false, doc: '1300', amount: 0 },
    { apply: true, doc: '1216', amount: 400 },
  ];
  const { sent } = run(userEventContext('create', { newRecord: payment(lines) }), {
    records: [invoice(), invoice({ tranid: 'INV1216' })].map((rec, i) => Object.assign(rec, { id: String(1215 + i) })),
  });
  assert.deepEqual(sent.map((env) => `${env.recordType}:${env.id}:${env.eventType}`),
    ['customerpayment:3300:create', 'invoice:1215:edit', 'invoice:1216:edit']);
  assert.deepEqual(sent[0].record.apply.items, [
    { apply: true, doc: { id: '1215' }, amount: 600 },
    { apply: true, doc: { id: '1216' }, amount: 400 },
  ]);
});

test('an unapplied invoice is sent too: the old record names it', () => {
  const before = payment([{ apply: true, doc: '1215', amount: 600 }]);
  const after = payment([{ apply: false, doc: '1215', amount: 0 }]);
  const { sent } = run(userEventContext('edit', { newRecord: after, oldRecord: before }), { records: [invoice()] });
  assert.deepEqual(sent.map((env) => env.recordType), ['customerpayment', 'invoice']);
});

test('a deletion sends the old record, stamped with the time of deletion', () => {
  const { sent } = run(userEventContext('delete', { oldRecord: salesOrder() }));
  assert.equal(sent.length, 1);
  assert.equal(sent[0].eventType, 'delete');
  assert.equal(sent[0].lastModifiedDate, NOW);
  assert.equal(sent[0].record.id, '5500');
  assert.equal(sent[0].record.total, 4800);
});

test('a deleted payment re-sends the invoices it was applied to', () => {
  const { sent } = run(userEventContext('delete', { oldRecord: payment([{ apply: true, doc: '1215', amount: 1 }]) }),
    { records: [invoice()] });
  assert.deepEqual(sent.map((env) => `${env.recordType}:${env.eventType}`), ['customerpayment:delete', 'invoice:edit']);
});

test('an inline edit loads the whole record: newRecord holds only the edited fields', () => {
  const partial = fakeRecord({ type: 'invoice', id: '1215', values: { status: 'Paid In Full' } });
  const full = invoice({ status: 'Paid In Full', statusRef: 'paidInFull', amountremaining: 0 });
  const { sent } = run(userEventContext('xedit', { newRecord: partial }), { records: [full] });
  assert.equal(sent[0].eventType, 'xedit');
  assert.equal(sent[0].record.tranId, 'INV1215');
  assert.deepEqual(sent[0].record.status, { id: 'paidInFull', refName: 'Paid In Full' });
  assert.equal(sent[0].record.amountRemaining, 0);
});

test('record types Concord does not read are not sent', () => {
  const { posts } = run(userEventContext('create', { newRecord: fakeRecord({ type: 'vendor', id: '9' }) }));
  assert.equal(posts.length, 0);
});

test('a record saved without lastmodifieddate is stamped now', () => {
  const { sent } = run(userEventContext('create', { newRecord: salesOrder({ lastmodifieddate: null }) }));
  assert.equal(sent[0].lastModifiedDate, NOW);
});

test('the currency code is looked up once per execution', () => {
  const { search } = run(userEventContext('create', {
    newRecord: payment([{ apply: true, doc: '1215', amount: 1 }]),
  }), { records: [invoice()] });
  assert.equal(search.lookups, 1);
});

test('the body is signed: t=<now>,v1=<lowercase hex HMAC-SHA256 of "<t>.<body>">', () => {
  const { posts } = run(userEventContext('edit', { newRecord: invoice() }));
  const { headers, body } = posts[0];
  const expected = nodeCrypto.createHmac('sha256', 'whsec_test').update(`${NOW_S}.${body}`).digest('hex');
  assert.equal(headers['X-Concord-Signature'], `t=${NOW_S},v1=${expected}`);
  assert.equal(headers['X-Concord-Account'], '1234567');
  assert.equal(headers['Content-Type'], 'application/json');
});

test('the secret is the API secret the script parameter names', () => {
  const { posts } = run(userEventContext('edit', { newRecord: invoice() }), {
    parameters: { custscript_concord_ue_url: URL, custscript_concord_ue_secret: 'custsecret_other' },
    secrets: { custsecret_other: 'another secret' },
  });
  const { headers, body } = posts[0];
  const expected = nodeCrypto.createHmac('sha256', 'another secret').update(`${NOW_S}.${body}`).digest('hex');
  assert.equal(headers['X-Concord-Signature'], `t=${NOW_S},v1=${expected}`);
});

test('a transient failure is retried at once; delivered on the second try, nothing is parked', () => {
  const { posts, created } = run(userEventContext('edit', { newRecord: invoice() }), {
    answers: [{ code: 503, body: 'busy' }, OK],
  });
  assert.equal(posts.length, 2);
  assert.equal(posts[0].body, posts[1].body);
  assert.equal(created.length, 0);
});

function parkedFields(created) {
  assert.equal(created.length, 1);
  assert.equal(created[0].type, 'customrecord_concord_outbox');
  assert.equal(created[0].saved, 1);
  return created[0].values;
}

test('three failed tries park the envelope in the outbox, due again in 15 minutes', () => {
  const { posts, created, logs } = run(userEventContext('edit', { newRecord: invoice() }), {
    answers: [{ code: 502, body: 'Bad Gateway' }],
  });
  assert.equal(posts.length, 3);
  const parked = parkedFields(created);
  assert.equal(parked.custrecord_concord_body, posts[0].body);
  assert.equal(parked.custrecord_concord_event_id, `invoice:1215:${Date.parse(MODIFIED)}`);
  assert.equal(parked.custrecord_concord_status, 'pending');
  assert.equal(parked.custrecord_concord_attempts, 1);
  assert.equal(parked.custrecord_concord_next_attempt.getTime(), Date.parse(NOW) + 15 * 60 * 1000);
  assert.equal(parked.custrecord_concord_last_error, 'Concord answered HTTP 502: Bad Gateway');
  assert.ok(logs.some((entry) => entry.level === 'audit' && entry.details.includes('HTTP 502')));
});

test('a refusal (4xx) is not retried at once but parked for the resender', () => {
  const { posts, created } = run(userEventContext('edit', { newRecord: invoice() }), {
    answers: [{ code: 401, body: '{"reason":"bad_signature"}' }],
  });
  assert.equal(posts.length, 1);
  assert.match(parkedFields(created).custrecord_concord_last_error, /HTTP 401: \{"reason":"bad_signature"\}/);
});

test('429 is transient: retried at once', () => {
  const { posts } = run(userEventContext('edit', { newRecord: invoice() }), { answers: [{ code: 429 }, OK] });
  assert.equal(posts.length, 2);
});

test('an unreachable Concord (exception) is retried, then parked with the error', () => {
  const error = new Error('connection timed out');
  error.name = 'SSS_CONNECTION_TIME_OUT';
  const { posts, created } = run(userEventContext('edit', { newRecord: invoice() }), { answers: [error] });
  assert.equal(posts.length, 3);
  assert.equal(parkedFields(created).custrecord_concord_last_error,
    'Concord unreachable: SSS_CONNECTION_TIME_OUT: connection timed out');
});

test('a deletion is parked under its deletion event id', () => {
  const { created } = run(userEventContext('delete', { oldRecord: salesOrder() }), { answers: [{ code: 500 }] });
  assert.equal(parkedFields(created).custrecord_concord_event_id, `salesorder:5500:${Date.parse(NOW)}:delete`);
});

test('without the URL parameter nothing is posted and the event is parked, saying what to set', () => {
  const { posts, created } = run(userEventContext('edit', { newRecord: invoice() }), { parameters: {} });
  assert.equal(posts.length, 0);
  assert.match(parkedFields(created).custrecord_concord_last_error, /custscript_concord_ue_url/);
});

test('a missing API secret is not posted unsigned: parked, naming the secret', () => {
  const { posts, created } = run(userEventContext('edit', { newRecord: invoice() }), { secrets: {} });
  assert.equal(posts.length, 0);
  assert.match(parkedFields(created).custrecord_concord_last_error, /custsecret_concord_webhook/);
});

test('afterSubmit never throws: a failing outbox or load is logged, the save stands', () => {
  const ns = netsuite({ answers: [{ code: 500 }], parameters: { custscript_concord_ue_url: URL } });
  ns.modules['N/record'].create = () => { throw new Error('no permission'); };
  const script = load('concord_ue.js', ns.modules);
  atTime(NOW, () => script.afterSubmit(userEventContext('edit', { newRecord: invoice() })));
  assert.ok(ns.logs.some((entry) => entry.level === 'error' && /lost until the record is saved again/.test(entry.details)));

  const missing = run(userEventContext('xedit', { newRecord: fakeRecord({ type: 'invoice', id: '77' }) }));
  assert.equal(missing.posts.length, 0);
  assert.ok(missing.logs.some((entry) => entry.level === 'error' && /no invoice 77/.test(entry.details)));
});
