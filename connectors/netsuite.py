"""NetSuite connector: ERP actions as SuiteTalk REST record calls, idempotent by external id.

Every write is an upsert `PUT /services/rest/record/v1/<type>/eid:<externalId>` (NetSuite answers
204 with the record's URL in `Location`) or a PATCH of fields by internal id (or by `eid:`): repeating
the same command writes the same values and creates nothing new.

Actions:

* `erp.upsert_customer` (target `external_id` = CRM account id; payload master fields) -> customer,
  its CRM link field set to the external id too.
* `erp.update_customer` (target `customer_id` = internal id; payload `{field: value}`) -> PATCH.
  `crm_account_id` -> the CRM link field (re-pointed after a merge, D13). Master fields: `name` ->
  companyName, `currency` -> currency, `payment_terms` -> terms, `tax_id` -> vatRegNumber,
  `address`/`country` -> the default billing address in `addressBook`.
* `erp.upsert_invoice` (target `external_id` = billing invoice id; payload customer_key, number,
  total, tax, currency, due_at, status) -> invoice; its customer referenced by externalId.
* `erp.apply_payment` (target `external_id` = billing invoice id; payload amount, currency,
  paid_at) -> reads the invoice (`GET invoice/eid:<id>`), then upserts a customerPayment applied to
  it, whose externalId is derived from the invoice, the amount and when the disagreement began
  (`concord-pay-<invoice>-<amount>-<occurrence>`): a retry or a later correction of the same
  occurrence finds that payment and pays nothing twice; the drift coming back is paid anew.
* `erp.create_credit_memo` (target `external_id` = refund id; payload customer_key, document,
  invoice_id, charge_id, amount, currency) -> creditMemo, applied to the invoice when the ERP has it.
* `erp.upsert_sales_order` (target `external_id` = CRM opportunity id; payload customer_key, price,
  quantity, total, currency, erp_customer_id?) -> salesOrder: its customer by internal id when given, else
  by externalId, Pending Fulfillment (`orderStatus`,
  the field NetSuite sets, and `status`, the one it reads back), one line of the item whose externalId
  is the billing price id. A 4xx USER_ERROR (an unknown customer or item) is a DATA error.
* `erp.cancel_sales_order` (target `external_id` = CRM opportunity id; a saga's compensation) -> PATCH
  `salesOrder/eid:<id>` status Cancelled. No such order (404) counts as done, since a compensation must be
  safe to repeat: the outcome's `detail.nothing_to_undo` says so.

The CRM link of a customer is the custom entity field the setting `netsuite_crm_link_field` names
(CONCORD_NETSUITE_CRM_LINK_FIELD, default `custentity_sf_account_id`), not its externalId: NetSuite keeps
externalId unique per record type, so a merged-away account's ERP customer could not take the winner's id
while the winner's own customer held it (9 of 18 D13 drifts of a seeded run ended escalated for that).
The externalId stays the key an upsert finds the customer by (the account it was created for); the ERP
codec reads the link field first.

The token comes from the process's NetSuite token source (connectors/tokens.py: static, or renewed by the
OAuth 2.0 client credentials flow); a 401 renews it once and the call is sent once more.

Money goes out in major units (NetSuite's decimals), dates as `YYYY-MM-DD` (UTC). A 429 with
`o:errorCode` CONCURRENCY_LIMIT_EXCEEDED (too many requests in flight) is TRANSIENT like any 429.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.http import (
    HttpClient,
    HttpResponse,
    quantity,
    segment,
    split_address,
    target,
    to_major,
    unknown_field,
    unsupported,
)
from concord.connectors.tokens import BearerAuth, netsuite_token_source
from concord.core.messages import Command
from concord.core.settings import Settings

PLATFORM: Final = "netsuite"
UPSERT_CUSTOMER: Final = "erp.upsert_customer"
UPDATE_CUSTOMER: Final = "erp.update_customer"
UPSERT_INVOICE: Final = "erp.upsert_invoice"
APPLY_PAYMENT: Final = "erp.apply_payment"
CREATE_CREDIT_MEMO: Final = "erp.create_credit_memo"
UPSERT_SALES_ORDER: Final = "erp.upsert_sales_order"
CANCEL_SALES_ORDER: Final = "erp.cancel_sales_order"
ROOT: Final = "/services/rest/record/v1"
_MASTER_FIELDS: Final = ("name", "currency", "payment_terms", "tax_id", "address", "country")
# Billing invoice status -> NetSuite invoice status (an uncollectible invoice is still a receivable).
_INVOICE_STATUS: Final = {"draft": ("D", "Pending Approval"), "open": ("A", "Open"), "uncollectible": ("A", "Open"),
                          "paid": ("B", "Paid In Full"), "void": ("V", "Voided")}
_PENDING_FULFILLMENT: Final = {"id": "B", "refName": "Pending Fulfillment"}
_CANCELLED: Final = {"id": "C", "refName": "Cancelled"}
_NO_SUCH_ORDER: Final = "NetSuite has no sales order with this external id (never created, or deleted): nothing to undo"


def _error_message(body: bytes) -> str:
    error = msgspec.json.decode(body)
    details = error.get("o:errorDetails") or [{}]
    detail = details[0]
    return f"{detail.get('detail') or error.get('title', '')} [{detail.get('o:errorCode', '')}]"


def _date(epoch_ms: Any) -> str | None:
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(int(epoch_ms) / 1000, UTC).date().isoformat()


def _amount(command: Command, key: str = "amount") -> int:
    value = command.payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id}: payload {key!r} must "
                             f"be an integer amount in minor units, got {value!r}")
    return value


def _currency(command: Command) -> str:
    currency = command.payload.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id}: payload 'currency' "
                             f"must be an ISO 4217 code, got {currency!r}")
    return currency.upper()


def customer_fields(fields: dict[str, Any], link_field: str | None = None) -> dict[str, Any]:
    """Canonical master fields -> customer record fields (None values skipped); DATA error for unknown fields.

    `link_field`: `crm_account_id` may be written too, to that custom field (an update by internal id; an
    upsert links the customer to its target, never to a field of the payload).
    """
    known = (*_MASTER_FIELDS, "crm_account_id") if link_field else _MASTER_FIELDS
    record: dict[str, Any] = {}
    address: dict[str, Any] = {}
    for field, value in fields.items():
        if field not in known:
            raise unknown_field(PLATFORM, field, known)
        if value is None:
            continue
        if field == "crm_account_id" and link_field:
            record[link_field] = value
        elif field == "name":
            record["companyName"] = value
        elif field == "currency":
            record["currency"] = {"refName": str(value).upper()}
        elif field == "payment_terms":
            record["terms"] = {"refName": value}
        elif field == "tax_id":
            record["vatRegNumber"] = value
        elif field == "address":
            street, country = split_address(str(value))
            address["addr1"] = street
            if country:
                address.setdefault("country", {"id": country})
        else:
            address["country"] = {"id": str(value).upper()}
    if address:
        record["addressBook"] = {"items": [{"defaultBilling": True, "addressBookAddress": address}]}
    return record


class NetSuiteConnector:
    """Executes ERP actions against NetSuite's REST record service."""

    platform: str = PLATFORM
    actions: frozenset[str] = frozenset({UPSERT_CUSTOMER, UPDATE_CUSTOMER, UPSERT_INVOICE, APPLY_PAYMENT,
                                         CREATE_CREDIT_MEMO, UPSERT_SALES_ORDER, CANCEL_SALES_ORDER})

    def __init__(self, settings: Settings) -> None:
        self.link_field = settings.netsuite_crm_link_field
        self.http = HttpClient(
            PLATFORM,
            settings.netsuite_url,
            url_variable="CONCORD_NETSUITE_URL",
            timeout=settings.connector_timeout_seconds,
            headers={},
            error_reader=_error_message,
            auth=BearerAuth(netsuite_token_source(settings)),
        )

    async def execute(self, command: Command) -> Outcome:
        """Perform `command` once; raise ConnectorError on failure."""
        if command.action == UPSERT_CUSTOMER:
            external_id = target(command, "external_id")
            return await self._upsert("customer", external_id,
                                      {**customer_fields(command.payload), self.link_field: external_id})
        if command.action == UPDATE_CUSTOMER:
            customer_id = target(command, "customer_id")
            if not command.payload:
                raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id} has no fields")
            response = await self.http.request("PATCH", f"{ROOT}/customer/{segment(customer_id)}",
                                               json=customer_fields(command.payload, self.link_field))
            return Outcome(status=response.status, record_id=customer_id, detail={"fields": sorted(command.payload)})
        if command.action == UPSERT_INVOICE:
            return await self._upsert("invoice", target(command, "external_id"), self._invoice(command))
        if command.action == APPLY_PAYMENT:
            return await self._apply_payment(command)
        if command.action == CREATE_CREDIT_MEMO:
            return await self._credit_memo(command)
        if command.action == UPSERT_SALES_ORDER:
            return await self._upsert("salesOrder", target(command, "external_id"), self._sales_order(command))
        if command.action == CANCEL_SALES_ORDER:
            return await self._cancel_sales_order(target(command, "external_id"))
        raise unsupported(PLATFORM, command)

    async def _upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> Outcome:
        response = await self.http.request("PUT", self.eid_path(record_type, external_id), json=body)
        return self._located(response, external_id)

    @staticmethod
    def eid_path(record_type: str, external_id: str) -> str:
        """The record's path by external id: `eid:` is NetSuite's prefix, the id after it is percent-encoded."""
        return f"{ROOT}/{record_type}/eid:{segment(external_id)}"

    @staticmethod
    def _located(response: HttpResponse, external_id: str) -> Outcome:
        location = response.headers.get("location", "")
        return Outcome(status=response.status, record_id=location.rstrip("/").rpartition("/")[2],
                       detail={"external_id": external_id})

    def _invoice(self, command: Command) -> dict[str, Any]:
        currency = _currency(command)
        total, tax = _amount(command, "total"), command.payload.get("tax") or 0
        status = str(command.payload.get("status") or "open")
        if status not in _INVOICE_STATUS:
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id}: invoice status "
                                 f"{status!r} is not one of {sorted(_INVOICE_STATUS)}")
        status_id, status_name = _INVOICE_STATUS[status]
        remaining = 0 if status in ("paid", "void") else total
        body: dict[str, Any] = {
            "entity": {"externalId": self._customer_key(command)},
            "currency": {"refName": currency},
            "status": {"id": status_id, "refName": status_name},
            "subtotal": to_major(total - tax, currency),
            "taxTotal": to_major(tax, currency),
            "total": to_major(total, currency),
            "amountRemaining": to_major(remaining, currency),
        }
        if command.payload.get("number"):
            body["tranId"] = str(command.payload["number"])
        if (due := _date(command.payload.get("due_at"))) is not None:
            body["dueDate"] = due
        return body

    @staticmethod
    def _customer_key(command: Command) -> str:
        key = command.payload.get("customer_key") or command.customer_key
        if not key:
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id} names no customer "
                                 "(payload customer_key): the ERP record needs its customer")
        return str(key)

    async def _apply_payment(self, command: Command) -> Outcome:
        invoice_key = target(command, "external_id")
        amount, currency = _amount(command), _currency(command)
        if amount <= 0:
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id}: nothing to pay "
                                 f"(amount {amount})")
        invoice = (await self.http.request("GET", self.eid_path("invoice", invoice_key))).json()
        # One payment per occurrence of the disagreement: a retry or a later generation finds it, and a
        # payment undone in the ERP (voided, say) after the drift resolved is paid again when it recurs.
        payment_key = f"concord-pay-{invoice_key}-{amount}" + (f"-{command.occurrence}" if command.occurrence else "")
        body: dict[str, Any] = {
            "customer": {"id": invoice["entity"]["id"]},
            "currency": {"refName": currency},
            "payment": to_major(amount, currency),
            "apply": {"items": [{"doc": {"id": invoice["id"]}, "apply": True, "amount": to_major(amount, currency)}]},
        }
        if (paid := _date(command.payload.get("paid_at"))) is not None:
            body["tranDate"] = paid
        outcome = await self._upsert("customerPayment", payment_key, body)
        return Outcome(status=outcome.status, record_id=outcome.record_id,
                       detail={"external_id": payment_key, "invoice_id": invoice["id"]})

    async def _credit_memo(self, command: Command) -> Outcome:
        refund_id = target(command, "external_id")
        amount, currency = _amount(command), _currency(command)
        body: dict[str, Any] = {
            "entity": {"externalId": self._customer_key(command)},
            "currency": {"refName": currency},
            "total": to_major(amount, currency),
            "memo": f"{command.payload.get('document') or 'refund'} {refund_id}",
        }
        invoice_key = command.payload.get("invoice_id")
        if invoice_key:
            found = await self.http.request("GET", self.eid_path("invoice", str(invoice_key)),
                                           allow=frozenset({404}))
            if found.status == 200:
                body["apply"] = {"items": [{"doc": {"id": found.json()["id"]}, "apply": True,
                                            "amount": to_major(amount, currency)}]}
        return await self._upsert("creditMemo", refund_id, body)

    def _sales_order(self, command: Command) -> dict[str, Any]:
        currency = _currency(command)
        total = to_major(_amount(command, "total"), currency)
        price = command.payload.get("price")
        if not isinstance(price, str) or not price:
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id}: payload 'price' "
                                 f"must be the billing price id (the item's externalId), got {price!r}")
        # The ERP customer by internal id when the saga knows it: a merged-away account's customer re-pointed to
        # this account keeps its own externalId, so a reference by the account id would miss it.
        erp_customer = command.payload.get("erp_customer_id")
        entity = {"id": str(erp_customer)} if erp_customer else {"externalId": self._customer_key(command)}
        return {
            "entity": entity,
            "currency": {"refName": currency},
            "orderStatus": _PENDING_FULFILLMENT,
            "status": _PENDING_FULFILLMENT,
            "total": total,
            "item": {"items": [{"item": {"externalId": price}, "quantity": quantity(command), "amount": total}]},
        }

    async def _cancel_sales_order(self, external_id: str) -> Outcome:
        response = await self.http.request("PATCH", self.eid_path("salesOrder", external_id),
                                           json={"status": _CANCELLED}, allow=frozenset({404}))
        if response.status == 404:
            return Outcome(status=404, detail={"external_id": external_id, "nothing_to_undo": _NO_SUCH_ORDER})
        return self._located(response, external_id)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()
