"""What an action receives: the board's form fields (with the CSRF token, app/sessions.py), or a script's JSON."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from aiohttp import web

from concord.app.sessions import CSRF_FIELD

B = TypeVar("B", bound=msgspec.Struct)

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def is_form(request: web.Request) -> bool:
    """Posted by the board's form (answered with a redirect back), rather than by a script (JSON)."""
    return request.content_type in _FORM_TYPES


async def action_body(request: web.Request, kind: type[B]) -> B:
    """The body of an action: the board's form fields, or an optional JSON object (empty: the defaults)."""
    if is_form(request):
        form = await request.post()
        fields = {k: v.strip() for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD and v.strip()}
        return msgspec.convert(fields, kind, strict=False)
    raw = await request.read()
    return msgspec.json.decode(raw, type=kind) if raw.strip() else msgspec.convert({}, kind)
