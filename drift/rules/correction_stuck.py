"""D14: a correction did not converge, or corrections were exhausted.

Reads the customer's own drift items (`state.drift`):

* `commanded` for longer than `correction_timeout_seconds` since the last command, and not
  re-commanded (the lifecycle re-commands at the timeout whenever the item's rule runs, so this is
  the safety net: a rule disabled mid-correction, a lost deadline). Action: `concord.probe`, re-read
  the target and look up the command's outcome. Subject: the stuck item's fingerprint.
* `escalated` (`max_corrections` commands did not converge): a person decides. Subject:
  `<fingerprint>|escalated`, a finding of its own, because the lifecycle keeps the action a finding
  was first reported with and this one must never be a probe.

`since` is when the timeout after the last command passed (when it was escalated, for the second).
Items of this rule are never judged, so a probe that itself hangs does not breed findings. Evidence:
the item's status, then the evidence it was last seen with. The rule reads only `drift`, which no
event changes: it runs on the deadline ticks of the lifecycle.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import REVIEW, Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import action, observed
from concord.tables.state import CustomerState, DriftItem


def _finding(state: CustomerState, item: DriftItem, since: int, ctx: Context) -> Finding:
    subject = item.fingerprint
    if item.status == "commanded":
        payload = {"rule": item.rule, "subject": item.subject, "action": item.action, "command_id": item.command_id,
                   "generation": item.generation}
        fix = action(ctx, "concord", {"fingerprint": item.fingerprint}, payload)
        summary = f"{item.rule} correction {item.action} sent {item.generation} time(s) has not converged"
    else:
        subject = f"{item.fingerprint}|escalated"
        fix = REVIEW
        summary = f"{item.rule} escalated after {item.generation} correction(s): a person must decide"
    return Finding(
        rule=RULE.id,
        customer_key=state.key,
        subject=subject,
        since=since,
        evidence=(
            observed("concord", item.fingerprint, "status", item.status, item.last_command_at, item.last_command_at),
            *item.evidence,
        ),
        action=fix,
        summary=summary,
    )


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if not state.drift:
        return []
    timeout_ms = ctx.config.correction_timeout_seconds * 1000
    findings: list[Finding] = []
    for item in state.drift.values():
        if item.rule == RULE.id:
            continue
        stuck_at = item.last_command_at + timeout_ms
        if (item.status == "commanded" and now_ms > stuck_at) or item.status == "escalated":
            findings.append(_finding(state, item, stuck_at if item.last_command_at else item.since, ctx))
    return findings


RULE = Rule(
    id="D14",
    name="correction_stuck",
    title="Correction not converging, or corrections exhausted",
    reads=frozenset({"drift"}),
    defaults=RuleConfig(grace_seconds=1800, severity="high", action="concord.probe", owner="integration"),
    check=check,
)
