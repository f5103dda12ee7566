"""Every place Concord relies on Faust's or aiokafka's internals, together, with the versions they know.

* `commits.py`: fixes to Faust's offset commits (never commit past a message that was not processed);
* `changelog.py`: table values written to the changelog (and the audit checkpoints of the state agent) in
  one batch per partition;
* `fetching.py`: the worker consumer's fetch long-poll, a setting (Faust fixes it at 1.5 s);
* `streams.py`: the current event of an agent that takes its records in batches (table writes need it);
* `table_store.py`: the tables' store, which recovers their changelog in bulk with a plain consumer, and
  the hook in Faust's recovery that has it load the active partitions before Faust reads the rest;
* `recovery.py`: whether table recovery has finished, and a plain consumer's metadata refresh;
* `delivery.py`: a fast path for the consumer's per-message delivery (no task pair per message while
  flow is not suspended);
* `web.py`: a second listener on Faust's web server (the public webhook port), and `/` left to the board.

They were written against faust-streaming 0.15.3 and aiokafka 0.12-0.14 (tested on 0.14.0). A worker
refuses to start on any other version (`check_versions`): a private attribute that moved would at
best switch a fix off and at worst lose messages silently, so a new version is reviewed here first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import metadata
from typing import Any, Final

#: distribution -> (lowest known, first unknown): the half-open range each internal was written for.
KNOWN_VERSIONS: Final = {
    "faust-streaming": ((0, 15, 3), (0, 16)),
    "aiokafka": ((0, 12), (0, 15)),
}

E_UNSUPPORTED: Final = (
    "{name} {version} is installed, but Concord relies on its internals and knows only {name} "
    "{low} up to (not including) {high}: its offset-commit fixes, delivery fast path and changelog writer "
    "(concord/agents/faust_internals/) must be reviewed for this version first. Install a known one: "
    "pip install '{name}>={low},<{high}'"
)


class UnsupportedVersion(RuntimeError):
    """A Faust or aiokafka version the internals here were not written for."""


def version_tuple(text: str) -> tuple[int, ...]:
    """`0.15.3` -> (0, 15, 3); a pre-release or local suffix is cut off (`0.16.0rc1` -> (0, 16, 0))."""
    match = re.match(r"\d+(\.\d+)*", text.strip())
    if match is None:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def check_versions(installed: Callable[[str], str] = metadata.version) -> None:
    """Raise `UnsupportedVersion` unless every distribution in `KNOWN_VERSIONS` is in its range."""
    for name, (low, high) in KNOWN_VERSIONS.items():
        version = installed(name)
        if not low <= version_tuple(version) < high:
            raise UnsupportedVersion(E_UNSUPPORTED.format(name=name, version=version, low=_dotted(low),
                                                          high=_dotted(high)))


#: Set on every wrapper installed over a Faust or aiokafka internal, so that none is installed twice.
PATCHED: Final = "_concord_patched"


def wrap_once(owner: Any, name: str, wrapper: Callable[[Any], Any]) -> None:
    """Replace `owner.name` by `wrapper(owner.name)`, unless it is missing or already one of ours."""
    current = getattr(owner, name, None)
    if current is not None and not getattr(current, PATCHED, False):
        setattr(owner, name, wrapper(current))
