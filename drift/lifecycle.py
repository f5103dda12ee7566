"""The lifecycle of findings: pending -> open -> commanded -> resolved (or escalated). Pure.

`evaluate(state, now, ...)` runs the rules whose inputs changed, reconciles their findings with the
customer's drift items, applies the passage of time (grace windows, correction timeouts) and returns
the new state with the transitions to publish and the commands to send.

* A finding younger than its grace window is `pending`: kept, never reported, dropped silently if
  the systems agree before it is due. The window runs from when the disagreement began (source
  times), but not from before Concord first saw it (a replayed backlog gets the full window).
* When due it is reported (`open`); with an action and not dry-run, a command of generation 1 is
  issued at once (`commanded`).
* Still there `correction_timeout` after a command: the next generation is commanded, or after
  `max_corrections` generations the finding is `escalated` to a person.
* When the rule no longer finds it: `resolved` as `converged` (no command was issued) or
  `corrected` (after our command). A person may `accept` it (`resolved`, `accepted`): it stays
  silent while the condition lasts. A CRM merge retires the merged-away account: its findings
  resolve as `merged` (the winner's state judges the records from then on). A person may `snooze` a
  reported finding until a time: until then it is neither reported again, commanded nor escalated.

Command ids are deterministic (fingerprint + action + generation + when the occurrence began), so
re-running the same input after a crash yields the same ids: the executor's ledger applies each at
most once, and a drift that comes back after its correction gets new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from msgspec import Struct

from concord.core.messages import Command, CorrectionFailed, DriftItem, Transition, command_id, iso_minutes
from concord.drift.config import DriftConfig, RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.watermarks import platforms_read
from concord.tables.state import CustomerState


def _entitlements_unread_since(state: CustomerState) -> int:
    return min((first for first, _ in state.support.unread.values()), default=0)


def _account_unread_since(state: CustomerState) -> int:
    pending = state.crm.unread.get(state.key)
    return 0 if pending is None else pending[0]


def _opportunities_unread_since(state: CustomerState) -> int:
    return min((first for rid, (first, _) in state.crm.unread.items() if rid != state.key), default=0)


#: The parts of the state a pending or failing re-read leaves unknown, and since when each is (0: known):
#: tables/state.py `Support.unread` (a Zendesk organization webhook), `Crm.unread` (a Salesforce gap).
UNREAD_SECTIONS: Final[Mapping[str, Callable[[CustomerState], int]]] = {
    "support.entitlements": _entitlements_unread_since,
    "crm.account": _account_unread_since,
    "crm.opportunities": _opportunities_unread_since,
}
_UNREAD_PARTS: Final = frozenset(UNREAD_SECTIONS)
#: The note of a finding reported because it waited too long for an input Concord could not read.
CANNOT_JUDGE: Final = "cannot judge"
#: The correlation id of the events a reconciliation pass listed (`<prefix><pass id>`, set by the ingest
#: agent from the record's `concord-snapshot` header), and of a pass run with `--dry-run`: what such a pass
#: reveals is reported and never corrected, until a pass that is not a dry run sees it (docs/reconcile.md).
RECONCILE_PASS: Final = "reconcile:"
RECONCILE_DRY_RUN: Final = "reconcile-dry-run:"
#: The note of a finding whose correction waits for a person's approval (a rule in `approve` mode).
AWAITING: Final = "awaiting approval"

PENDING: Final = "pending"
OPEN: Final = "open"
COMMANDED: Final = "commanded"
ESCALATED: Final = "escalated"
RESOLVED: Final = "resolved"
ACTIVE: Final = frozenset({OPEN, COMMANDED, ESCALATED})

_replace = msgspec.structs.replace


class Verdict(Struct, frozen=True):
    state: CustomerState
    transitions: tuple[Transition, ...] = ()
    commands: tuple[Command, ...] = ()


def rules_to_run(rules: Sequence[Rule], sections: Iterable[str] | None) -> list[Rule]:
    """Rules reading any of `sections` (all rules when None: a deadline tick, a recovery)."""
    if sections is None:
        return list(rules)
    changed = frozenset(sections)
    return [rule for rule in rules if rule.reads & changed]


Prepared = tuple[Rule, RuleConfig, Context]


class _Plan:
    """The enabled rules with their settings, and which of them read each set of parts (memoized)."""

    def __init__(self, rules: Sequence[Rule], config: DriftConfig) -> None:
        self.rules = rules
        self.config = config
        prepared = []
        for rule in rules:
            rule_config = config.rule(rule.id, rule.defaults)
            if rule_config.enabled:
                prepared.append((rule, rule_config, Context(rule_config, config)))
        self.all: tuple[Prepared, ...] = tuple(prepared)
        # The rules whose corrections wait for a person's approval (`mode: approve`).
        self.approve = frozenset(rule.id for rule, rule_config, _ in self.all if rule_config.mode == "approve")
        self.reads_drift = any("drift" in rule.reads for rule, _, _ in self.all)
        # The platforms whose events each rule reads: its findings wait for their watermarks.
        self.platforms = {rule.id: platforms_read(rule.reads) for rule in rules}
        # The parts each rule reads that a re-read may leave unknown: the rule waits while one is.
        self.reads_unread = {rule.id: reads for rule in rules if (reads := rule.reads & _UNREAD_PARTS)}
        self._by_parts: dict[frozenset[str], tuple[Prepared, ...]] = {}

    def reading(self, sections: Iterable[str] | None) -> tuple[Prepared, ...]:
        if sections is None:
            return self.all
        parts = sections if isinstance(sections, frozenset) else frozenset(sections)
        found = self._by_parts.get(parts)
        if found is None:
            found = self._by_parts[parts] = tuple(p for p in self.all if p[0].reads & parts)
        return found


_plans: dict[tuple[int, int], _Plan] = {}
_last: list[_Plan] = []  # the plan used last: a worker evaluates every event with the same one


def _plan(rules: Sequence[Rule], config: DriftConfig) -> _Plan:
    # The cache holds the rules and config it was built from, so their ids cannot be reused while
    # cached; a workload has one or two configurations, tests a few more.
    if _last and _last[0].rules is rules and _last[0].config is config:
        return _last[0]
    plan = _plans.get((id(rules), id(config)))
    if plan is None or plan.rules is not rules or plan.config is not config:
        if len(_plans) >= 16:
            _plans.clear()
        plan = _plans[(id(rules), id(config))] = _Plan(rules, config)
    _last[:] = [plan]
    return plan


class _Run:
    """Collects the transitions and commands of one evaluation."""

    def __init__(self, state: CustomerState, now: int, correlation_id: str,
                 approve: frozenset[str] = frozenset()) -> None:
        self.state = state
        self.now = now
        self.correlation_id = correlation_id
        self.approve = approve
        self.transitions: list[Transition] = []
        self.commands: list[Command] = []

    def transition(self, item: DriftItem, previous: str | None) -> None:
        self.transitions.append(Transition(
            fingerprint=item.fingerprint, rule=item.rule, customer_key=self.state.key, subject=item.subject,
            status=item.status, previous=previous, severity=item.severity, at=self.now, since=item.since,
            first_seen=item.first_seen, last_seen=item.last_seen, generation=item.generation,
            command_id=item.command_id, action=item.action, dry_run=item.dry_run, resolution=item.resolution,
            summary=item.summary, evidence=item.evidence, correlation_id=self.correlation_id or item.correlation_id,
            note=item.note,
        ))

    def command(self, item: DriftItem, finding_action: Any, previous: str, approved: bool = False) -> DriftItem:
        """The finding's next generation commanded (and its transition from `previous`); for a rule in `approve`
        mode, unless `approved`, the command's id is kept as `awaiting` instead and nothing is sent."""
        generation = item.generation + 1
        cid = command_id(item.fingerprint, item.action, generation, item.since)
        if item.rule in self.approve and not approved:
            if item.awaiting == cid:
                return item
            return _replace(item, awaiting=cid, last_seen=self.now,
                            note=f"{AWAITING}: {item.action} (command {cid}, generation {generation})")
        self.commands.append(Command(
            command_id=cid, action=item.action, platform=finding_action.platform,
            target=dict(finding_action.target), payload=dict(finding_action.payload),
            fingerprint=item.fingerprint, rule=item.rule, customer_key=self.state.key, generation=generation,
            correlation_id=self.correlation_id or item.correlation_id, created_at=self.now, occurrence=item.since,
        ))
        commanded = _replace(item, status=COMMANDED, generation=generation, last_command_at=self.now,
                             command_id=cid, awaiting="", note="" if item.awaiting else item.note)
        self.transition(commanded, previous)
        return commanded


def evaluate(
    state: CustomerState,
    now: int,
    rules: Sequence[Rule],
    config: DriftConfig,
    sections: Iterable[str] | None = None,
    correlation_id: str = "",
    watermarks: Mapping[str, int] | None = None,
    _again: bool = True,
    retry: str = "",
    approve: str = "",
) -> Verdict:
    """Run the rules reading `sections` (all when None) and advance every finding's lifecycle.

    `watermarks` (platform -> epoch ms, drift/watermarks.py): how far Concord has read each platform.
    A deadline (a grace window, a correction timeout) is judged only once every platform its rule
    reads has been read past it: behind on a platform, Concord waits instead of reporting a
    disagreement the events it has not read yet may settle. A platform not in `watermarks` (nothing
    known of it) does not hold anything back; None judges on the clock alone.
    Transitions change the `drift` section itself: rules reading it (D14) then run once more.
    """
    if state.merged_into is not None:
        return _retired(state, now, correlation_id)
    plan = _plan(rules, config)
    read_past = _reader(plan, watermarks)
    if correlation_id.startswith(RECONCILE_PASS) and any(
            i.dry_run and i.correlation_id.startswith(RECONCILE_DRY_RUN) for i in state.drift.values()):
        sections = None  # a pass that is not a dry run sees what one revealed, changed or not: every rule runs
    to_run = plan.reading(sections)
    if not to_run and not (state.next_due and now >= state.next_due):
        return Verdict(state)  # nothing changed that a rule reads, nothing due: the common case
    items = dict(state.drift)
    # Unknown is not absent: while a part of the state a rule reads is unread, the rule still notes what it
    # finds (pending), but neither resolves nor reports nor commands anything (until the bound: "cannot judge").
    waiting = _waiting(plan, state) if state.support.unread or state.crm.unread else _NOT_WAITING
    ran: set[str] = set()
    actions: dict[str, Any] = {}  # fingerprint -> action, of every finding the rules that ran found now
    undried: set[str] = set()  # findings in dry run until now, no longer (a reconciliation that is not one saw them)
    for rule, rule_config, ctx in to_run:
        if rule.id not in waiting:  # a finding not found now may be one the unread entitlement hides
            ran.add(rule.id)
        for finding in rule.check(state, now, ctx):
            fp = finding.fingerprint
            actions[fp] = finding.action
            known = items.get(fp)
            items[fp] = _observe(known, finding, fp, rule_config.grace_seconds * 1000, rule_config.severity,
                                 _dry_run(rule_config.dry_run, known, correlation_id), now, correlation_id)
            if known is not None and known.dry_run and not items[fp].dry_run:
                undried.add(fp)
    if not items:
        # No finding before, none now (a healthy customer, the common case): no lifecycle to advance.
        return Verdict(_replace(state, drift=items, next_due=0) if state.next_due else state)
    run = _Run(state, now, correlation_id, plan.approve)
    for fp, item in list(items.items()):
        snoozed = item.snoozed_until > now  # a person said to wait: nothing reported, commanded or escalated
        if item.rule in waiting:
            if not snoozed:
                items[fp] = _wait(item, waiting[item.rule], config, now, run)
        elif item.rule in ran and fp not in actions:
            resolved = _resolve(item, now, run)
            if resolved is None:
                del items[fp]
            else:
                items[fp] = resolved
        elif fp in (retry, approve):
            items[fp] = _retry(item, actions.get(fp), run, approved=fp == approve)
        elif fp in undried and item.status == OPEN and item.action != "review" and not snoozed:
            items[fp] = run.command(item, actions[fp], OPEN)  # reported while in dry run: corrected now
        elif not snoozed:
            items[fp] = _advance(item, actions.get(fp), config, now, run, read_past)
    items = _bound_resolved(items, config.resolved_kept)
    next_due = _next_due(items.values(), config, waiting)
    if next_due == state.next_due and _same(items, state.drift):
        new_state = state  # nothing moved: callers can skip writing it
    else:
        new_state = _replace(state, drift=items, next_due=next_due)
    verdict = Verdict(new_state, tuple(run.transitions), tuple(run.commands))
    if _again and run.transitions and plan.reads_drift:
        follow = evaluate(new_state, now, rules, config, {"drift"}, correlation_id, watermarks, _again=False)
        verdict = Verdict(follow.state, verdict.transitions + follow.transitions, verdict.commands + follow.commands)
    return verdict


def _retired(state: CustomerState, now: int, correlation_id: str) -> Verdict:
    """A merged-away account: its records are judged on the winner now, under the winner's key.

    Its reported findings resolve as `merged` (they would otherwise stay open on a state nothing
    updates any more); pending ones are dropped; no rule runs and nothing is due.
    """
    if state.next_due == 0 and all(item.status == RESOLVED for item in state.drift.values()):
        return Verdict(state)
    run = _Run(state, now, correlation_id)
    items: dict[str, DriftItem] = {}
    for fp, item in state.drift.items():
        if item.status == PENDING:
            continue
        if item.status != RESOLVED:
            item = _replace(item, status=RESOLVED, resolution="merged", resolved_at=now, last_seen=now,
                            note=f"account merged into {state.merged_into}")
            run.transition(item, state.drift[fp].status)
        items[fp] = item
    return Verdict(_replace(state, drift=items, next_due=0), tuple(run.transitions))


def _same(items: dict[str, DriftItem], before: dict[str, DriftItem]) -> bool:
    """Same findings, by identity first (unchanged items are the very same objects)."""
    return len(items) == len(before) and all(before.get(fp) is item or before.get(fp) == item
                                             for fp, item in items.items())


def _dry_run(rule_dry_run: bool, item: DriftItem | None, correlation_id: str) -> bool:
    """Whether a finding is in dry run now: its rule is, or a dry-run reconciliation pass revealed it and no pass
    that is not a dry run has seen it since (a live event or a deadline tick leaves it as it was)."""
    if rule_dry_run or correlation_id.startswith(RECONCILE_DRY_RUN):
        return True
    if correlation_id.startswith(RECONCILE_PASS):
        return False
    return (item is not None and item.dry_run and item.status != RESOLVED
            and item.correlation_id.startswith(RECONCILE_DRY_RUN))


def _observe(item: DriftItem | None, finding: Finding, fp: str, grace_ms: int, severity: str, dry_run: bool,
             now: int, correlation_id: str = "") -> DriftItem:
    """Record what the rule sees now: a new pending item (revealed by the event `correlation_id` names), or
    fresh evidence on a known one."""
    if item is None or (item.status == RESOLVED and item.resolution != "accepted"):
        return DriftItem(
            fingerprint=fp, rule=finding.rule, subject=finding.subject, status=PENDING, severity=severity,
            # Grace runs from when the disagreement began, but never from before Concord saw it: a
            # backlog replayed after downtime must not report the transient disagreements of its past.
            since=finding.since, due=max(finding.since, now) + grace_ms, action=finding.action.name, dry_run=dry_run,
            summary=finding.summary, evidence=finding.evidence, correlation_id=correlation_id,
        )
    if item.status == RESOLVED:  # accepted by a person: stays silent while the condition lasts
        return item
    if item.status == PENDING and finding.since > item.since:
        # Not reported yet, and the evidence now says the disagreement began later than first thought (it
        # was first seen on an input then unknown, or a record it read has changed since): the grace runs
        # from the later start. The deadline never moves earlier.
        item = _replace(item, since=finding.since, due=max(item.due, finding.since + grace_ms))
    last_seen = now if item.status in ACTIVE else item.last_seen
    if (item.evidence == finding.evidence and item.summary == finding.summary and item.last_seen == last_seen
            and item.severity == severity and item.dry_run == dry_run):
        return item
    return _replace(item, evidence=finding.evidence, summary=finding.summary, last_seen=last_seen,
                    severity=severity, dry_run=dry_run)


ReadPast = Callable[[str, int], bool]


def _reader(plan: _Plan, watermarks: Mapping[str, int] | None) -> ReadPast:
    """`read_past(rule, t)`: every platform `rule` reads has been read past `t` (always, without watermarks)."""
    if not watermarks:
        return _always

    def read_past(rule: str, t: int) -> bool:
        return all(watermarks.get(p, t) >= t for p in plan.platforms.get(rule, ()))
    return read_past


def _always(rule: str, t: int) -> bool:
    return True


# A rule waiting for an unread part of the state: since when that part is unread, and the part.
Unread = tuple[int, str]
_NOT_WAITING: Final[Mapping[str, Unread]] = {}


def _waiting(plan: _Plan, state: CustomerState) -> dict[str, Unread]:
    """The rules that read a part of `state` unread now, each with the part unread longest."""
    unread = {section: since for section, since_of in UNREAD_SECTIONS.items() if (since := since_of(state))}
    waiting: dict[str, Unread] = {}
    for rule_id, reads in plan.reads_unread.items():
        found = [(unread[section], section) for section in reads if section in unread]
        if found:
            waiting[rule_id] = min(found)
    return waiting


def _wait(item: DriftItem, unread: Unread, config: DriftConfig, now: int, run: _Run) -> DriftItem:
    """A finding whose rule reads a part of the state unread since `unread[0]`: it waits, and once due and
    past the bound is reported as "cannot judge", with no command (a correction made blind could be wrong)."""
    since, section = unread
    bound = since + config.unread_bound_seconds * 1000
    if now < bound:
        return item
    seen = datetime.fromtimestamp(since / 1000, UTC).isoformat(timespec="seconds")
    # "support unreadable since ...", "crm unreadable since ...": the system whose records are not read.
    note = f"{CANNOT_JUDGE}: {section.split('.', 1)[0]} unreadable since {seen}"
    if item.status == PENDING and now >= item.due:
        opened = _replace(item, status=OPEN, first_seen=now, last_seen=now, note=note)
        run.transition(opened, PENDING)
        return opened
    if item.status == COMMANDED and now >= item.last_command_at + config.correction_timeout_seconds * 1000:
        # Whether the correction took cannot be seen: a person takes it over (as after failed corrections).
        escalated = _replace(item, status=ESCALATED, last_seen=now, note=note)
        run.transition(escalated, COMMANDED)
        return escalated
    return item


def _advance(item: DriftItem, action: Any, config: DriftConfig, now: int, run: _Run,
             read_past: ReadPast = _always) -> DriftItem:
    """The passage of time: report what is due, re-command or escalate what did not converge.

    Nothing is judged before the platforms the rule reads have been read past the deadline. A finding
    reported as "cannot judge" is judged once its input is read again: still there, it is corrected.
    """
    if item.status == OPEN and item.note.startswith(CANNOT_JUDGE) and action is not None:
        judged = _replace(item, note="", last_seen=now)
        if item.action != "review" and not item.dry_run:
            return run.command(judged, action, OPEN)
        return judged
    # `action` is None when the rule did not run now: wait for the deadline tick, which runs them all.
    if item.status == PENDING and now >= item.due and action is not None and read_past(item.rule, item.due):
        opened = _replace(item, status=OPEN, first_seen=now, last_seen=now)
        run.transition(opened, PENDING)
        if item.action != "review" and not item.dry_run:
            return run.command(opened, action, OPEN)
        return opened
    if item.awaiting:
        return item  # its correction waits for a person: nothing more until they decide
    timeout_at = item.last_command_at + config.correction_timeout_seconds * 1000
    if item.status == COMMANDED and now >= timeout_at and read_past(item.rule, timeout_at):
        if item.generation >= config.max_corrections:
            escalated = _replace(item, status=ESCALATED, last_seen=now,
                                 note=f"still there after {item.generation} correction(s)")
            run.transition(escalated, COMMANDED)
            return escalated
        if action is not None:
            return run.command(item, action, COMMANDED)
    return item


def _retry(item: DriftItem, action: Any, run: _Run, approved: bool = False) -> DriftItem:
    """A person asked for the correction now (`approved`: approved the one waiting): the next generation,
    whatever the deadlines say."""
    if item.status not in ACTIVE or action is None or item.action == "review" or item.dry_run:
        return item
    if approved and not item.awaiting:
        return item
    return run.command(item, action, item.status, approved)


def retry(state: CustomerState, fingerprint: str, now: int, rules: Sequence[Rule], config: DriftConfig,
          correlation_id: str = "", watermarks: Mapping[str, int] | None = None) -> Verdict:
    """A person retries a reported finding's correction now: every rule runs (the finding's action is what its
    rule says now), and if the rule still finds it, its next generation is commanded at once, escalated or
    snoozed or not (a snooze ends). A finding without a correction (review, dry run) or no longer found
    gets none (the latter resolves, as on any evaluation)."""
    item = state.drift.get(fingerprint)
    if item is None or item.status not in ACTIVE:
        return Verdict(state)
    if item.snoozed_until:
        state = _replace(state, drift={**state.drift, fingerprint: _replace(item, snoozed_until=0)})
    return evaluate(state, now, rules, config, None, correlation_id, watermarks, retry=fingerprint)


def _resolve(item: DriftItem, now: int, run: _Run) -> DriftItem | None:
    """The rule no longer finds it: drop it if never reported, else resolve it."""
    if item.status == PENDING:
        return None
    if item.status == RESOLVED:
        return item
    resolution = "corrected" if item.generation > 0 else "converged"
    resolved = _replace(item, status=RESOLVED, resolution=resolution, resolved_at=now, last_seen=now)
    run.transition(resolved, item.status)
    return resolved


def accepted_note(by: str, note: str) -> str:
    """What an accepted finding says: who accepted it, and why when they said."""
    return f"accepted by {by}: {note}" if note else f"accepted by {by}"


def accept(state: CustomerState, fingerprint: str, now: int, by: str, config: DriftConfig,
           correlation_id: str = "", note: str = "") -> Verdict:
    """A person (`by`) accepts a reported finding: resolved as `accepted`, silent while it lasts. Who and
    why are kept as its note (`accepted_note`), on the finding and in the transition."""
    item = state.drift.get(fingerprint)
    if item is None or item.status not in ACTIVE:
        return Verdict(state)
    accepted = _replace(item, status=RESOLVED, resolution="accepted", resolved_at=now, last_seen=now,
                        note=accepted_note(by, note))
    return _settled(state, accepted, item.status, now, config, correlation_id or f"accept:{by}")


def snooze(state: CustomerState, fingerprint: str, now: int, until: int, by: str, config: DriftConfig,
           note: str = "") -> Verdict:
    """A person (`by`) snoozes a reported finding until `until` (epoch ms): it keeps its status, and nothing is
    reported, commanded or escalated for it before then (it still resolves if the systems come to agree).
    The deadline tick at `until` resumes it: a correction that timed out meanwhile is commanded again then.
    No transition (the status does not change); who, until when and why are its note."""
    item = state.drift.get(fingerprint)
    if item is None or item.status not in ACTIVE or until <= now:
        return Verdict(state)
    snoozed = _replace(item, snoozed_until=until,
                       note=f"snoozed by {by} until {iso_minutes(until)}" + (f": {note}" if note else ""))
    items = {**state.drift, fingerprint: snoozed}
    return Verdict(_replace(state, drift=items, next_due=_next_due(items.values(), config)))


def approve(state: CustomerState, fingerprint: str, now: int, rules: Sequence[Rule], config: DriftConfig,
            correlation_id: str = "", watermarks: Mapping[str, int] | None = None) -> Verdict:
    """A person approves the correction waiting for approval: every rule runs, and if the rule still finds it,
    the command is sent, with the id it waited under (same finding, generation and occurrence). No longer
    found, it resolves and nothing is sent."""
    item = state.drift.get(fingerprint)
    if item is None or item.status not in ACTIVE or not item.awaiting:
        return Verdict(state)
    return evaluate(state, now, rules, config, None, correlation_id, watermarks, approve=fingerprint)


def reject(state: CustomerState, fingerprint: str, now: int, by: str, config: DriftConfig,
           note: str = "") -> Verdict:
    """A person rejects the correction waiting for approval: nothing is sent and the finding is `escalated` to
    its owner team (the disagreement stays: they fix it by hand, or accept it). Who and why are its note."""
    item = state.drift.get(fingerprint)
    if item is None or item.status not in ACTIVE or not item.awaiting:
        return Verdict(state)
    rejected = _replace(item, status=ESCALATED, awaiting="", last_seen=now,
                        note=f"correction rejected by {by}" + (f": {note}" if note else ""))
    return _settled(state, rejected, item.status, now, config, f"reject:{by}")


def correction_failed(state: CustomerState, failed: CorrectionFailed, now: int, config: DriftConfig,
                      correlation_id: str = "") -> Verdict:
    """The current correction of a finding was dead-lettered for a data error: escalate it now.

    Commanding it again cannot succeed (the platform refused what was sent, or no connector sends it),
    and waiting for the correction timeout to command the next generation only left one dead letter per
    generation before the escalation. A report about another command (an older generation, a finding
    no longer commanded, a repeat) changes nothing. If a person fixes the data and replays the dead
    letter, the finding resolves as `corrected` once the systems agree.
    """
    item = state.drift.get(failed.fingerprint)
    if item is None or item.status != COMMANDED or item.command_id != failed.command_id:
        return Verdict(state)
    escalated = _replace(item, status=ESCALATED, last_seen=now,
                         note=f"correction {failed.command_id} was dead-lettered: {failed.reason}"[:500])
    # The escalation follows from the finding's command: it keeps the chain's correlation id when there is one.
    return _settled(state, escalated, COMMANDED, now, config,
                    correlation_id or item.correlation_id or failed.command_id)


def _settled(state: CustomerState, item: DriftItem, previous: str, now: int, config: DriftConfig,
             correlation_id: str) -> Verdict:
    """A verdict on one finding from outside the rules (an accept, a refused correction): `item` replaces it.

    The customer's next deadline is recomputed: the finding may have been the one it waited for.
    """
    run = _Run(state, now, correlation_id)
    run.transition(item, previous)
    items = {**state.drift, item.fingerprint: item}
    return Verdict(_replace(state, drift=items, next_due=_next_due(items.values(), config)), tuple(run.transitions))


def then_rules_on_findings(verdict: Verdict, now: int, rules: Sequence[Rule], config: DriftConfig,
                           correlation_id: str = "", watermarks: Mapping[str, int] | None = None) -> Verdict:
    """`verdict` (from outside the rules: an accept, a refused correction), then the rules that read the
    findings themselves (D14 hands an escalation to a person): as after an evaluation that moved a finding.
    Left to a later deadline tick, an escalation's D14 waited for an unrelated event, or for ever."""
    if not verdict.transitions:
        return verdict
    # What follows belongs to the chain of the step it follows (the finding's, unless one is given).
    follow = evaluate(verdict.state, now, rules, config, {"drift"},
                      correlation_id or verdict.transitions[0].correlation_id, watermarks)
    return Verdict(follow.state, verdict.transitions + follow.transitions, verdict.commands + follow.commands)


def _bound_resolved(items: dict[str, DriftItem], keep: int) -> dict[str, DriftItem]:
    if len(items) <= keep:
        return items  # fewer items than the bound: fewer resolved ones too
    resolved = [i for i in items.values() if i.status == RESOLVED and i.resolution != "accepted"]
    if len(resolved) <= keep:
        return items
    drop = sorted(resolved, key=lambda i: (i.resolved_at, i.fingerprint))[: len(resolved) - keep]
    return {fp: i for fp, i in items.items() if i not in drop}


def _next_due(items: Iterable[DriftItem], config: DriftConfig, waiting: Mapping[str, Unread] = _NOT_WAITING) -> int:
    """When this customer must be looked at again without a new event (0: never).

    A pending finding of a rule waiting for an unread input is looked at when the wait's bound expires
    (the re-read, when it comes, is an event of its own).
    """
    timeout = config.correction_timeout_seconds * 1000
    bound = config.unread_bound_seconds * 1000
    earliest: int | None = None
    for item in items:  # one pass: this runs on every evaluation that ran a rule
        if item.awaiting:
            continue  # waits for a person, not for a time
        if item.status == PENDING:
            due = item.due
        elif item.status == COMMANDED:
            due = item.last_command_at + timeout
        else:
            continue
        if waiting and item.rule in waiting:
            due = max(due, waiting[item.rule][0] + bound)
        due = max(due, item.snoozed_until)
        if earliest is None or due < earliest:
            earliest = due
    return 0 if earliest is None else earliest
