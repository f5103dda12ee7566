'use strict';
// concord_outbox_mr.js (and concord_lib.js under it): which parked envelopes are due, the resend of
// the same body freshly signed, exponential backoff, giving up with the last error kept.
const assert = require('node:assert/strict');
const nodeCrypto = require('node:crypto');
const { test } = require('node:test');

const { load } = require('./amd');
const { netsuite, atTime, fakeRecord } = require('./stubs');

const lib = load('concord_lib.js');
const NOW = '2026-11-03T12:00:00.000Z';
const NOW_MS = Date.parse(NOW);
const MINUTE = 60 * 1000;
const URL = 'https://concord.example.com/webhooks/netsuite';
const BODY = '{"envelope":"concord.netsuite.v1","recordType":"invoice","id":"1215"}';

function parked(values = {}) {
  return fakeRecord({
    type: 'customrecord_concord_outbox',
    id: '901',
    values: {
      custrecord_concord_body: BODY,
      custrecord_concord_event_id: 'invoice:1215:1793612880125',
      custrecord_concord_status: 'pending',
      custrecord_concord_attempts: 1,
      custrecord_concord_next_attempt: new Date(NOW_MS - MINUTE),
      custrecord_concord_last_error: 'Concord answered HTTP 502',
      ...values,
    },
  });
}

/** Runs the map stage on one outbox record at NOW; returns what it wrote and posted. */
function resend(rec, answers = [{ code: 200 }], parameters = { custscript_concord_mr_url: URL }) {
  const ns = netsuite({ answers, parameters, records: [rec] });
  const script = load('concord_outbox_mr.js', ns.modules);
  const written = [];
  atTime(NOW, () => script.map({ key: '0', value: JSON.stringify({ recordType: rec.type, id: rec.id, values: {} }),
    write: (entry) => written.push(entry) }));
  return { ...ns, written, values: rec.values, saved: rec.saved };
}

test('the input is every pending outbox record', () => {
  const ns = netsuite();
  const script = load('concord_outbox_mr.js', ns.modules);
  assert.deepEqual(script.getInputData().searchOptions, {
    type: 'customrecord_concord_outbox',
    filters: [['custrecord_concord_status', 'is', 'pending']],
    columns: ['internalid'],
  });
});

test('a due envelope is posted unchanged, signed afresh, and marked sent', () => {
  const { posts, values, written, saved } = resend(parked());
  assert.equal(posts.length, 1);
  assert.equal(posts[0].body, BODY);
  const t = NOW_MS / 1000;
  const v1 = nodeCrypto.createHmac('sha256', 'whsec_test').update(`${t}.${BODY}`).digest('hex');
  assert.equal(posts[0].headers['X-Concord-Signature'], `t=${t},v1=${v1}`);
  assert.equal(values.custrecord_concord_status, 'sent');
  assert.equal(values.custrecord_concord_attempts, 2);
  assert.equal(values.custrecord_concord_next_attempt, null);
  assert.equal(values.custrecord_concord_last_error, 'Concord answered HTTP 502');
  assert.equal(saved, 1);
  assert.deepEqual(written, [{ key: 'sent', value: '901' }]);
});

test('an envelope not due yet is left alone', () => {
  const rec = parked({ custrecord_concord_next_attempt: new Date(NOW_MS + MINUTE) });
  const { posts, written, saved } = resend(rec);
  assert.equal(posts.length, 0);
  assert.equal(saved, 0);
  assert.deepEqual(written, [{ key: 'not_due', value: '901' }]);
});

test('an envelope without a next attempt time is due', () => {
  const { posts } = resend(parked({ custrecord_concord_next_attempt: null }));
  assert.equal(posts.length, 1);
});

test('a failed resend waits twice as long as the time before, with the error kept', () => {
  const rec = parked({ custrecord_concord_attempts: 3 });
  const { posts, values, written } = resend(rec, [{ code: 503, body: 'maintenance' }]);
  assert.equal(posts.length, 1, 'the resender tries once per run');
  assert.equal(values.custrecord_concord_status, 'pending');
  assert.equal(values.custrecord_concord_attempts, 4);
  assert.equal(values.custrecord_concord_next_attempt.getTime(), NOW_MS + 120 * MINUTE);
  assert.equal(values.custrecord_concord_last_error, 'Concord answered HTTP 503: maintenance');
  assert.deepEqual(written, [{ key: 'pending', value: '901' }]);
});

test('the backoff doubles from 15 minutes and stops at a day', () => {
  const minutes = [1, 2, 3, 4, 5, 6, 7, 8, 11].map((attempts) => lib.backoffMs(attempts) / MINUTE);
  assert.deepEqual(minutes, [15, 30, 60, 120, 240, 480, 960, 1440, 1440]);
});

test('after the last attempt it gives up: failed, last error kept, logged', () => {
  const rec = parked({ custrecord_concord_attempts: lib.RETRY.maxAttempts - 1 });
  const error = new Error('host not found');
  error.name = 'SSS_UNKNOWN_HOST';
  const { values, logs, written } = resend(rec, [error]);
  assert.equal(values.custrecord_concord_status, 'failed');
  assert.equal(values.custrecord_concord_attempts, lib.RETRY.maxAttempts);
  assert.equal(values.custrecord_concord_next_attempt, null);
  assert.equal(values.custrecord_concord_last_error, 'Concord unreachable: SSS_UNKNOWN_HOST: host not found');
  assert.ok(logs.some((entry) => entry.level === 'error' && entry.details.startsWith('invoice:1215:1793612880125 after 12')));
  assert.deepEqual(written, [{ key: 'failed', value: '901' }]);
});

test('a refusal counts as an attempt like any failure', () => {
  const { values } = resend(parked(), [{ code: 401, body: 'stale' }]);
  assert.equal(values.custrecord_concord_status, 'pending');
  assert.equal(values.custrecord_concord_attempts, 2);
});

test('without the URL parameter the attempt fails and says what to set', () => {
  const { posts, values } = resend(parked(), [{ code: 200 }], {});
  assert.equal(posts.length, 0);
  assert.match(values.custrecord_concord_last_error, /custscript_concord_mr_url/);
});

test('a long error is clipped to what the field holds', () => {
  const { values } = resend(parked(), [{ code: 500, body: 'x'.repeat(10000) }]);
  assert.ok(values.custrecord_concord_last_error.length <= 3903);
});

test('summarize counts the outcomes and logs the map errors', () => {
  const ns = netsuite();
  const script = load('concord_outbox_mr.js', ns.modules);
  const iterator = (pairs) => () => ({ each: (fn) => pairs.every(([key, value]) => fn(key, value)) });
  const counts = script.summarize({
    output: { iterator: iterator([['sent', '1'], ['sent', '2'], ['pending', '3']]) },
    mapSummary: { errors: { iterator: iterator([['4', '{"name":"RCRD_DSNT_EXIST"}']]) } },
  });
  assert.deepEqual(counts, { sent: 2, pending: 1 });
  assert.ok(ns.logs.some((entry) => entry.level === 'error' && entry.details.includes('outbox record 4')));
  assert.ok(ns.logs.some((entry) => entry.level === 'audit' && entry.details === '{"sent":2,"pending":1}'));
});

test('the outcome of an answer: 2xx delivered, 408/429/5xx transient, other statuses refusals', () => {
  const kinds = [200, 204, 301, 400, 401, 408, 413, 429, 500, 503].map((code) => {
    const { ok, retryable } = lib.outcomeOf({ code });
    return ok ? 'ok' : (retryable ? 'transient' : 'refused');
  });
  assert.deepEqual(kinds,
    ['ok', 'ok', 'refused', 'refused', 'refused', 'transient', 'refused', 'transient', 'transient', 'transient']);
});
