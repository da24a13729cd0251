import pytest

from heartbeat.flapping import FlapRules, flap_percent, is_flapping

pytestmark = pytest.mark.unit

RULES = FlapRules(window=10, high_pct=50, low_pct=25)
T, F = True, False


@pytest.mark.parametrize(("oks", "percent"), [
    ([], 0.0),
    ([T], 0.0),
    ([T, F], 100.0),
    ([T] * 10, 0.0),
    ([T, F] * 5, 100.0),
    ([T] * 9 + [F], 13.3),  # one change, the newest: weight 1.2 of 9.0
    ([F] + [T] * 9, 8.9),  # one change, the oldest: weight 0.8 of 9.0
], ids=["none", "one", "one change of one", "steady", "alternating", "newest change", "oldest change"])
def test_should_weigh_recent_changes_more(oks, percent):
    assert flap_percent(oks) == pytest.approx(percent, abs=0.05)


@pytest.mark.parametrize(("oks", "was", "expected"), [
    ([T] * 10, False, False),
    ([T, F] * 5, False, True),
    ([T, F] * 3, False, False),  # not a full window yet: never starts flapping
    ([T, T, F, F, T, T, F, F, T, T], False, False),  # 44 %: under the high threshold
    ([T, T, F, F, T, T, F, F, T, T], True, True),  # ...but over the low one: keeps flapping
    ([T, T, T, F, T, T, T, T, T, T], True, False),  # 22 %: below low, stops
    ([F, F, F, F, F, F, F, F, F, F], True, False),  # steadily down is OFFLINE, not flapping
], ids=["steady up", "alternating", "short history", "below high", "hysteresis holds", "calms down", "steady down"])
def test_should_flag_flapping_with_hysteresis(oks, was, expected):
    assert is_flapping(oks, was, RULES)[0] is expected


def test_should_refuse_nonsense_rules():
    with pytest.raises(ValueError, match="window"):
        FlapRules(window=1)
    with pytest.raises(ValueError, match="thresholds"):
        FlapRules(high_pct=20, low_pct=30)
