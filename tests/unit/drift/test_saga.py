"""The quote-to-cash saga, every path, without Kafka: drift/saga.py driven by hand-made step results."""

from __future__ import annotations

import msgspec

from concord.codecs.model import Platform
from concord.core.messages import SAGA_RULE, Command, ResumeSaga, SagaStepResult
from concord.drift import saga as sg
from concord.tables.state import CustomerState
from tests.unit.drift.builders import HOUR, KEY, account, customer, opportunity, state_of, subscription, won

TIERS = {"price_pro": "pro", "price_max": "enterprise"}
CONFIG = sg.SagaConfig(plan_tiers=TIERS, step_timeout_ms=60_000, step_retries=2, start_within_ms=24 * HOUR)
NOW = 10 * HOUR


def with_quantity(state: CustomerState, opp_id: str, quantity: int | None) -> CustomerState:
    opp = msgspec.structs.replace(state.crm.opportunities[opp_id], quantity=quantity)
    crm = msgspec.structs.replace(state.crm, opportunities={**state.crm.opportunities, opp_id: opp})
    return msgspec.structs.replace(state, crm=crm)


def deal(country: str = "US", tax_id: str | None = None, quantity: int | None = 3, **opp: object) -> CustomerState:
    fields = {"plan": "price_pro", "amount": 30_000, "currency": "USD", **opp}
    state = state_of(account(HOUR, name="Acme Corp", country=country, currency="USD", tax_id=tax_id),
                     won("006A", 2 * HOUR, **fields))
    return with_quantity(state, "006A", quantity)


def ok(command: Command, record_id: str = "", at: int = NOW) -> SagaStepResult:
    return SagaStepResult(customer_key=KEY, opportunity_id="006A", command_id=command.command_id,
                          action=command.action, status="done", at=at, record_id=record_id)


def refused(command: Command, kind: str = "data", reason: str = "refused") -> SagaStepResult:
    return SagaStepResult(customer_key=KEY, opportunity_id="006A", command_id=command.command_id,
                          action=command.action, status="dead_lettered", at=NOW, error_kind=kind, reason=reason)


RECORDS = {"erp.upsert_customer": "ns-7", "billing.create_customer": "cus_1", "billing.create_subscription": "sub_1",
           "erp.upsert_sales_order": "so-9", "support.grant_entitlement": "org-5"}


class Driver:
    """Answers each command the saga sends, as the command agents would; records what was sent."""

    def __init__(self, state: CustomerState, config: sg.SagaConfig = CONFIG) -> None:
        self.state = state
        self.config = config
        self.book = sg.SagaBook()
        self.sent: list[Command] = []
        self.kinds: list[str] = []

    def step(self, signal: SagaStepResult | ResumeSaga | None = None, now: int = NOW) -> sg.Progress:
        progress = sg.advance(self.book, self.state, now, self.config, None, signal)
        self.book = progress.book
        self.sent += progress.commands
        self.kinds += [c.kind for c in progress.checkpoints]
        return progress

    @property
    def saga(self) -> sg.Saga:
        return self.book.sagas["006A"]

    def answer_all(self) -> None:
        """Answer every command in flight with success until the saga waits for nothing."""
        while (command := self.saga.command) is not None and self.saga.state in (sg.RUNNING, sg.COMPENSATING):
            self.step(ok(command, RECORDS.get(command.action, "")))


def test_happy_path_provisions_every_system_one_command_at_a_time() -> None:
    d = Driver(deal())
    progress = d.step()
    assert [c.action for c in progress.commands] == ["erp.upsert_customer"]  # validated, then the first command
    assert d.saga.state == sg.RUNNING and d.saga.step == sg.ERP_CUSTOMER
    d.answer_all()
    assert [c.action for c in d.sent] == ["erp.upsert_customer", "billing.create_customer",
                                          "billing.create_subscription", "erp.upsert_sales_order",
                                          "support.grant_entitlement"]
    assert d.saga.state == sg.COMPLETED and d.saga.version == sg.VERSION
    assert [done.step for done in d.saga.done] == list(sg.DEFINITIONS[2])
    erp, billing, sub, order, grant = d.sent
    assert erp.target == {"external_id": KEY} and erp.payload["name"] == "Acme Corp"
    assert billing.target == {"crm_account_id": KEY} and billing.payload["idempotency_key"]
    assert sub.target == {"customer_id": "cus_1"}
    assert (sub.payload["price"], sub.payload["quantity"], sub.payload["opportunity_id"]) == ("price_pro", 3, "006A")
    assert order.target == {"external_id": "006A"} and order.payload["erp_customer_id"] == "ns-7"
    assert (order.payload["total"], order.payload["currency"], order.payload["customer_key"]) == (30_000, "USD", KEY)
    assert grant.target == {"crm_account_id": KEY} and grant.payload == {"tier": "pro", "name": "Acme Corp"}
    assert len({c.command_id for c in d.sent}) == 5
    assert {(c.rule, c.fingerprint, c.correlation_id, c.customer_key) for c in d.sent} == {
        (SAGA_RULE, "q2c:006A", "006A", KEY)}
    assert d.kinds[0] == "saga.started" and d.kinds[-1] == "saga.completed"
    assert d.kinds.count("saga.step_done") == 6
    assert sg.marks(d.book) == {"006A": sg.COMPLETED}


def test_records_concord_already_holds_are_used_not_created_again() -> None:
    state = state_of(customer(Platform.NETSUITE, "ns-1", HOUR, crm_account_id=KEY),
                     customer(Platform.STRIPE, "cus_9", HOUR, crm_account_id=KEY),
                     customer(Platform.ZENDESK, "77", HOUR, crm_account_id=KEY), base=deal())
    d = Driver(state)
    d.step()
    assert [c.action for c in d.sent] == ["billing.create_subscription"]
    assert d.sent[0].target == {"customer_id": "cus_9"}
    d.answer_all()
    assert d.sent[-1].target == {"organization_id": "77"} and d.sent[-1].payload == {"tier": "pro"}


def test_a_deal_billing_already_knows_a_subscription_of_gets_no_saga() -> None:
    state = state_of(subscription("sub_1", "active", HOUR), base=deal())
    assert sg.advance(sg.SagaBook(), state, NOW, CONFIG).book.sagas == {}
    open_deal = state_of(opportunity("006B", HOUR, stage="Negotiation/Review"), base=deal(plan=None))
    assert set(sg.advance(sg.SagaBook(), open_deal, NOW, CONFIG).book.sagas) == {"006A"}


def test_no_saga_starts_before_every_platform_was_read_past_the_win() -> None:
    state = deal()
    waiting = sg.advance(sg.SagaBook(), state, NOW, CONFIG, read_past=2 * HOUR - 1)
    assert waiting.book.sagas == {} and waiting.next_due == 2 * HOUR
    assert sg.advance(sg.SagaBook(), state, NOW, CONFIG, read_past=2 * HOUR).book.sagas["006A"].state == sg.RUNNING


def test_incomplete_account_pauses_with_the_reason_and_the_fix_then_resumes_once_fixed() -> None:
    d = Driver(deal(country="DE"))
    progress = d.step()
    assert progress.commands == ()
    assert (d.saga.state, d.saga.step, d.saga.reason_code) == (sg.PAUSED, sg.VALIDATE, sg.MISSING_TAX_ID)
    assert "tax id" in d.saga.fix and "DE" in d.saga.fix and d.saga.reason
    assert progress.next_due == 0  # waits for a person, not for a clock
    resume = ResumeSaga(customer_key=KEY, opportunity_id="006A", by="ops@example.com")
    d.step(resume)
    assert d.saga.state == sg.PAUSED and d.sent == []  # nothing fixed yet: paused again, nothing sent
    d.state = state_of(account(3 * HOUR, tax_id="DE123456789"), base=d.state)
    d.step(resume)
    assert d.saga.state == sg.RUNNING and [c.action for c in d.sent] == ["erp.upsert_customer"]
    d.answer_all()
    assert d.saga.state == sg.COMPLETED
    assert d.kinds.count("saga.resumed") == 2


def test_validation_checks_each_field_in_order() -> None:
    assert sg.validate(deal(), deal().crm.opportunities["006A"], TIERS) is None
    cases = {
        sg.MISSING_BILLING_COUNTRY: state_of(account(3 * HOUR, country=None), base=deal()),
        sg.MISSING_PLAN: deal(plan=None),
        sg.UNKNOWN_PLAN: deal(plan="price_gold"),
        sg.MISSING_QUANTITY: deal(quantity=None),
        sg.CURRENCY_MISMATCH: deal(currency="EUR"),
    }
    for code, state in cases.items():
        assert sg.validate(state, state.crm.opportunities["006A"], TIERS) == code, code


def test_a_data_error_before_billing_pauses_and_resume_continues_from_that_step_never_from_the_start() -> None:
    d = Driver(deal())
    erp = d.step().commands[0]
    d.step(ok(erp, "ns-7"))
    first = d.saga.command
    assert first is not None and first.action == "billing.create_customer"
    d.step(refused(first, reason="Invalid country"))
    assert (d.saga.state, d.saga.step, d.saga.reason_code) == (sg.PAUSED, sg.BILLING_CUSTOMER, sg.DATA_ERROR)
    assert "Invalid country" in d.saga.reason
    d.step(ResumeSaga(customer_key=KEY, opportunity_id="006A", by="ops"))
    again = d.sent[-1]
    assert again.action == "billing.create_customer" and again.command_id != first.command_id
    assert again.payload["idempotency_key"] == first.payload["idempotency_key"]  # Stripe's own dedup holds
    assert [c.action for c in d.sent].count("erp.upsert_customer") == 1


def test_a_permanent_failure_after_billing_compensates_in_reverse_order() -> None:
    d = Driver(deal())
    d.step()
    order = None
    while (command := d.saga.command) is not None and command.action != "erp.upsert_sales_order":
        d.step(ok(command, RECORDS[command.action]))
    order = d.saga.command
    assert order is not None
    d.step(refused(order, reason="item not available for sale [USER_ERROR]"))
    assert d.saga.state == sg.COMPENSATING and d.saga.reason_code == sg.PERMANENT_FAILURE
    cancel = d.sent[-1]
    assert (cancel.action, cancel.target) == ("billing.cancel_subscription", {"subscription_id": "sub_1"})
    d.answer_all()
    assert d.saga.state == sg.COMPENSATED and d.saga.undone == (sg.SUBSCRIPTION,)
    assert "USER_ERROR" in d.saga.reason
    assert not any(c.action.startswith(("erp.cancel", "support.")) for c in d.sent)  # never done: nothing to undo


def test_a_deal_reopened_after_provisioning_is_undone_step_by_step() -> None:
    d = Driver(deal())
    d.step()
    d.answer_all()
    assert d.saga.state == sg.COMPLETED
    d.state = state_of(opportunity("006A", 5 * HOUR, stage="Negotiation/Review", is_won=False, is_closed=False),
                       base=d.state)
    d.step()
    assert d.saga.state == sg.COMPENSATING and d.saga.reason_code == sg.DEAL_REOPENED
    d.answer_all()
    undo = [(c.action, c.target) for c in d.sent[5:]]
    assert undo == [("support.suspend_entitlement", {"organization_id": "org-5"}),
                    ("erp.cancel_sales_order", {"external_id": "006A"}),
                    ("billing.cancel_subscription", {"subscription_id": "sub_1"})]
    assert d.saga.state == sg.COMPENSATED
    d.step()
    assert len(d.sent) == 8  # compensated stays compensated: nothing more is sent


def lost_while_subscribing() -> tuple[Driver, Command]:
    """A saga whose deal is lost while its subscription command is in flight (the command not answered yet)."""
    d = Driver(deal())
    d.step()
    while (command := d.saga.command) is not None and command.action != "billing.create_subscription":
        d.step(ok(command, RECORDS[command.action]))
    in_flight = d.saga.command
    assert in_flight is not None
    d.state = state_of(opportunity("006A", 5 * HOUR, is_won=False, stage="Closed Lost"), base=d.state)
    d.step()
    return d, in_flight


def test_a_deal_reopened_mid_flight_waits_for_the_step_in_flight_then_undoes_it_too() -> None:
    d, in_flight = lost_while_subscribing()
    assert d.saga.state == sg.COMPENSATING and d.sent[-1] is in_flight  # nothing new until its answer
    d.step(ok(in_flight, "sub_1"))
    assert d.sent[-1].action == "billing.cancel_subscription"
    d.answer_all()
    assert d.saga.state == sg.COMPENSATED


def test_an_amendment_updates_the_subscription_and_the_tier() -> None:
    d = Driver(deal())
    d.step()
    d.answer_all()
    d.state = with_quantity(d.state, "006A", 5)
    d.step()
    update = d.sent[-1]
    assert (update.action, update.target, update.payload) == (
        "billing.update_subscription", {"subscription_id": "sub_1"}, {"price": "price_pro", "quantity": 5})
    d.answer_all()
    assert d.saga.state == sg.COMPLETED and d.saga.terms.quantity == 5 and len(d.sent) == 6  # same tier: no set_tier
    d.state = state_of(opportunity("006A", 6 * HOUR, plan="price_max"), base=d.state)
    d.step()
    d.answer_all()
    assert [c.action for c in d.sent[6:]] == ["billing.update_subscription", "support.set_tier"]
    assert d.sent[-1].payload == {"tier": "enterprise"} and d.sent[-1].target == {"organization_id": "org-5"}
    assert d.saga.terms.plan == "price_max" and d.saga.state == sg.COMPLETED


def test_a_step_without_a_result_is_sent_again_then_paused_and_a_late_answer_still_counts() -> None:
    d = Driver(deal())
    first = d.step().commands[0]
    assert d.step(now=NOW + 59_999).commands == ()  # within its deadline: nothing
    retried = d.step(now=NOW + 60_000)
    assert retried.commands[0].command_id == first.command_id  # the same command: it takes effect once
    assert retried.next_due == NOW + 120_000
    d.step(now=NOW + 120_000)
    paused = d.step(now=NOW + 180_000)
    assert paused.commands == () and (d.saga.state, d.saga.reason_code) == (sg.PAUSED, sg.TIMEOUT)
    assert d.kinds.count("saga.step_retried") == 2 and paused.next_due == 0
    d.step(ok(first, "ns-7"))  # the platform answered after all
    assert d.saga.state == sg.RUNNING and d.sent[-1].action == "billing.create_customer"


def test_resuming_a_timed_out_step_sends_the_same_command_again() -> None:
    d = Driver(deal(), msgspec.structs.replace(CONFIG, step_retries=0))
    first = d.step().commands[0]
    d.step(now=NOW + 60_000)
    assert d.saga.state == sg.PAUSED
    resumed = d.step(ResumeSaga(customer_key=KEY, opportunity_id="006A", by="D10"), now=NOW + 90_000)
    assert [c.command_id for c in resumed.commands] == [first.command_id]


def test_stale_and_duplicate_results_change_nothing() -> None:
    d = Driver(deal())
    first = d.step().commands[0]
    d.step(ok(first, "ns-7"))
    before = d.book
    d.step(ok(first, "ns-7"))  # delivered twice (a worker restarted after sending it)
    assert d.book is before


def test_two_versions_in_flight_each_finish_on_their_own() -> None:
    d1 = Driver(deal(), msgspec.structs.replace(CONFIG, version=1))
    d1.step()
    book = d1.book
    assert book.sagas["006A"].version == 1
    # The definition moves on to version 2 while the first saga is in flight; a second deal starts on it.
    state = with_quantity(state_of(won("006B", 3 * HOUR, plan="price_pro", amount=100, currency="USD"),
                                   base=d1.state), "006B", 1)
    progress = sg.advance(book, state, NOW, CONFIG)
    assert progress.book.sagas["006B"].version == 2 and progress.book.sagas["006A"].version == 1
    d1.config, d1.state, d1.book = CONFIG, state, progress.book
    d1.answer_all()
    assert [c.action for c in d1.sent if c.fingerprint == "q2c:006A"] == [
        "erp.upsert_customer", "billing.create_customer", "billing.create_subscription", "support.grant_entitlement"]
    assert d1.saga.state == sg.COMPLETED and d1.saga.version == 1


def test_the_book_round_trips_through_its_table_encoding() -> None:
    d = Driver(deal())
    d.step()
    assert sg.load(sg.dump(d.book)) == d.book


def test_a_step_in_flight_that_fails_after_the_deal_was_reopened_leaves_nothing_to_undo() -> None:
    d, in_flight = lost_while_subscribing()
    d.step(refused(in_flight, reason="No such price"))
    assert d.saga.state == sg.COMPENSATED and d.saga.undone == ()
    assert d.sent[-1] is in_flight  # no undo sent: the subscription was never made


def test_a_failed_undo_stops_the_compensation_and_resume_goes_on_undoing() -> None:
    d = Driver(deal())
    d.step()
    d.answer_all()
    d.state = state_of(opportunity("006A", 5 * HOUR, is_won=False, stage="Closed Lost"), base=d.state)
    d.step()
    suspend = d.saga.command
    assert suspend is not None and suspend.action == "support.suspend_entitlement"
    d.step(refused(suspend, kind="transient", reason="exhausted: 503"))
    assert (d.saga.state, d.saga.reason_code) == (sg.FAILED, sg.UNAVAILABLE)
    d.step(ResumeSaga(customer_key=KEY, opportunity_id="006A", by="ops"))
    assert d.saga.state == sg.COMPENSATING
    assert d.sent[-1].action == "support.suspend_entitlement" and d.sent[-1].command_id != suspend.command_id
    d.answer_all()
    assert d.saga.state == sg.COMPENSATED and d.saga.undone == (sg.ENTITLEMENT, sg.SALES_ORDER, sg.SUBSCRIPTION)


def test_an_amendment_made_while_the_saga_provisioned_is_applied_once_it_completed() -> None:
    d = Driver(deal())
    d.step()
    d.state = with_quantity(d.state, "006A", 7)  # while the first step is in flight
    d.step()
    d.answer_all()
    assert d.saga.state == sg.COMPLETED and d.saga.terms.quantity == 7
    update = next(c for c in d.sent if c.action == "billing.update_subscription")
    assert update.payload == {"price": "price_pro", "quantity": 7}
    subscription = next(c for c in d.sent if c.action == "billing.create_subscription")
    assert subscription.payload["quantity"] == 3  # sold as validated, then amended: both visible on the timeline


def test_a_deal_won_long_before_concord_saw_it_starts_no_saga_until_resumed() -> None:
    state = deal()
    late = 2 * HOUR + CONFIG.start_within_ms + 1
    assert sg.advance(sg.SagaBook(), state, late, CONFIG).book.sagas == {}  # found at rest: D10's to report
    resumed = sg.advance(sg.SagaBook(), state, late, CONFIG, signal=ResumeSaga(
        customer_key=KEY, opportunity_id="006A", by="D10"))
    assert resumed.book.sagas["006A"].state == sg.RUNNING


def test_no_saga_starts_while_how_far_the_platforms_were_read_is_unknown() -> None:
    waiting = sg.advance(sg.SagaBook(), deal(), NOW, CONFIG, read_past=sg.UNREAD)
    assert waiting.book.sagas == {} and waiting.next_due == NOW + 1000  # looked at again in a second
