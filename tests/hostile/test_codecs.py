"""Every codec against the hostile corpus: each input is decoded or refused with a reason, never a crash.

A refusal is a `DecodeError` whose reason is a short snake_case word (it becomes a metric label and the
dead letter's reason) and whose detail is one line with no traceback. Anything else raised is a crash,
and the test names the input that caused it.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from concord.codecs.config import DEFAULT_CODEC_CONFIG
from concord.codecs.errors import DecodeError
from concord.codecs.registry import decoder
from tests.hostile.corpus import PLATFORMS, corpus

PER_SEED = 600  # mutations of each kind per real payload: about 50,000 inputs in all
REASON = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


def run(fixtures: Path, per_seed: int = PER_SEED) -> tuple[Counter[tuple[str, str, str]], list[str]]:
    """Outcome counts by (platform, kind, outcome) and a description of every crash."""
    counts: Counter[tuple[str, str, str]] = Counter()
    crashes: list[str] = []
    for platform, kind, body in corpus(fixtures, per_seed):
        try:
            decoder(platform)(body, DEFAULT_CODEC_CONFIG)
        except DecodeError as exc:
            well_formed = REASON.match(exc.reason) and "\n" not in exc.detail and "Traceback" not in exc.detail
            if not well_formed:
                crashes.append(f"{platform} {kind}: malformed refusal {exc.reason!r}: {exc.detail[:200]!r}")
            counts[(platform, kind, "refused")] += 1
            continue
        except BaseException as exc:  # noqa: BLE001 - counting every escape is the point
            crashes.append(f"{platform} {kind}: {type(exc).__name__} on {body[:120]!r}")
            counts[(platform, kind, "crash")] += 1
            continue
        counts[(platform, kind, "decoded")] += 1
    return counts, crashes


def test_no_hostile_input_escapes_a_codec(shared_fixtures: Path) -> None:
    counts, crashes = run(shared_fixtures)
    assert crashes == []
    for platform in PLATFORMS:  # every platform was tried with every kind, and most of it was refused
        for kind in ("structure", "bytes", "extreme"):
            assert counts[(platform, kind, "refused")] + counts[(platform, kind, "decoded")] > 0
        assert counts[(platform, "extreme", "refused")] >= 15


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deep_nesting_is_refused_with_a_reason(platform: str, depth: int) -> None:
    for body in (b"[" * depth, b'{"a":' * depth):
        with pytest.raises(DecodeError) as refused:
            decoder(platform)(body, DEFAULT_CODEC_CONFIG)
        assert REASON.match(refused.value.reason)
