"""The console's templates and static files.

Jinja2 with autoescaping on for every template: a customer name, a summary or an evidence value that holds
`<script>` is shown as text, never run; and undefined names fail loudly (a typo in a template is an error
in the tests, not an empty cell). Pages extend `base.html`; the fragments the page's script fetches
(`_finding.html`, `_summary.html`, `_health.html`) are the very templates the page includes, so a row
updated live looks exactly like one rendered with the page.

Static files (`static/`) are read once, at import: the page's stylesheet and script, served by the
worker itself (no CDN, no build step).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any, Final

import jinja2
from msgspec import Struct

from concord.app.console.board import duration, when
from concord.app.console.customer import checkpoint_text, field_text, kind_text, system_title

HERE: Final = Path(__file__).resolve().parent

ENV: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # templates ship with the code: no stat per render
)
ENV.filters["duration"] = duration
ENV.filters["when"] = when
ENV.filters["field_text"] = field_text
ENV.filters["checkpoint_text"] = checkpoint_text
ENV.filters["kind_text"] = kind_text
ENV.filters["system_title"] = system_title


def render(template: str, **context: Any) -> str:
    """`template` rendered with `context`."""
    return ENV.get_template(template).render(**context)


class StaticFile(Struct, frozen=True):
    body: bytes
    content_type: str


def _static_files() -> dict[str, StaticFile]:
    files = {}
    for path in sorted((HERE / "static").iterdir()):
        if path.is_file():
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            text = kind.startswith("text/") or kind.endswith("javascript")
            files[path.name] = StaticFile(path.read_bytes(), f"{kind}; charset=utf-8" if text else kind)
    return files


#: name -> file: only these are served (a name not in it is a 404, whatever it holds).
STATIC: Final = _static_files()
