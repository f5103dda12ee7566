"""`POST /api/dead-letters/replay`: an operator replays one dead letter or a filtered set of them, by name.

The same replay as `concord replay` (app/replay.py: its filters, its reading of the dead-letter topic up to
where it ended when the request came, its ledger-safe re-send), run by the worker that got the request, so
nothing is written twice. The request says what: `{"kind": "commands", "ids": [...]}` or a filter (`rule`,
`platform`, `action`; for ingest `reason`, `platform`), or `all`; `dry_run` lists what would go. The answer is
the replay's summary and its lines (the first `LINES_SHOWN`). Every replay, a dry run too, is a checkpoint on
the audit topic (`action.replay`, with the operator's name, the filter and the summary; of no customer: the
dead letters may be of many). The board's form (an escalated finding whose command was dead-lettered) posts
`kind=commands&ids=<command id>` and is sent back to the board.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final, Literal, cast

import msgspec
from aiohttp import web
from faust.web import Request, Response, View

from concord.app import access
from concord.app.forms import action_body, is_form
from concord.app.replay import CommandFilter, IngestFilter, ReplayError, Summary, replay_commands, replay_ingest
from concord.app.schemas import ApiError
from concord.core import messages, metrics

if TYPE_CHECKING:
    from concord.agents.context import Concord

#: Lines of the replay's output an answer carries (a large replay's progress lines are counted, not listed).
LINES_SHOWN: Final = 200

_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ReplayRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to replay: command dead letters by id or filter, or ingest dead letters by reason or platform."""

    kind: Literal["commands", "ingest"]
    ids: Annotated[list[_Text], msgspec.Meta(max_length=1000)] = []
    rule: _Text | None = None
    platform: _Text | None = None
    action: _Text | None = None
    reason: _Text | None = None
    all: bool = False
    dry_run: bool = False
    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""

    def commands(self) -> CommandFilter:
        return CommandFilter(ids=frozenset(self.ids), rule=self.rule, platform=self.platform, action=self.action,
                             all=self.all)

    def ingest(self) -> IngestFilter:
        if self.ids or self.rule or self.action:
            raise ValueError("ingest dead letters are chosen by `reason` or `platform` (or `all`)")
        return IngestFilter(reason=self.reason, platform=self.platform, all=self.all)


class FormReplay(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The board's form: one command dead letter, by its id."""

    kind: Literal["commands"]
    ids: _Text
    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class ReplayAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What a replay did: its counts, the line `concord replay` would print, by whom, and the first lines of detail."""

    summary: Summary
    line: str
    by: str
    lines: list[str]
    lines_total: int


def register(concord: Concord) -> None:
    app = concord.app
    names = concord.names
    audit = concord.topics.get(names.audit) or concord.topic(names.audit)

    def json(view: View, value: object, status: int = 200) -> Response:
        return view.bytes(msgspec.json.encode(value), content_type="application/json", status=status)

    from concord.app.contract import page  # the contract names this module's Structs: imported once it is loaded

    @page(app, "/dead-letters/replay")
    class ReplayView(View):
        """Replay dead letters (an operator; see the module docstring)."""

        async def post(self, faust_request: Request) -> Response:
            request = cast(web.Request, faust_request)
            who = access.identity(request)
            assert who is not None and who.can_act  # the access middleware let only an operator through
            try:
                if is_form(request):
                    form = await action_body(request, FormReplay)
                    asked = ReplayRequest(kind=form.kind, ids=[form.ids], note=form.note)
                else:
                    asked = await action_body(request, ReplayRequest)
                flt = asked.commands() if asked.kind == "commands" else asked.ingest()
                if not flt.given:
                    raise ValueError("say which dead letters: `ids` or a filter, or `all` for every one")
            except (msgspec.DecodeError, ValueError) as exc:
                return json(self, ApiError("bad_request", f"body: {exc}"), 400)
            lines: list[str] = []
            try:
                if isinstance(flt, CommandFilter):
                    summary = await replay_commands(concord.settings, flt, asked.dry_run, lines.append)
                else:
                    summary = await replay_ingest(concord.settings, flt, asked.dry_run, lines.append)
            except ReplayError as exc:
                return json(self, ApiError("kafka_unavailable", str(exc)), 503)
            metrics.actions.labels("replay").inc()
            await audit.send(key=b"replay", value=messages.encode(checkpoint(who.name, asked, summary)))
            if is_form(request):
                return cast(Response, web.Response(status=303, headers={"Location": "/", "Cache-Control": "no-store"}))
            return json(self, ReplayAnswer(summary=summary, line=summary.line(asked.kind), by=who.name,
                                           lines=lines[:LINES_SHOWN], lines_total=len(lines)))


def checkpoint(by: str, asked: ReplayRequest, summary: Summary) -> messages.AuditRecord:
    """The audit record of a replay: who, what they asked for, what came of it."""
    asked_for = {k: v for k, v in msgspec.structs.asdict(asked).items() if v not in (None, [], False, "")}
    return messages.AuditRecord(kind="action.replay", at=messages.now_ms(), correlation_id=f"replay:{by}",
                                platform="concord", detail={"by": by, "asked": asked_for,
                                                            "summary": msgspec.structs.asdict(summary)})
