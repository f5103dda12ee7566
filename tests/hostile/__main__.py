"""`python -m tests.hostile [PER_SEED]`: the figures of docs/security.md, from the corpus the tests run
(PER_SEED mutations of each kind per real payload; the test runs 600)."""

from __future__ import annotations

import sys

from tests.conftest import SHARED_FIXTURES
from tests.hostile.corpus import KINDS, PLATFORMS
from tests.hostile.test_codecs import PER_SEED, run


def main() -> None:
    per_seed = int(sys.argv[1]) if len(sys.argv) > 1 else PER_SEED
    counts, crashes = run(SHARED_FIXTURES, per_seed)
    print("| codec | kind | tried | decoded | refused (dead-lettered) | crashes |")
    print("|---|---|---|---|---|---|")
    for platform in PLATFORMS:
        for kind in KINDS:
            row = [counts[(platform, kind, outcome)] for outcome in ("decoded", "refused", "crash")]
            print(f"| {platform} | {kind} | {sum(row):,} | {row[0]:,} | {row[1]:,} | {row[2]:,} |")
    total = sum(counts.values())
    print(f"\n{total:,} inputs, {len(crashes)} crashes")
    for crash in crashes[:20]:
        print("  ", crash)


if __name__ == "__main__":
    main()
