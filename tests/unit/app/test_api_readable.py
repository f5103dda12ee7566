from __future__ import annotations

import pytest

from concord.app.api import back_to, readable
from concord.app.schemas import MAX_SNOOZE_HOURS, SnoozeBody
from concord.tables.state import apply, empty
from tests.unit.tables.state_builders import KEY, opportunity


def test_customer_view_shows_records_by_name_and_amounts_in_their_currency() -> None:
    state, _ = apply(empty(KEY), opportunity(1, stage="Closed Won", amount=100, currency="JPY", amount_digits=0))
    state, _ = apply(state, opportunity(2, amount=12300, amount_digits=2))  # amount-only update, 2 decimals
    view = readable(state)
    opp = view["crm"]["opportunities"]["006A"]
    assert (opp["stage"], opp["amount"], opp["currency"]) == ("Closed Won", 123, "JPY")
    assert "amount_digits" not in opp and "stamps" not in opp
    assert opp["stamp"]["ts"] == 2  # derived values are shown: the newest change's version


def test_a_snooze_says_one_time_within_the_bound() -> None:
    now = 1_700_000_000_000
    assert SnoozeBody(hours=4).until_ms(now) == now + 4 * 3_600_000
    assert SnoozeBody(until=now + 60_000).until_ms(now) == now + 60_000
    for body in (SnoozeBody(), SnoozeBody(hours=1, until=now + 1), SnoozeBody(until=now),
                 SnoozeBody(until=now + (MAX_SNOOZE_HOURS + 1) * 3_600_000)):
        with pytest.raises(ValueError):
            body.until_ms(now)


def test_a_board_form_sends_the_browser_back_to_the_console_page_it_was_posted_from() -> None:
    host = "127.0.0.1:6066"
    assert back_to(f"http://{host}/?rule=D01&status=open", host) == "/?rule=D01&status=open"
    assert back_to(f"http://{host}/customers/sf%3A001A", host) == "/customers/sf%3A001A"
    assert back_to(f"http://{host}/search?q=cus_1", host) == "/search?q=cus_1"
    for referer in ("", "https://evil.example/?rule=D01", f"http://{host}/api/v1/drift", f"http://{host}/login",
                    "//evil.example/", f"http://{host}.evil.example/"):
        assert back_to(referer, host) == "/", referer
