"""The scoring of a closed-loop run against the sandbox's ground truth (bench/score.py)."""

from concord.bench.score import judge


def _finding(rule: str, key: str, subject: str, status: str = "open", note: str = "") -> dict[str, str]:
    return {"rule": rule, "customer_key": key, "subject": subject, "status": status, "note": note}


def test_a_cannot_judge_report_is_neither_a_false_finding_nor_a_found_injection() -> None:
    injected = [{"rule": "D01", "customer_key": "001A", "subject": "org1"},
                {"rule": "D02", "customer_key": "001B", "subject": "sub1"}]
    items = [_finding("D01", "001A", "org1", "resolved"),  # found, corrected
             _finding("D02", "001B", "sub1", "resolved", "cannot judge: support unreadable since x"),
             _finding("D02", "001C", "sub2", "resolved", "cannot judge: support unreadable since y"),
             _finding("D15", "001D", "t1", "open")]  # drift the truth does not justify
    effects = {"effects": [{"applied": 2}, {"applied": 1}], "duplicates": []}
    figures = judge(items, injected, effects)
    assert (figures["findings"], figures["found_injected"], figures["recall"], figures["precision"]) == (2, 1, 0.5, 0.5)
    assert figures["false_by_rule"] == {"D15": 1} and [f["subject"] for f in figures["false"]] == ["t1"]
    assert figures["missed_by_rule"] == {"D02": 1}
    assert (figures["cannot_judge"], figures["cannot_judge_open"]) == (2, 0)
    assert figures["platform_writes"] == 3


def test_nothing_injected_nothing_found_is_perfect_not_a_division_by_zero() -> None:
    figures = judge([], [], {})
    assert (figures["findings"], figures["precision"], figures["recall"], figures["false"]) == (0, 1.0, 1.0, [])
