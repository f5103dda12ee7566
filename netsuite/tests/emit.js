'use strict';
// Runs concord_ue.js's afterSubmit on records given as JSON on stdin and prints what it posted, so
// that a Python test (tests/unit/netsuite/test_sdf_project.py) can check it with Concord's own
// signature verifier and codec. Not a test file itself.
//
// stdin: {"now": ISO, "secret": str, "accountId": str, "currencies": {id: ISO code},
//         "answers": [{"code": int}], "context": {"type": str, "newRecord": R|null, "oldRecord": R|null},
//         "records": [R]}    R = {"type", "id", "values", "texts", "sublists"};
// a value {"date": "YYYY-MM-DD"} is a NetSuite date, {"datetime": ISO} a date and time.
// stdout: {"posts": [{"url", "headers", "body"}], "parked": [outbox record values]}
const fs = require('node:fs');

const { load } = require('./amd');
const { netsuite, fakeRecord, userEventContext, atTime } = require('./stubs');

const revive = (value) => {
  if (value && typeof value === 'object' && 'date' in value) {
    const [y, m, d] = value.date.split('-').map(Number);
    return new Date(y, m - 1, d);
  }
  if (value && typeof value === 'object' && 'datetime' in value) return new Date(value.datetime);
  return value;
};
const toRecord = (spec) => spec && fakeRecord({
  ...spec,
  values: Object.fromEntries(Object.entries(spec.values || {}).map(([k, v]) => [k, revive(v)])),
});

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const ns = netsuite({
  answers: input.answers || [{ code: 200 }],
  secrets: { custsecret_concord_webhook: input.secret },
  parameters: { custscript_concord_ue_url: 'https://concord.example.com/webhooks/netsuite' },
  records: (input.records || []).map(toRecord),
  currencies: input.currencies || {},
  accountId: input.accountId,
});
const script = load('concord_ue.js', ns.modules);
const context = userEventContext(input.context.type, {
  newRecord: toRecord(input.context.newRecord), oldRecord: toRecord(input.context.oldRecord),
});
atTime(input.now, () => script.afterSubmit(context));
process.stdout.write(JSON.stringify({
  posts: ns.posts.map(({ url, headers, body }) => ({ url, headers, body })),
  parked: ns.created.map((rec) => rec.values),
  errors: ns.logs.filter((entry) => entry.level === 'error'),
}));
