"""Flap detection in the manner of Nagios/Icinga, as pure functions.

A server flaps when its login result keeps changing. Over the last ``window`` attempts, each
change between two consecutive attempts counts, the newest changes weighing more (from 0.8
for the oldest to 1.2 for the newest, as Nagios does); the share of weighted changes is
compared with two thresholds, with hysteresis: flapping starts above ``high_pct`` and stops
only below ``low_pct``, so the flag itself does not flap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FlapRules:
    window: int = 10
    high_pct: float = 50.0
    low_pct: float = 25.0

    def __post_init__(self) -> None:
        if self.window < 3:
            raise ValueError(f"flap window must be at least 3 attempts, got {self.window}")
        if not 0 <= self.low_pct <= self.high_pct <= 100:
            raise ValueError(f"flap thresholds need 0 <= low ({self.low_pct}) <= high ({self.high_pct}) <= 100")


DEFAULT_FLAP_RULES = FlapRules()


def flap_percent(oks_oldest_first: Sequence[bool]) -> float:
    """Weighted share (0-100) of state changes between consecutive attempts."""
    transitions = len(oks_oldest_first) - 1
    if transitions < 1:
        return 0.0
    if transitions == 1:
        return 100.0 if oks_oldest_first[0] != oks_oldest_first[1] else 0.0
    weighted = total = 0.0
    for i in range(transitions):
        weight = 0.8 + 0.4 * i / (transitions - 1)
        total += weight
        if oks_oldest_first[i] != oks_oldest_first[i + 1]:
            weighted += weight
    return round(100.0 * weighted / total, 1)


def is_flapping(oks_oldest_first: Sequence[bool], was_flapping: bool, rules: FlapRules) -> tuple[bool, float]:
    """(flapping now, percent). Needs a full window of attempts before it can start flapping."""
    recent = list(oks_oldest_first)[-rules.window:]
    percent = flap_percent(recent)
    if len(recent) < rules.window:
        return (was_flapping and percent >= rules.low_pct), percent
    if was_flapping:
        return percent >= rules.low_pct, percent
    return percent > rules.high_pct, percent
