"""When the demo prints its summary again: a new cycle or other counts, and before the first cycle
only once (the counts move while its probes land, the summary does not)."""

from heartbeat_lab.demo import summary_key


def report(cycle_id: str | None, *statuses: str) -> dict:
    return {"last_cycle": {"cycle_id": cycle_id} if cycle_id else None,
            "servers": [{"status": s} for s in statuses]}


def test_should_print_the_waiting_line_once_before_the_first_cycle():
    assert summary_key(report(None)) == summary_key(report(None, "OFFLINE", "ONLINE"))


def test_should_print_again_for_a_new_cycle_or_other_counts_only():
    first = summary_key(report("c1", "ONLINE", "OFFLINE"))
    assert summary_key(report("c1", "OFFLINE", "ONLINE")) == first
    assert summary_key(report("c2", "ONLINE", "OFFLINE")) != first
    assert summary_key(report("c1", "ONLINE", "STALE")) != first
