from concord.agents.state import Deadlines


def test_due_keys_pop_in_time_order_and_cancelled_ones_never() -> None:
    d = Deadlines()
    d.set("a", 30)
    d.set("b", 10)
    d.set("c", 20)
    d.set("c", 0)  # converged: cancelled
    d.set("a", 40)  # rescheduled: the old entry is ignored
    assert d.pop_due(25) == ["b"]
    assert d.pop_due(35) == []
    assert d.pop_due(40) == ["a"]
    assert len(d) == 0
