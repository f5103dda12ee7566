'use strict';
// Sample records as SuiteScript shows them (field ids, raw values, display texts), shared by the
// Node tests and the Python cross-check (emit_sample.js).
const { fakeRecord } = require('./stubs');

const MODIFIED = '2026-11-02T09:48:00.125Z';

function customer(values = {}) {
  return fakeRecord({
    type: 'customer',
    id: '220',
    values: {
      companyname: 'Dunder Mifflin', email: 'ap@dundermifflin.com', externalid: '001A000001DunDER',
      custentity_sf_account_id: '001A000001DunDER', currency: '1', terms: '2', overduebalance: 120.5,
      creditholdoverride: 'AUTO', lastmodifieddate: new Date(MODIFIED), ...values,
    },
    texts: { currency: 'USA', terms: 'Net 30', creditholdoverride: 'Auto' },
  });
}

function invoice(values = {}) {
  return fakeRecord({
    type: 'invoice',
    id: '1215',
    values: {
      tranid: 'INV1215', externalid: 'in_1OaBcDeFgHiJkLmN', entity: '220', status: 'Open', statusRef: 'open',
      total: 1000, taxtotal: 80.25, amountremaining: 1000, currency: '1', duedate: new Date(2026, 11, 8),
      lastmodifieddate: new Date(MODIFIED), ...values,
    },
    texts: { entity: 'Dunder Mifflin', currency: 'USA' },
  });
}

function payment(lines, values = {}) {
  return fakeRecord({
    type: 'customerpayment',
    id: '3300',
    values: {
      customer: '220', status: 'Deposited', statusRef: 'deposited', payment: 1000, currency: '1',
      lastmodifieddate: new Date(MODIFIED), ...values,
    },
    texts: { customer: 'Dunder Mifflin', currency: 'USA' },
    sublists: { apply: lines },
  });
}

function creditMemo(lines, values = {}) {
  return fakeRecord({
    type: 'creditmemo',
    id: '4400',
    values: {
      externalid: 're_3OaBcDeF', entity: '220', status: 'Fully Applied', statusRef: 'applied', total: 250,
      currency: '4', lastmodifieddate: new Date(MODIFIED), ...values,
    },
    texts: { entity: 'Dunder Mifflin', currency: 'Euro' },
    sublists: { apply: lines },
  });
}

function salesOrder(values = {}) {
  return fakeRecord({
    type: 'salesorder',
    id: '5500',
    values: {
      tranid: 'SO5500', externalid: '006A000000OppTy', entity: '220', status: 'Pending Fulfillment',
      statusRef: 'pendingFulfillment', total: 4800, currency: '1', lastmodifieddate: new Date(MODIFIED), ...values,
    },
    texts: { entity: 'Dunder Mifflin', currency: 'USA' },
  });
}

const SAMPLES = { customer, invoice, customerpayment: payment, creditmemo: creditMemo, salesorder: salesOrder };

module.exports = { MODIFIED, SAMPLES, customer, invoice, payment, creditMemo, salesOrder };
