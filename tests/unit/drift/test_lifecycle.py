"""The finding lifecycle with a controllable rule: grace, commands, re-commands, escalation, resolution."""

from __future__ import annotations

import msgspec

from concord.codecs.model import CanonicalEvent
from concord.core import messages
from concord.core.messages import CorrectionFailed
from concord.drift import lifecycle
from concord.drift.config import DriftConfig, RuleConfig
from concord.drift.finding import Action, Finding, Observation
from concord.drift.rule import Context, Rule
from concord.drift.rules import correction_stuck
from concord.tables.state import CustomerState, empty

MIN = 60_000


class Switch:
    """A rule whose finding is present while `on` is true."""

    def __init__(self, action: str = "support.suspend_entitlement") -> None:
        self.on = True
        self.action = action
        self.since = 0
        self.subject = "361"

    def check(self, state: CustomerState, now: int, ctx: Context) -> list[Finding]:
        if not self.on:
            return []
        action = Action(name=ctx.rule.action, platform="zendesk", target={"organization_id": "361"})
        return [Finding(rule="D99", customer_key=state.key, subject=self.subject, since=self.since,
                        evidence=(Observation(system="zendesk", record="361", field="status", value="active"),),
                        action=action, summary="test")]


def setup(grace_min: int = 10, action: str = "support.suspend_entitlement", dry_run: bool = False,
          max_corrections: int = 2) -> tuple[Switch, list[Rule], DriftConfig]:
    switch = Switch(action)
    defaults = RuleConfig(grace_seconds=grace_min * 60, action=action, severity="high", dry_run=dry_run)
    rule = Rule(id="D99", name="switch", title="test switch", reads=frozenset({"support.entitlements"}),
                defaults=defaults, check=switch.check)
    return switch, [rule], DriftConfig(max_corrections=max_corrections, correction_timeout_seconds=30 * 60)


def statuses(verdict: lifecycle.Verdict) -> list[tuple[str | None, str]]:
    return [(t.previous, t.status) for t in verdict.transitions]


def test_younger_than_grace_is_pending_and_silent_then_opens_and_commands_when_due() -> None:
    switch, rules, config = setup()
    v = lifecycle.evaluate(empty("001"), 0, rules, config)  # began at 0, seen at once
    assert v.state.next_due == 10 * MIN
    v = lifecycle.evaluate(v.state, 5 * MIN, rules, config)
    (item,) = v.state.drift.values()
    assert item.status == "pending" and v.transitions == () and v.commands == ()
    v = lifecycle.evaluate(v.state, 10 * MIN, rules, config)
    assert statuses(v) == [("pending", "open"), ("open", "commanded")]
    (command,) = v.commands
    assert command.action == "support.suspend_entitlement" and command.generation == 1
    assert command.command_id == messages.command_id(item.fingerprint, command.action, 1)
    assert command.target == {"organization_id": "361"}
    assert v.state.next_due == 10 * MIN + 30 * MIN


def test_a_replayed_backlog_gets_the_full_grace_from_when_concord_saw_it() -> None:
    switch, rules, config = setup(grace_min=10)
    switch.since = -600 * MIN  # an old disagreement, seen only now (downtime, replay)
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    assert v.transitions == () and v.state.next_due == 10 * MIN
    switch.on = False  # transient: the backlog's next event settles it
    v = lifecycle.evaluate(v.state, MIN, rules, config)
    assert v.transitions == () and v.state.drift == {}


def test_a_pending_finding_whose_evidence_says_it_began_later_gets_its_grace_from_then() -> None:
    # First seen while the entitlement was unknown (since 0); the read that made it known says the entitlement
    # ended at 8 min: the grace runs from there, not from when the unknown finding was first noted.
    switch, rules, config = setup(grace_min=10)
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    switch.since = 8 * MIN
    v = lifecycle.evaluate(v.state, 9 * MIN, rules, config, {"support.entitlements"})
    (item,) = v.state.drift.values()
    assert (item.status, item.since, item.due, v.state.next_due) == ("pending", 8 * MIN, 18 * MIN, 18 * MIN)
    v = lifecycle.evaluate(v.state, 12 * MIN, rules, config)  # the first deadline (10 min) has passed: nothing
    assert v.transitions == () and v.commands == ()
    switch.since = 2 * MIN  # evidence saying it began earlier never brings the deadline forward
    v = lifecycle.evaluate(v.state, 13 * MIN, rules, config, {"support.entitlements"})
    assert next(iter(v.state.drift.values())).due == 18 * MIN and v.transitions == ()
    v = lifecycle.evaluate(v.state, 18 * MIN, rules, config)
    assert statuses(v) == [("pending", "open"), ("open", "commanded")]


def test_converging_before_grace_is_never_reported() -> None:
    switch, rules, config = setup()
    v = lifecycle.evaluate(empty("001"), MIN, rules, config)
    switch.on = False
    v = lifecycle.evaluate(v.state, 2 * MIN, rules, config)
    assert v.state.drift == {} and v.transitions == () and v.state.next_due == 0


def test_review_findings_open_without_command_and_resolve_as_converged() -> None:
    switch, rules, config = setup(grace_min=0, action="review")
    v = lifecycle.evaluate(empty("001"), MIN, rules, config)
    assert statuses(v) == [("pending", "open")] and v.commands == ()
    switch.on = False
    v = lifecycle.evaluate(v.state, 2 * MIN, rules, config)
    assert statuses(v) == [("open", "resolved")]
    assert v.transitions[0].resolution == "converged"


def test_dry_run_reports_but_never_commands() -> None:
    switch, rules, config = setup(grace_min=0, dry_run=True)
    v = lifecycle.evaluate(empty("001"), MIN, rules, config)
    assert statuses(v) == [("pending", "open")] and v.commands == ()
    v = lifecycle.evaluate(v.state, 100 * MIN, rules, config)
    assert v.commands == ()


def test_resolution_after_command_is_corrected() -> None:
    switch, rules, config = setup(grace_min=0)
    v = lifecycle.evaluate(empty("001"), MIN, rules, config)
    switch.on = False
    v = lifecycle.evaluate(v.state, 2 * MIN, rules, config)
    assert statuses(v) == [("commanded", "resolved")] and v.transitions[0].resolution == "corrected"


def test_same_input_gives_the_same_command_and_no_second_one_for_a_generation() -> None:
    switch, rules, config = setup(grace_min=0)
    first = lifecycle.evaluate(empty("001"), MIN, rules, config)
    replay = lifecycle.evaluate(empty("001"), MIN, rules, config)
    assert first.commands == replay.commands  # a crash before the state write re-derives the same id
    again = lifecycle.evaluate(first.state, 2 * MIN, rules, config)
    assert again.commands == () and again.transitions == ()


def test_a_drift_that_comes_back_after_its_correction_is_commanded_again_with_a_new_id() -> None:
    switch, rules, config = setup(grace_min=0)
    first = lifecycle.evaluate(empty("001"), MIN, rules, config)
    switch.on = False
    corrected = lifecycle.evaluate(first.state, 2 * MIN, rules, config)
    switch.on, switch.since = True, 3 * MIN  # the same disagreement again, begun later
    back = lifecycle.evaluate(corrected.state, 3 * MIN, rules, config)
    assert [c.generation for c in back.commands] == [1]
    # Not the id the ledger holds as done for the first occurrence: it would be skipped as applied.
    assert back.commands[0].command_id != first.commands[0].command_id


def test_not_converging_recommands_then_escalates() -> None:
    switch, rules, config = setup(grace_min=0, max_corrections=2)
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    ids = [c.command_id for c in v.commands]
    v = lifecycle.evaluate(v.state, 30 * MIN, rules, config)
    assert statuses(v) == [("commanded", "commanded")] and v.commands[0].generation == 2
    ids.append(v.commands[0].command_id)
    assert len(set(ids)) == 2
    v = lifecycle.evaluate(v.state, 60 * MIN, rules, config)
    assert statuses(v) == [("commanded", "escalated")] and v.commands == ()
    switch.on = False
    v = lifecycle.evaluate(v.state, 61 * MIN, rules, config)
    assert statuses(v) == [("escalated", "resolved")]


def test_a_correction_dead_lettered_for_data_escalates_at_once_with_its_reason() -> None:
    switch, rules, config = setup(grace_min=0, max_corrections=3)
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    (command,) = v.commands
    failed = CorrectionFailed(customer_key="001", fingerprint=command.fingerprint, command_id=command.command_id,
                              reason="zendesk 422: organization 361 not found", at=MIN)
    # A report about another command (an older generation, say) changes nothing.
    stale = msgspec.structs.replace(failed, command_id="0" * 32)
    assert lifecycle.correction_failed(v.state, stale, MIN, config).state is v.state
    escalated = lifecycle.correction_failed(v.state, failed, MIN, config)
    assert statuses(escalated) == [("commanded", "escalated")]
    item = escalated.state.drift[command.fingerprint]
    assert "organization 361 not found" in item.note and escalated.transitions[0].note == item.note
    assert escalated.state.next_due == 0  # no correction timeout left to wait for
    # No next generation, and a repeated report is a no-op.
    later = lifecycle.evaluate(escalated.state, 90 * MIN, rules, config)
    assert later.transitions == () and later.commands == ()
    assert lifecycle.correction_failed(escalated.state, failed, 2 * MIN, config).transitions == ()
    # Fixed by hand (the dead letter replayed): it resolves as corrected once the systems agree.
    switch.on = False
    done = lifecycle.evaluate(later.state, 91 * MIN, rules, config)
    assert statuses(done) == [("escalated", "resolved")] and done.transitions[0].resolution == "corrected"


def test_an_escalation_from_a_refused_correction_reaches_the_rule_that_hands_it_to_a_person() -> None:
    switch, rules, config = setup(grace_min=0, max_corrections=3)
    rules = [*rules, correction_stuck.RULE]
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    (command,) = v.commands
    failed = CorrectionFailed(customer_key="001", fingerprint=command.fingerprint, command_id=command.command_id,
                              reason="netsuite 400: external id already exists", at=MIN)
    escalated = lifecycle.correction_failed(v.state, failed, MIN, config)
    # What the state agent does with it: the rules reading the findings follow at once, not on a later tick
    # (an event of the customer's in between would have left nothing due, and D14 never run).
    verdict = lifecycle.then_rules_on_findings(escalated, MIN, rules, config)
    assert statuses(verdict) == [("commanded", "escalated")]
    (d14,) = [i for i in verdict.state.drift.values() if i.rule == "D14"]
    assert d14.subject == f"{command.fingerprint}|escalated" and d14.status == "pending"
    assert verdict.state.next_due == d14.due
    # Nothing moved: nothing follows.
    assert lifecycle.then_rules_on_findings(lifecycle.Verdict(v.state), MIN, rules, config).state is v.state


def test_a_merged_away_account_resolves_its_findings_as_merged() -> None:
    switch, rules, config = setup(grace_min=0)
    v = lifecycle.evaluate(empty("001L"), 0, rules, config)
    (fp,) = v.state.drift
    pending = msgspec.structs.replace(v.state.drift[fp], fingerprint="p1", status="pending", due=60 * MIN)
    state = msgspec.structs.replace(v.state, drift={fp: v.state.drift[fp], "p1": pending})
    assert [i.status for i in state.drift.values()] == ["commanded", "pending"]
    retired = msgspec.structs.replace(state, merged_into="001W")
    merged = lifecycle.evaluate(retired, 2 * MIN, rules, config, {"identity"})
    assert statuses(merged) == [("commanded", "resolved")] and merged.commands == ()
    (item,) = merged.state.drift.values()  # the pending one is dropped
    assert (item.fingerprint, item.resolution, item.note) == (fp, "merged", "account merged into 001W")
    assert merged.state.next_due == 0
    assert lifecycle.evaluate(merged.state, 90 * MIN, rules, config).transitions == ()


def test_accepted_finding_stays_silent_while_the_condition_lasts() -> None:
    switch, rules, config = setup(grace_min=0, action="review")
    v = lifecycle.evaluate(empty("001"), MIN, rules, config)
    (fp,) = v.state.drift
    accepted = lifecycle.accept(v.state, fp, 2 * MIN, by="ops", config=config, note="known: a grandfathered plan")
    assert statuses(accepted) == [("open", "resolved")] and accepted.transitions[0].resolution == "accepted"
    # Who accepted it and why stay on the finding and in its transition (the board and the timeline show them).
    note = "accepted by ops: known: a grandfathered plan"
    assert accepted.transitions[0].note == accepted.state.drift[fp].note == note
    silent = lifecycle.accept(v.state, fp, 2 * MIN, by="ops", config=config)
    assert silent.state.drift[fp].note == "accepted by ops"
    later = lifecycle.evaluate(accepted.state, 3 * MIN, rules, config)
    assert later.transitions == ()
    assert later.state.drift[fp].resolution == "accepted"


def test_accepting_the_finding_a_deadline_waited_for_cancels_the_deadline() -> None:
    switch, rules, config = setup(grace_min=0)
    v = lifecycle.evaluate(empty("001"), MIN, rules, config)
    (fp,) = v.state.drift
    assert v.state.drift[fp].status == "commanded" and v.state.next_due > MIN  # waits for the correction timeout
    accepted = lifecycle.accept(v.state, fp, 2 * MIN, by="ops", config=config)
    assert accepted.state.drift[fp].resolution == "accepted"
    assert accepted.state.next_due == 0  # nothing left to wait for: no tick


def test_rules_not_reading_the_changed_section_do_not_run() -> None:
    switch, rules, config = setup(grace_min=0)
    v = lifecycle.evaluate(empty("001"), MIN, rules, config, sections={"billing.invoices"})
    assert v.state.drift == {}


def test_a_due_item_of_a_rule_that_did_not_run_waits_for_the_tick() -> None:
    switch, rules, config = setup(grace_min=10)
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    v = lifecycle.evaluate(v.state, 11 * MIN, rules, config, sections={"billing.invoices"})
    assert v.transitions == () and v.state.next_due == 10 * MIN
    v = lifecycle.evaluate(v.state, 11 * MIN, rules, config, sections=None)
    assert statuses(v) == [("pending", "open"), ("open", "commanded")]


def test_resolved_items_are_bounded() -> None:
    switch, rules, config = setup(grace_min=0, action="review")
    config = msgspec.structs.replace(config, resolved_kept=1)
    state = empty("001")
    for i in range(3):
        switch.on = True
        switch.subject = f"record-{i}"  # a new finding each round
        state = lifecycle.evaluate(state, i * 10 + 1, rules, config).state
        switch.on = False
        state = lifecycle.evaluate(state, i * 10 + 2, rules, config).state
    assert [item.subject for item in state.drift.values()] == ["record-2"]  # the newest resolved one


def test_a_due_finding_waits_while_a_platform_its_rule_reads_is_read_only_up_to_before_its_deadline() -> None:
    switch, rules, config = setup()  # the rule reads support.entitlements: Zendesk's events
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    behind = {"zendesk": 10 * MIN - 1, "stripe": 20 * MIN}
    v = lifecycle.evaluate(v.state, 12 * MIN, rules, config, watermarks=behind)
    (item,) = v.state.drift.values()
    assert item.status == "pending" and v.transitions == () and v.commands == ()  # Zendesk not read that far
    # The Zendesk events Concord had not read yet settle it: never reported, nothing commanded.
    switch.on = False
    settled = lifecycle.evaluate(v.state, 13 * MIN, rules, config, watermarks={"zendesk": 11 * MIN})
    assert settled.transitions == () and settled.state.drift == {}
    # Or they do not: once Zendesk is read past the deadline, it is reported and corrected.
    switch.on = True
    v = lifecycle.evaluate(v.state, 13 * MIN, rules, config, watermarks={"zendesk": 10 * MIN})
    assert statuses(v) == [("pending", "open"), ("open", "commanded")]


def test_another_platform_behind_holds_nothing_back_and_an_unknown_one_neither() -> None:
    switch, rules, config = setup()
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    v = lifecycle.evaluate(v.state, 10 * MIN, rules, config, watermarks={"stripe": 0, "netsuite": 5})
    assert statuses(v) == [("pending", "open"), ("open", "commanded")]


def test_no_correction_is_commanded_again_while_the_platform_lags_behind_its_timeout() -> None:
    switch, rules, config = setup()
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    v = lifecycle.evaluate(v.state, 10 * MIN, rules, config)
    timeout = 10 * MIN + 30 * MIN
    waiting = lifecycle.evaluate(v.state, timeout + MIN, rules, config, watermarks={"zendesk": timeout - 1})
    assert waiting.commands == () and waiting.transitions == ()  # the correction may have landed unread
    again = lifecycle.evaluate(v.state, timeout + MIN, rules, config, watermarks={"zendesk": timeout})
    assert [c.generation for c in again.commands] == [2]


def unread(state: CustomerState, since: int) -> CustomerState:
    """`state` with its support entitlement unread since `since` (a re-read pending or failing)."""
    return msgspec.structs.replace(state, support=msgspec.structs.replace(state.support,
                                                                          unread={"9": (since, since)}))


def known(state: CustomerState) -> CustomerState:
    return msgspec.structs.replace(state, support=msgspec.structs.replace(state.support, unread={}))


def test_unknown_is_not_absent_a_rule_reading_an_unread_entitlement_waits_then_cannot_judge() -> None:
    switch, rules, config = setup()  # grace 10 min; the rule reads support.entitlements
    config = msgspec.structs.replace(config, unread_bound_seconds=3600)
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    blind = unread(v.state, 5 * MIN)
    v = lifecycle.evaluate(blind, 30 * MIN, rules, config)  # due, but the entitlement is unread
    (item,) = v.state.drift.values()
    assert item.status == "pending" and v.transitions == () and v.commands == ()
    assert v.state.next_due == 5 * MIN + 60 * MIN  # looked at again at the bound, not every scan
    # Past the bound: reported, saying why, and nothing commanded blind.
    v = lifecycle.evaluate(v.state, 65 * MIN, rules, config)
    assert statuses(v) == [("pending", "open")] and v.commands == ()
    (item,) = v.state.drift.values()
    assert item.note.startswith("cannot judge: support unreadable since ")
    # Read again and still there: corrected.
    v = lifecycle.evaluate(known(v.state), 70 * MIN, rules, config, {"support.entitlements"})
    assert statuses(v) == [("open", "commanded")] and len(v.commands) == 1
    assert next(iter(v.state.drift.values())).note == ""


def test_an_unread_entitlement_that_settles_the_disagreement_leaves_nothing_reported() -> None:
    switch, rules, config = setup()
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    v = lifecycle.evaluate(unread(v.state, 5 * MIN), 30 * MIN, rules, config)
    switch.on = False  # the re-read shows the systems agree: the rule, running again, finds nothing
    v = lifecycle.evaluate(known(v.state), 31 * MIN, rules, config, {"support.entitlements"})
    assert v.transitions == () and v.state.drift == {}


def test_rules_not_reading_the_unread_entitlement_go_on() -> None:
    switch, rules, config = setup()
    other = msgspec.structs.replace(rules[0], reads=frozenset({"billing.subscriptions"}))
    v = lifecycle.evaluate(unread(empty("001"), 0), 0, [other], config)
    v = lifecycle.evaluate(v.state, 10 * MIN, [other], config)
    assert statuses(v) == [("pending", "open"), ("open", "commanded")]


def test_a_correction_whose_effect_cannot_be_read_is_neither_repeated_nor_left_ticking() -> None:
    switch, rules, config = setup()
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    v = lifecycle.evaluate(v.state, 10 * MIN, rules, config)  # commanded at 10 min; timeout 30 min
    blind = unread(v.state, 15 * MIN)
    waiting = lifecycle.evaluate(blind, 45 * MIN, rules, config)
    assert waiting.commands == () and waiting.transitions == ()  # not commanded again blind
    assert waiting.state.next_due == 15 * MIN + 60 * MIN
    v = lifecycle.evaluate(waiting.state, 75 * MIN, rules, config)
    assert statuses(v) == [("commanded", "escalated")] and v.commands == () and v.state.next_due == 0
    assert next(iter(v.state.drift.values())).note.startswith("cannot judge")


# ---------------------------------------------------------------- CRM records unread after a Salesforce gap


def crm_unread(state: CustomerState, record_id: str, since: int) -> CustomerState:
    """`state` with a CRM record unread since `since` (a gap event, its re-read pending or failing)."""
    return msgspec.structs.replace(state, crm=msgspec.structs.replace(state.crm, unread={record_id: (since, since)}))


def crm_known(state: CustomerState) -> CustomerState:
    return msgspec.structs.replace(state, crm=msgspec.structs.replace(state.crm, unread={}))


def crm_rules(*ids: str, grace_min: int = 10) -> tuple[list[Rule], DriftConfig]:
    from concord.drift import catalog

    rules = [catalog.BY_ID[rule_id] for rule_id in ids]
    settings = {r.id: msgspec.structs.replace(r.defaults, grace_seconds=grace_min * 60) for r in rules}
    return rules, DriftConfig(rules=settings, correction_timeout_seconds=30 * 60, unread_bound_seconds=3600)


def won_without_subscription() -> CustomerState:
    from tests.unit.drift.builders import account, state_of, won

    return state_of(account(0, name="Acme", currency="USD"), won("006A", 0, amount=1000))


def won_at_another_amount() -> CustomerState:
    from tests.unit.drift.builders import subscription

    return state_of_more(won_without_subscription(), subscription("sub_1", "active", 0, amount=900, currency="USD"))


def state_of_more(state: CustomerState, *events: CanonicalEvent) -> CustomerState:
    from tests.unit.drift.builders import state_of

    return state_of(*events, base=state)


def test_a_d11_finding_waits_while_the_account_is_unread_and_fires_once_it_is_read() -> None:
    rules, config = crm_rules("D11")
    v = lifecycle.evaluate(won_at_another_amount(), 0, rules, config)
    (item,) = v.state.drift.values()
    assert item.rule == "D11" and item.status == "pending"
    blind = crm_unread(v.state, "001A", 5 * MIN)  # the account's gap: its currency may not be what is held
    v = lifecycle.evaluate(blind, 30 * MIN, rules, config)  # due, but the account is unread
    assert v.transitions == () and v.commands == () and next(iter(v.state.drift.values())).status == "pending"
    assert v.state.next_due == 5 * MIN + 60 * MIN  # looked at again at the bound, not every scan
    # The re-read arrives (an account event: D11 reads crm.account) and the disagreement is still there.
    v = lifecycle.evaluate(crm_known(v.state), 31 * MIN, rules, config, {"crm.account"})
    assert statuses(v) == [("pending", "open")] and v.commands == ()  # D11 is a review rule
    assert next(iter(v.state.drift.values())).note == ""


def test_past_the_bound_a_d11_finding_cannot_be_judged_and_commands_nothing() -> None:
    rules, config = crm_rules("D11")
    v = lifecycle.evaluate(won_at_another_amount(), 0, rules, config)
    v = lifecycle.evaluate(crm_unread(v.state, "001A", 5 * MIN), 65 * MIN, rules, config)
    assert statuses(v) == [("pending", "open")] and v.commands == ()
    (item,) = v.state.drift.values()
    assert item.note == "cannot judge: crm unreadable since 1970-01-01T00:05:00+00:00"


def test_a_d10_finding_waits_for_its_unread_opportunity_then_cannot_judge_then_is_corrected_once_read() -> None:
    rules, config = crm_rules("D10")
    v = lifecycle.evaluate(won_without_subscription(), 0, rules, config)
    blind = crm_unread(v.state, "006A", 5 * MIN)  # the opportunity's gap: is it still won?
    v = lifecycle.evaluate(blind, 30 * MIN, rules, config)
    assert v.transitions == () and v.commands == ()
    v = lifecycle.evaluate(v.state, 65 * MIN, rules, config)
    assert statuses(v) == [("pending", "open")] and v.commands == ()  # nothing commanded blind
    assert next(iter(v.state.drift.values())).note.startswith("cannot judge: crm unreadable since ")
    # Read again and still won without a subscription: the saga is resumed.
    v = lifecycle.evaluate(crm_known(v.state), 70 * MIN, rules, config, {"crm.opportunities"})
    assert statuses(v) == [("open", "commanded")] and [c.action for c in v.commands] == ["saga.resume"]


def test_a_d10_finding_the_re_read_settles_is_never_reported() -> None:
    from tests.unit.drift.builders import opportunity

    rules, config = crm_rules("D10")
    v = lifecycle.evaluate(won_without_subscription(), 0, rules, config)
    v = lifecycle.evaluate(crm_unread(v.state, "006A", 5 * MIN), 30 * MIN, rules, config)
    # The re-read shows the opportunity was lost after all: the rule, running again, finds nothing.
    read = state_of_more(crm_known(v.state), opportunity("006A", 6 * MIN, stage="Closed Lost", is_won=False))
    v = lifecycle.evaluate(read, 31 * MIN, rules, config, {"crm.opportunities"})
    assert v.transitions == () and v.commands == () and v.state.drift == {}


def test_only_the_rules_reading_the_unread_crm_record_wait() -> None:
    rules, config = crm_rules("D10", "D11")
    v = lifecycle.evaluate(won_at_another_amount(), 0, rules, config)
    assert {i.rule for i in v.state.drift.values()} == {"D11"}  # D10: a subscription exists
    rules, config = crm_rules("D10", "D09")
    v = lifecycle.evaluate(crm_unread(won_without_subscription(), "001A", 5 * MIN), 0, rules, config)
    v = lifecycle.evaluate(v.state, 10 * MIN, rules, config)
    # D10 reads the opportunities, not the account: the account's gap holds nothing of it back.
    assert [(t.rule, t.status) for t in v.transitions] == [("D10", "open"), ("D10", "commanded")]


def test_a_rule_reading_two_unread_parts_names_the_one_unread_longest() -> None:
    switch, rules, config = setup()
    both = msgspec.structs.replace(rules[0], reads=frozenset({"support.entitlements", "crm.account"}))
    v = lifecycle.evaluate(empty("001"), 0, [both], config)
    blind = crm_unread(unread(v.state, 20 * MIN), "001", 5 * MIN)
    v = lifecycle.evaluate(blind, 65 * MIN, [both], config)
    assert statuses(v) == [("pending", "open")] and v.commands == ()
    assert next(iter(v.state.drift.values())).note == "cannot judge: crm unreadable since 1970-01-01T00:05:00+00:00"


def test_steps_a_deadline_takes_carry_the_correlation_id_of_the_event_that_revealed_the_finding() -> None:
    switch, rules, config = setup()
    v = lifecycle.evaluate(empty("001"), 0, rules, config, correlation_id="evt_revealed")
    v = lifecycle.evaluate(v.state, 10 * MIN, rules, config)  # the deadline tick: no event, no correlation id
    assert [t.correlation_id for t in v.transitions] == ["evt_revealed", "evt_revealed"]
    assert [c.correlation_id for c in v.commands] == ["evt_revealed"]
    switch.on = False  # an event settles it: its own correlation id
    v = lifecycle.evaluate(v.state, 11 * MIN, rules, config, correlation_id="evt_fix")
    assert [(t.status, t.correlation_id) for t in v.transitions] == [("resolved", "evt_fix")]


def test_a_snoozed_finding_is_neither_commanded_again_nor_escalated_until_its_time_then_resumes() -> None:
    switch, rules, config = setup(grace_min=0)
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    (fp,) = v.state.drift
    assert v.state.drift[fp].status == "commanded" and v.state.next_due == 30 * MIN
    snoozed = lifecycle.snooze(v.state, fp, MIN, 120 * MIN, by="alice", config=config, note="vendor outage")
    assert snoozed.transitions == () and snoozed.state.next_due == 120 * MIN  # the tick that resumes it
    item = snoozed.state.drift[fp]
    assert item.status == "commanded" and item.snoozed_until == 120 * MIN
    assert item.note == "snoozed by alice until 1970-01-01T02:00+00:00: vendor outage"
    quiet = lifecycle.evaluate(snoozed.state, 60 * MIN, rules, config)  # past the correction timeout
    assert quiet.transitions == () and quiet.commands == ()
    resumed = lifecycle.evaluate(quiet.state, 120 * MIN, rules, config)
    assert statuses(resumed) == [("commanded", "commanded")] and resumed.commands[0].generation == 2


def test_a_snoozed_finding_still_resolves_and_only_reported_ones_snooze() -> None:
    switch, rules, config = setup(grace_min=0, action="review")
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    (fp,) = v.state.drift
    snoozed = lifecycle.snooze(v.state, fp, MIN, 60 * MIN, by="alice", config=config)
    assert snoozed.state.drift[fp].note == "snoozed by alice until 1970-01-01T01:00+00:00"
    switch.on = False
    assert statuses(lifecycle.evaluate(snoozed.state, 2 * MIN, rules, config)) == [("open", "resolved")]
    assert lifecycle.snooze(v.state, fp, MIN, MIN, by="a", config=config).state is v.state  # not in the future
    assert lifecycle.snooze(v.state, "nope", MIN, 9 * MIN, by="a", config=config).state is v.state
    pending_rules = setup(grace_min=10)
    pending = lifecycle.evaluate(empty("001"), 0, pending_rules[1], pending_rules[2])
    (pfp,) = pending.state.drift
    assert lifecycle.snooze(pending.state, pfp, MIN, 9 * MIN, by="a", config=config).state is pending.state


def test_a_state_stored_before_snoozes_and_approvals_decodes() -> None:
    item = messages.DriftItem(fingerprint="f", rule="D99", subject="s", status="open", severity="high", since=0, due=0,
                              correlation_id="c")
    fields = msgspec.msgpack.decode(msgspec.msgpack.encode(item))
    before = msgspec.msgpack.decode(msgspec.msgpack.encode(fields[:-2]), type=messages.DriftItem)  # as stored then
    assert (before.correlation_id, before.snoozed_until, before.awaiting) == ("c", 0, "")


def test_a_retry_commands_the_next_generation_at_once_even_escalated_or_snoozed() -> None:
    switch, rules, config = setup(grace_min=0, max_corrections=1)
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    (fp,) = v.state.drift
    retried = lifecycle.retry(v.state, fp, MIN, rules, config)  # before the correction timeout
    assert statuses(retried) == [("commanded", "commanded")]
    (command,) = retried.commands
    assert command.generation == 2 and command.command_id == messages.command_id(fp, command.action, 2)
    escalated = lifecycle.evaluate(retried.state, 40 * MIN, rules, config)
    assert statuses(escalated) == [("commanded", "escalated")]
    snoozed = lifecycle.snooze(escalated.state, fp, 41 * MIN, 99 * MIN, by="a", config=config)
    again = lifecycle.retry(snoozed.state, fp, 42 * MIN, rules, config)
    assert statuses(again) == [("escalated", "commanded")] and again.commands[0].generation == 3
    assert again.state.drift[fp].snoozed_until == 0
    switch.on = False
    gone = lifecycle.retry(again.state, fp, 43 * MIN, rules, config)
    assert statuses(gone) == [("commanded", "resolved")] and gone.commands == ()


def test_a_finding_without_a_correction_is_not_retried() -> None:
    switch, rules, config = setup(grace_min=0, action="review")
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    (fp,) = v.state.drift
    assert lifecycle.retry(v.state, fp, MIN, rules, config).commands == ()
    assert lifecycle.retry(v.state, "nope", MIN, rules, config).state is v.state


def approve_mode(grace_min: int = 0, max_corrections: int = 2) -> tuple[Switch, list[Rule], DriftConfig]:
    switch, rules, config = setup(grace_min=grace_min, max_corrections=max_corrections)
    defaults = msgspec.structs.replace(rules[0].defaults, mode="approve")
    return switch, [msgspec.structs.replace(rules[0], defaults=defaults)], config


def test_in_approve_mode_a_correction_waits_for_a_person_then_goes_with_the_id_it_would_have_had() -> None:
    switch, rules, config = approve_mode()
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    (fp,) = v.state.drift
    item = v.state.drift[fp]
    expected = messages.command_id(fp, "support.suspend_entitlement", 1, item.since)
    assert statuses(v) == [("pending", "open")] and v.commands == ()
    assert item.status == "open" and item.awaiting == expected
    assert item.note == f"awaiting approval: support.suspend_entitlement (command {expected}, generation 1)"
    assert v.state.next_due == 0  # it waits for a person, not for a time
    assert lifecycle.evaluate(v.state, 90 * MIN, rules, config).transitions == ()  # a tick changes nothing
    approved = lifecycle.approve(v.state, fp, 2 * MIN, rules, config)
    assert statuses(approved) == [("open", "commanded")]
    (command,) = approved.commands
    assert command.command_id == expected and command.generation == 1
    after = approved.state.drift[fp]
    assert (after.awaiting, after.note, after.command_id) == ("", "", expected)
    # Still there after the correction timeout: the next generation waits for approval too.
    again = lifecycle.evaluate(approved.state, 40 * MIN, rules, config)
    assert again.commands == () and again.state.drift[fp].awaiting == messages.command_id(
        fp, "support.suspend_entitlement", 2, item.since)
    assert lifecycle.approve(approved.state, fp, 3 * MIN, rules, config).state is approved.state  # none waiting


def test_a_rejected_correction_is_not_sent_and_the_finding_is_escalated() -> None:
    switch, rules, config = approve_mode()
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    (fp,) = v.state.drift
    rejected = lifecycle.reject(v.state, fp, MIN, by="alice", config=config, note="the customer pays by wire")
    assert statuses(rejected) == [("open", "escalated")] and rejected.commands == ()
    item = rejected.state.drift[fp]
    assert item.awaiting == "" and item.note == "correction rejected by alice: the customer pays by wire"
    assert lifecycle.evaluate(rejected.state, 90 * MIN, rules, config).commands == ()
    assert lifecycle.reject(rejected.state, fp, 2 * MIN, by="a", config=config).state is rejected.state


def test_an_approval_of_a_finding_gone_meanwhile_sends_nothing() -> None:
    switch, rules, config = approve_mode()
    v = lifecycle.evaluate(empty("001"), 0, rules, config)
    (fp,) = v.state.drift
    switch.on = False
    gone = lifecycle.approve(v.state, fp, MIN, rules, config)
    assert statuses(gone) == [("open", "resolved")] and gone.commands == ()


def test_what_a_dry_run_reconciliation_reveals_is_reported_and_corrected_only_once_a_pass_that_is_not_sees_it() -> None:
    switch, rules, config = setup(grace_min=0)
    dry = f"{lifecycle.RECONCILE_DRY_RUN}zendesk-1"
    v = lifecycle.evaluate(empty("001"), 0, rules, config, correlation_id=dry)
    assert statuses(v) == [("pending", "open")] and v.commands == ()  # reported, not corrected
    (item,) = v.state.drift.values()
    assert item.dry_run and item.correlation_id == dry
    # A live event or a deadline tick later: still not corrected.
    v = lifecycle.evaluate(v.state, MIN, rules, config, correlation_id="evt_live")
    v = lifecycle.evaluate(v.state, 2 * MIN, rules, config)
    assert v.commands == () and next(iter(v.state.drift.values())).dry_run
    # A pass that is not a dry run sees it: corrected from then on, as any finding.
    # (Its record unchanged, no section the rule reads changed: every rule runs all the same.)
    v = lifecycle.evaluate(v.state, 3 * MIN, rules, config, sections=set(),
                           correlation_id=f"{lifecycle.RECONCILE_PASS}zendesk-2")
    assert [c.action for c in v.commands] == ["support.suspend_entitlement"]
    (item,) = v.state.drift.values()
    assert not item.dry_run and item.status == "commanded"
    # Found by a live event in the first place, a later dry-run pass does not stop its corrections for good.
    switch2, rules2, _ = setup(grace_min=0)
    v = lifecycle.evaluate(empty("002"), 0, rules2, config, correlation_id="evt_1")
    assert v.commands and not next(iter(v.state.drift.values())).dry_run
