"""The quote-to-cash saga: every closed-won deal becomes a paying, entitled customer, or stops visibly.

Pure: `advance(book, state, now, config, read_past, signal)` takes one customer's sagas (`SagaBook`, kept
in the `sagas` table co-partitioned with the customer state), what Concord knows of the customer, and at
most one signal (a step's result, a resume), and returns the sagas after it with the commands to send and
the checkpoints to write. The state agent (agents/saga.py) runs it after a customer's events were applied.
docs/saga.md draws it.

Forward, one command at a time, each through the ledger, the connectors, breakers and rate limits:

    validate -> erp_customer -> billing_customer -> subscription -> sales_order -> entitlement

`validate` is a check of the CRM data (no command); a step whose record Concord already holds (an ERP
customer, a Stripe customer of the account) is done without a command. A saga starts for a closed-won
opportunity whose customer has no subscription once every platform was read past the win (`read_past`):
a deal the company's other integrations provisioned is left alone. Only a deal won recently
(`start_within_ms`) starts one by itself: a deal found won at rest (a reconciliation listing the CRM before
billing, a company connected for the first time) would otherwise be provisioned before Concord knew its
subscription; D10 reports it if billing has none, and its `saga.resume` starts the saga.

Exception path: a validation failure, or a `data` error before billing was provisioned, **pauses** the
saga with a reason code, the reason and what to fix; a step with no result within `step_timeout_ms` is
sent again (the same command: the ledger and the platform's idempotency make that harmless) up to
`step_retries` times, then pauses (`timeout`); a transient failure the executor gave up on pauses it
(`unavailable`). `ResumeSaga` continues from the step that stopped, never from the start.

Compensation: a `data` error once the subscription exists, or the deal reopened or lost, undoes the
completed steps in reverse (cancel the subscription, cancel the sales order, suspend the entitlement),
each a command of its own, idempotent on its platform. The ERP and billing customers are master data and
stay. A compensation that fails ends `failed` (resume retries it).

Amendment: a completed saga whose won opportunity changes plan or quantity updates the subscription, then
the support tier when it changes.

Versioning: a saga carries the `version` of the definition it started with and finishes on it
(`DEFINITIONS`); new sagas start on `SagaConfig.version`.

Command ids are derived from (opportunity, version, step, run, incarnation, amendment): the same step
sent again after a crash or a timeout has the same id (the ledger makes it take effect once); `run`
moves on only after a definitive failure, so a resumed step is a new command, and a Stripe create keeps
its `idempotency_key` within an incarnation (a compensated deal won again is a new incarnation).
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import Struct

from concord.core.messages import (
    SAGA_RULE,
    AuditRecord,
    Command,
    ResumeSaga,
    SagaStepResult,
    command_id,
    saga_fingerprint,
)
from concord.drift.rules._common import is_won, live, won_at
from concord.tables.state import CustomerState, Opportunity, PartyRecord

# ---------------------------------------------------------------- vocabulary

RUNNING: Final = "running"
COMPLETED: Final = "completed"
PAUSED: Final = "paused"
COMPENSATING: Final = "compensating"
COMPENSATED: Final = "compensated"
FAILED: Final = "failed"
STATES: Final = (RUNNING, COMPLETED, PAUSED, COMPENSATING, COMPENSATED, FAILED)
#: States in which a saga waits for nothing but a person (or D10's resume).
STOPPED: Final = frozenset({PAUSED, FAILED})
#: States a resume moves a saga out of (`Saga.resume`): stopped, or compensated (provisioned anew).
RESUMABLE: Final = frozenset({PAUSED, FAILED, COMPENSATED})

VALIDATE: Final = "validate"
ERP_CUSTOMER: Final = "erp_customer"
BILLING_CUSTOMER: Final = "billing_customer"
SUBSCRIPTION: Final = "subscription"
SALES_ORDER: Final = "sales_order"
ENTITLEMENT: Final = "entitlement"
AMEND_SUBSCRIPTION: Final = "amend_subscription"
AMEND_ENTITLEMENT: Final = "amend_entitlement"

#: The saga's definitions by version: version 1 did not book a sales order in the ERP.
DEFINITIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (VALIDATE, ERP_CUSTOMER, BILLING_CUSTOMER, SUBSCRIPTION, ENTITLEMENT),
    2: (VALIDATE, ERP_CUSTOMER, BILLING_CUSTOMER, SUBSCRIPTION, SALES_ORDER, ENTITLEMENT),
}
VERSION: Final = 2

#: The command each step sends, and the one that undoes it (steps without an undo are master data).
ACTIONS: Final[dict[str, str]] = {
    ERP_CUSTOMER: "erp.upsert_customer",
    BILLING_CUSTOMER: "billing.create_customer",
    SUBSCRIPTION: "billing.create_subscription",
    SALES_ORDER: "erp.upsert_sales_order",
    ENTITLEMENT: "support.grant_entitlement",
    AMEND_SUBSCRIPTION: "billing.update_subscription",
    AMEND_ENTITLEMENT: "support.set_tier",
}
UNDO: Final[dict[str, str]] = {
    SUBSCRIPTION: "billing.cancel_subscription",
    SALES_ORDER: "erp.cancel_sales_order",
    ENTITLEMENT: "support.suspend_entitlement",
}
PLATFORMS: Final = {"erp": "netsuite", "billing": "stripe", "support": "zendesk"}

#: Countries whose B2B invoices need the buyer's VAT number (the EU VAT area).
TAX_ID_COUNTRIES: Final = frozenset({
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU",
    "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
})

# Reason codes: validation (in the order checked), then the step failures and the compensations.
MISSING_NAME: Final = "missing_name"
MISSING_BILLING_COUNTRY: Final = "missing_billing_country"
MISSING_CURRENCY: Final = "missing_currency"
MISSING_TAX_ID: Final = "missing_tax_id"
MISSING_PLAN: Final = "missing_plan"
UNKNOWN_PLAN: Final = "unknown_plan"
MISSING_QUANTITY: Final = "missing_quantity"
CURRENCY_MISMATCH: Final = "currency_mismatch"
DATA_ERROR: Final = "data_error"
UNAVAILABLE: Final = "unavailable"
TIMEOUT: Final = "timeout"
PERMANENT_FAILURE: Final = "permanent_failure"
DEAL_REOPENED: Final = "deal_reopened"


class SagaConfig(Struct, frozen=True, kw_only=True):
    """How sagas run (core/settings.py `saga_*`; the tiers are the drift configuration's `plan_tiers`)."""

    enabled: bool = True
    version: int = VERSION
    step_timeout_ms: int = 300_000
    step_retries: int = 2
    plan_tiers: dict[str, str] = {}
    # A deal first seen won longer ago than this starts no saga by itself (D10 reports it if billing has no
    # subscription once every platform is read or listed, and its saga.resume starts one).
    start_within_ms: int = 3_600_000


class Terms(Struct, frozen=True, kw_only=True, array_like=True):
    """What the deal sold, as the saga provisions it (from the opportunity)."""

    plan: str | None = None
    quantity: int | None = None
    amount: int | None = None
    currency: str | None = None


class Done(Struct, frozen=True, kw_only=True, array_like=True):
    """A completed step: the record it made or found."""

    step: str
    record_id: str = ""
    command_id: str = ""  # "" when nothing was sent (a check, or a record Concord already held)


class Saga(Struct, frozen=True, kw_only=True):
    """One opportunity's saga."""

    opportunity_id: str
    customer_key: str
    version: int
    state: str  # one of STATES
    step: str  # the step it is at (the last one, once completed)
    started_at: int
    updated_at: int
    terms: Terms
    reason_code: str = ""
    reason: str = ""
    fix: str = ""  # what a person must do before resuming
    done: tuple[Done, ...] = ()
    undone: tuple[str, ...] = ()  # steps compensated
    amending: tuple[str, ...] = ()  # amendment steps still to run
    amend_to: Terms | None = None
    command: Command | None = None  # the command in flight (sent again as it is on a timeout)
    deadline: int = 0  # when the command in flight times out
    attempts: int = 0  # sends of the command in flight
    run: int = 0
    incarnation: int = 0
    amendment: int = 0


class SagaBook(Struct, frozen=True, kw_only=True):
    """The sagas of one customer, by opportunity id (the value of the `sagas` table)."""

    sagas: dict[str, Saga] = {}


class Progress(Struct, frozen=True, kw_only=True):
    """What `advance` decided."""

    book: SagaBook
    commands: tuple[Command, ...] = ()
    checkpoints: tuple[AuditRecord, ...] = ()
    changed: tuple[str, ...] = ()  # opportunity ids whose saga changed
    next_due: int = 0  # earliest time `advance` must run again without a signal (0: never)


#: `advance`'s `read_past` when how far the platforms were read is not known (no watermark published yet).
UNREAD: Final = -1

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SagaBook)


def dump(book: SagaBook) -> bytes:
    return _encoder.encode(book)


def load(data: bytes) -> SagaBook:
    return _decoder.decode(data)


def marks(book: SagaBook) -> dict[str, str]:
    """What the rules see of the sagas (CustomerState.sagas): each opportunity's saga state."""
    return {opportunity: saga.state for opportunity, saga in book.sagas.items()}


# ---------------------------------------------------------------- validation

_FIXES: Final = {
    MISSING_NAME: "give account {key} its legal name in Salesforce",
    MISSING_BILLING_COUNTRY: "set account {key}'s billing country in Salesforce",
    MISSING_CURRENCY: "set account {key}'s currency in Salesforce",
    MISSING_TAX_ID: "set account {key}'s tax id (VAT number) in Salesforce: its billing country {country} needs one",
    MISSING_PLAN: "set opportunity {opportunity}'s plan in Salesforce",
    UNKNOWN_PLAN: "map plan {plan} to a support tier (plan_tiers in the rules file), or sell a known plan",
    MISSING_QUANTITY: "set opportunity {opportunity}'s quantity (TotalOpportunityQuantity) in Salesforce",
    CURRENCY_MISMATCH: "opportunity {opportunity} is in {opp_currency}, account {key} in {currency}: make them agree",
}


def validate(state: CustomerState, opp: Opportunity, tiers: dict[str, str]) -> str | None:
    """The reason code of the first thing that keeps the deal from being provisioned (None: valid)."""
    account = state.crm.account
    if account is None or not (account.name or "").strip():
        return MISSING_NAME
    if not account.country:
        return MISSING_BILLING_COUNTRY
    if not account.currency:
        return MISSING_CURRENCY
    if account.country.upper() in TAX_ID_COUNTRIES and not account.tax_id:
        return MISSING_TAX_ID
    if not opp.plan:
        return MISSING_PLAN
    if opp.plan not in tiers:
        return UNKNOWN_PLAN
    if not opp.quantity or opp.quantity < 1:
        return MISSING_QUANTITY
    if opp.currency and opp.currency.upper() != account.currency.upper():
        return CURRENCY_MISMATCH
    return None


def _fix(code: str, state: CustomerState, opp: Opportunity) -> str:
    account = state.crm.account
    return _FIXES[code].format(key=state.key, opportunity=opp.id, plan=opp.plan, opp_currency=opp.currency,
                               country=account.country if account else None,
                               currency=account.currency if account else None) + ", then resume the saga"


def terms_of(opp: Opportunity) -> Terms:
    return Terms(plan=opp.plan, quantity=opp.quantity, amount=opp.amount, currency=opp.currency)


# ---------------------------------------------------------------- the run


def _live(records: dict[str, PartyRecord]) -> PartyRecord | None:
    """The customer's record in a system (a deterministic pick among several: the smallest id)."""
    return min(live(records), key=lambda r: r.id, default=None)


def _given(**fields: object) -> dict[str, object]:
    """The payload fields that have a value (the account's blank ones are not sent)."""
    return {name: value for name, value in fields.items() if value is not None}


def _record_of(saga: Saga, step: str) -> str:
    return next((d.record_id for d in reversed(saga.done) if d.step == step), "")


class _Run:
    """One `advance`: collects the commands and checkpoints of every saga it moves."""

    def __init__(self, state: CustomerState, now: int, config: SagaConfig) -> None:
        self.state = state
        self.now = now
        self.config = config
        self.commands: list[Command] = []
        self.checkpoints: list[AuditRecord] = []

    def checkpoint(self, saga: Saga, kind: str, **detail: object) -> None:
        self.checkpoints.append(AuditRecord(
            kind=f"saga.{kind}", at=self.now, correlation_id=saga.opportunity_id, platform="concord",
            customer_key=saga.customer_key,
            detail={"opportunity_id": saga.opportunity_id, "state": saga.state, "step": saga.step,
                    "version": saga.version, **detail}))

    # -- transitions

    def start(self, opp: Opportunity) -> Saga:
        saga = Saga(opportunity_id=opp.id, customer_key=self.state.key, version=self.config.version, state=RUNNING,
                    step=VALIDATE, started_at=self.now, updated_at=self.now, terms=terms_of(opp))
        self.checkpoint(saga, "started", won_at=won_at(opp))
        return saga

    def pause(self, saga: Saga, code: str, reason: str, fix: str, state: str = PAUSED) -> Saga:
        saga = msgspec.structs.replace(saga, state=state, reason_code=code, reason=reason, fix=fix,
                                       updated_at=self.now)
        self.checkpoint(saga, state, reason_code=code, reason=reason, fix=fix)
        return saga

    def send(self, saga: Saga, step: str, action: str, target: dict[str, str],
             payload: dict[str, object]) -> Saga:
        key = f"{saga.opportunity_id}|{saga.version}|{step}|{saga.run}|{saga.incarnation}|{saga.amendment}"
        command = Command(
            command_id=command_id(saga_fingerprint(key), action, 0),
            action=action, platform=PLATFORMS[action.split(".", 1)[0]], target=target, payload=dict(payload),
            fingerprint=saga_fingerprint(saga.opportunity_id), rule=SAGA_RULE, customer_key=saga.customer_key,
            generation=saga.run, correlation_id=saga.opportunity_id, created_at=self.now)
        self.commands.append(command)
        return msgspec.structs.replace(saga, step=step, command=command, attempts=1, updated_at=self.now,
                                       deadline=self.now + self.config.step_timeout_ms)

    def complete(self, saga: Saga, step: str, record_id: str = "", command_id_: str = "") -> Saga:
        saga = msgspec.structs.replace(saga, step=step, done=(*saga.done, Done(step=step, record_id=record_id,
                                                                             command_id=command_id_)),
                                       updated_at=self.now)
        self.checkpoint(saga, "step_done", record_id=record_id, command_id=command_id_)
        return saga

    # -- signals

    def result(self, saga: Saga, signal: SagaStepResult) -> Saga:
        command = saga.command
        if command is None or signal.command_id != command.command_id:
            return saga  # a duplicate, or the result of a command sent before a resume: already taken into account
        saga = msgspec.structs.replace(saga, command=None, deadline=0, attempts=0)
        ok = signal.status in ("done", "already_done")
        step = saga.step
        if ok:
            if saga.state == PAUSED and saga.reason_code == TIMEOUT:  # a late answer to a timed-out step
                saga = msgspec.structs.replace(saga, state=RUNNING, reason_code="", reason="", fix="")
            if step in saga.amending:
                saga = msgspec.structs.replace(saga, amending=saga.amending[1:])
                self.checkpoint(saga, "step_done", record_id=signal.record_id, command_id=signal.command_id)
                return saga
            if command.action in UNDO.values():
                saga = msgspec.structs.replace(saga, undone=(*saga.undone, step), updated_at=self.now)
                self.checkpoint(saga, "step_undone", record_id=signal.record_id, command_id=signal.command_id)
                return saga
            return self.complete(saga, step, signal.record_id, signal.command_id)
        if saga.state == COMPENSATING and command.action not in UNDO.values():
            return saga  # a forward step that was in flight when the deal was reopened took no effect: nothing to undo
        # Failed for good: the same command id is never sent again (the ledger remembers it as failed).
        saga = msgspec.structs.replace(saga, run=saga.run + 1)
        what = f"{command.action} ({command.platform}) failed: {signal.reason}".strip()
        if command.action in UNDO.values():
            return self.pause(saga, DATA_ERROR if signal.error_kind == "data" else UNAVAILABLE, what,
                              f"undo step {step} by hand or fix {command.platform}, then resume", FAILED)
        if signal.error_kind != "data":
            return self.pause(saga, UNAVAILABLE, what, f"resume once {command.platform} is available again")
        if any(d.step == SUBSCRIPTION for d in saga.done) and not saga.amending:
            return self.compensate(saga, PERMANENT_FAILURE, f"step {step}: {what}")
        return self.pause(saga, DATA_ERROR, what, f"fix what {command.platform} refused, then resume the saga")

    def resume(self, saga: Saga, signal: ResumeSaga) -> Saga:
        if saga.state not in RESUMABLE:
            self.checkpoint(saga, "resume_ignored", by=signal.by, note=signal.note)
            return saga
        if saga.state == COMPENSATED:
            # Provisioned anew: what was undone is done again, as a new incarnation (new Stripe idempotency keys).
            kept = tuple(d for d in saga.done if d.step not in UNDO and d.step != VALIDATE)
            saga = msgspec.structs.replace(saga, done=kept, undone=(), incarnation=saga.incarnation + 1,
                                           run=saga.run + 1)
        # Only a compensation fails (`failed`): resuming it goes on undoing.
        back = COMPENSATING if saga.state == FAILED else RUNNING
        saga = msgspec.structs.replace(saga, state=back, reason_code="", reason="", fix="", updated_at=self.now)
        if (command := saga.command) is not None:  # timed out: the same command again (it may still take effect)
            saga = msgspec.structs.replace(saga, deadline=self.now + self.config.step_timeout_ms,
                                           attempts=saga.attempts + 1)
            self.commands.append(msgspec.structs.replace(command, attempt=saga.attempts - 1, created_at=self.now))
        self.checkpoint(saga, "resumed", by=signal.by, note=signal.note)
        return saga

    def compensate(self, saga: Saga, code: str, reason: str) -> Saga:
        saga = msgspec.structs.replace(saga, state=COMPENSATING, reason_code=code, reason=reason, fix="",
                                       amending=(), amend_to=None, updated_at=self.now)
        self.checkpoint(saga, "compensating", reason_code=code, reason=reason)
        return saga

    # -- what the customer's records say

    def watch(self, saga: Saga, opp: Opportunity) -> Saga:
        """React to the opportunity: reopened or lost (compensate), won again, or amended."""
        won = is_won(opp)
        if not won and saga.state in (RUNNING, PAUSED, COMPLETED):
            what = "deleted" if opp.deleted else f"reopened or lost (stage {opp.stage!r})"
            return self.compensate(saga, DEAL_REOPENED, f"opportunity {opp.id} was {what} after it was won")
        if won and saga.state == COMPENSATED and saga.reason_code == DEAL_REOPENED:
            self.checkpoint(saga, "won_again")
            return self.resume(saga, ResumeSaga(customer_key=saga.customer_key, opportunity_id=opp.id,
                                                by="won again"))
        if won and saga.state == COMPLETED and (opp.plan, opp.quantity) != (saga.terms.plan, saga.terms.quantity):
            new = terms_of(opp)
            code = (MISSING_PLAN if not new.plan else UNKNOWN_PLAN if new.plan not in self.config.plan_tiers
                    else MISSING_QUANTITY if not new.quantity or new.quantity < 1 else None)
            steps: tuple[str, ...] = (AMEND_SUBSCRIPTION,)
            if self.config.plan_tiers.get(new.plan or "") != self.config.plan_tiers.get(saga.terms.plan or ""):
                steps = (AMEND_SUBSCRIPTION, AMEND_ENTITLEMENT)
            saga = msgspec.structs.replace(saga, state=RUNNING, amend_to=new, amending=steps,
                                           amendment=saga.amendment + 1, updated_at=self.now)
            self.checkpoint(saga, "amending", plan=new.plan, quantity=new.quantity)
            if code is not None:
                return self.pause(saga, code, f"the amended deal cannot be provisioned: {code}", _fix(code, self.state,
                                                                                                     opp))
        return saga

    # -- driving

    def drive(self, saga: Saga, opp: Opportunity | None) -> Saga:
        """Take every step that can be taken now: at most one command in flight per saga."""
        while True:
            if saga.state not in (RUNNING, COMPENSATING):
                return saga
            if saga.command is not None:
                return self._wait(saga)
            if saga.state == COMPENSATING:
                undo = [d for d in reversed(saga.done) if d.step in UNDO and d.step not in saga.undone]
                if not undo:
                    saga = msgspec.structs.replace(saga, state=COMPENSATED, updated_at=self.now)
                    self.checkpoint(saga, COMPENSATED, reason_code=saga.reason_code, reason=saga.reason)
                    return saga
                saga = self._undo(saga, undo[0])
                continue
            if saga.amending:
                saga = self._amend(saga)
                continue
            step = next((s for s in DEFINITIONS[saga.version] if s not in {d.step for d in saga.done}), None)
            if step is None:
                if saga.amend_to is not None:
                    saga = msgspec.structs.replace(saga, terms=saga.amend_to, amend_to=None)
                saga = msgspec.structs.replace(saga, state=COMPLETED, updated_at=self.now)
                self.checkpoint(saga, COMPLETED)
                return saga
            if opp is None:
                return self.pause(saga, DATA_ERROR, f"opportunity {saga.opportunity_id} is no longer this customer's",
                                  "look the deal up in Salesforce, then resume")
            saga = self._forward(saga, step, opp)

    def _wait(self, saga: Saga) -> Saga:
        command = saga.command
        assert command is not None
        if self.now < saga.deadline:
            return saga
        if saga.attempts <= self.config.step_retries:
            saga = msgspec.structs.replace(saga, attempts=saga.attempts + 1,
                                           deadline=self.now + self.config.step_timeout_ms, updated_at=self.now)
            self.commands.append(msgspec.structs.replace(command, attempt=saga.attempts - 1, created_at=self.now))
            self.checkpoint(saga, "step_retried", command_id=command.command_id, attempt=saga.attempts)
            return saga
        seconds = self.config.step_timeout_ms // 1000
        reason = f"step {saga.step}: no result for {command.action} within {seconds} s, {saga.attempts} times"
        fix = f"see the command {command.command_id} (dead letters, {command.platform}), then resume"
        return self.pause(saga, TIMEOUT, reason, fix, FAILED if saga.state == COMPENSATING else PAUSED)

    def _forward(self, saga: Saga, step: str, opp: Opportunity) -> Saga:
        state, key = self.state, saga.customer_key
        account = state.crm.account
        if step == VALIDATE:
            code = validate(state, opp, self.config.plan_tiers)
            if code is not None:
                saga = msgspec.structs.replace(saga, step=VALIDATE)
                return self.pause(saga, code, f"the deal cannot be provisioned: {code.replace('_', ' ')}",
                                  _fix(code, state, opp))
            saga = msgspec.structs.replace(saga, terms=terms_of(opp))
            return self.complete(saga, VALIDATE)
        if step == ERP_CUSTOMER:
            found = _live(state.erp.customers)
            if found is not None:
                return self.complete(saga, step, found.id)
            assert account is not None
            return self.send(saga, step, ACTIONS[step], {"external_id": key}, _given(
                name=account.name, currency=account.currency, payment_terms=account.payment_terms,
                tax_id=account.tax_id, address=account.address, country=account.country))
        if step == BILLING_CUSTOMER:
            found = _live(state.billing.customers)
            if found is not None:
                return self.complete(saga, step, found.id)
            assert account is not None
            return self.send(saga, step, ACTIONS[step], {"crm_account_id": key}, _given(
                name=account.name, country=account.country, address=account.address, tax_id=account.tax_id,
                idempotency_key=f"concord-q2c-{saga.opportunity_id}-customer"))
        terms = saga.terms
        if step == SUBSCRIPTION:
            return self.send(saga, step, ACTIONS[step], {"customer_id": _record_of(saga, BILLING_CUSTOMER)},
                             {"price": terms.plan, "quantity": terms.quantity, "opportunity_id": saga.opportunity_id,
                              "currency": terms.currency,
                              "idempotency_key": f"concord-q2c-{saga.opportunity_id}-subscription-{saga.incarnation}"})
        if step == SALES_ORDER:
            return self.send(saga, step, ACTIONS[step], {"external_id": saga.opportunity_id},
                             {"customer_key": key, "erp_customer_id": _record_of(saga, ERP_CUSTOMER),
                              "price": terms.plan, "quantity": terms.quantity, "total": terms.amount,
                              "currency": terms.currency})
        if step == ENTITLEMENT:
            org = _live(state.support.organizations)
            target = {"organization_id": org.id} if org is not None else {"crm_account_id": key}
            payload: dict[str, object] = {"tier": self.config.plan_tiers.get(terms.plan or "")}
            if org is None and account is not None and account.name:
                payload["name"] = account.name
            return self.send(saga, step, ACTIONS[step], target, payload)
        raise ValueError(f"saga version {saga.version} has an unknown step {step!r}")

    def _undo(self, saga: Saga, done: Done) -> Saga:
        step = done.step
        if step == SALES_ORDER:
            target = {"external_id": saga.opportunity_id}
        elif step == SUBSCRIPTION:
            target = {"subscription_id": done.record_id}
        else:
            target = {"organization_id": done.record_id}
        return self.send(saga, step, UNDO[step], target, {})

    def _amend(self, saga: Saga) -> Saga:
        step, new = saga.amending[0], saga.amend_to
        assert new is not None
        if step == AMEND_SUBSCRIPTION:
            return self.send(saga, step, ACTIONS[step], {"subscription_id": _record_of(saga, SUBSCRIPTION)},
                             {"price": new.plan, "quantity": new.quantity})
        return self.send(saga, step, ACTIONS[step], {"organization_id": _record_of(saga, ENTITLEMENT)},
                         {"tier": self.config.plan_tiers.get(new.plan or "")})


def wants_saga(state: CustomerState, opp: Opportunity) -> bool:
    """A closed-won opportunity of a customer billing knows no subscription of (D10 counts any, ended too)."""
    return is_won(opp) and not state.billing.subscriptions


def advance(book: SagaBook, state: CustomerState, now: int, config: SagaConfig,
            read_past: int | None = None, signal: SagaStepResult | ResumeSaga | None = None) -> Progress:
    """Move one customer's sagas: the signal first, then what the state says, then every step possible now.

    `read_past`: how far (source time, epoch ms) every platform has been read; a saga starts only for a
    deal won before it, so a subscription provisioned by others and not read yet is not provisioned twice
    (None: read to the end, as in tests; `UNREAD`: no reading yet, so no saga starts).
    """
    run = _Run(state, now, config)
    sagas = dict(book.sagas)
    before = dict(book.sagas)
    if isinstance(signal, SagaStepResult) and signal.opportunity_id in sagas:
        sagas[signal.opportunity_id] = run.result(sagas[signal.opportunity_id], signal)
    elif isinstance(signal, ResumeSaga):
        saga = sagas.get(signal.opportunity_id)
        opp = state.crm.opportunities.get(signal.opportunity_id)
        if saga is not None:
            sagas[signal.opportunity_id] = run.resume(saga, signal)
        elif opp is not None and wants_saga(state, opp) and config.enabled:
            sagas[opp.id] = run.start(opp)  # D10 found a won deal no saga took (started before sagas were on)
    due = 0
    opportunities = state.crm.opportunities
    if config.enabled and state.merged_into is None:
        for opp in opportunities.values():
            saga = sagas.get(opp.id)
            if saga is not None:
                sagas[opp.id] = run.watch(saga, opp)
            elif wants_saga(state, opp) and now - (won := won_at(opp)) <= config.start_within_ms:
                if read_past is None or won <= read_past:
                    sagas[opp.id] = run.start(opp)
                else:
                    # Read past it soon (the deadline ticks once every platform is); not known: look again in a second.
                    wait = now + 1000 if read_past == UNREAD else won
                    due = wait if not due else min(due, wait)
    for opportunity, saga in sagas.items():
        opp = opportunities.get(opportunity)
        saga = run.drive(saga, opp)
        if saga.state == COMPLETED and opp is not None and config.enabled:
            # Changed while the saga was provisioning (an amendment is taken once it completed).
            saga = run.drive(run.watch(saga, opp), opp)
        sagas[opportunity] = saga
        if saga.command is not None and saga.state in (RUNNING, COMPENSATING):
            due = saga.deadline if not due else min(due, saga.deadline)
    changed = tuple(k for k, v in sagas.items() if before.get(k) is not v)
    return Progress(book=SagaBook(sagas=sagas) if changed else book, commands=tuple(run.commands),
                    checkpoints=tuple(run.checkpoints), changed=changed, next_due=due)


class SagaView(Struct, frozen=True, kw_only=True):
    """A saga as `GET /api/sagas` and the console show it."""

    opportunity_id: str
    customer_key: str
    state: str
    step: str
    version: int
    started_at: int
    updated_at: int
    reason: str = ""
    reason_code: str = ""
    fix: str = ""
    done: tuple[str, ...] = ()
    undone: tuple[str, ...] = ()
    command_id: str = ""  # the command in flight ("" when none)
    attempts: int = 0
    plan: str | None = None
    quantity: int | None = None
    amount: int | None = None
    currency: str | None = None
    records: dict[str, str] = {}  # step -> the record it made or found


def view(saga: Saga) -> SagaView:
    terms = saga.terms
    return SagaView(
        opportunity_id=saga.opportunity_id, customer_key=saga.customer_key, state=saga.state, step=saga.step,
        version=saga.version, started_at=saga.started_at, updated_at=saga.updated_at, reason=saga.reason,
        reason_code=saga.reason_code, fix=saga.fix, done=tuple(d.step for d in saga.done), undone=saga.undone,
        command_id=saga.command.command_id if saga.command is not None else "", attempts=saga.attempts,
        plan=terms.plan, quantity=terms.quantity, amount=terms.amount, currency=terms.currency,
        records={d.step: d.record_id for d in saga.done if d.record_id})
