"""Reference solutions of the exercises of tutorial 3 (checked by tests/exercises)."""

from __future__ import annotations

TABLE_2_BUDGET = 69_632


def block_params(c: int, d: int, channels: int = 256) -> int:
    """Exercise 3.1."""
    return channels * c * d + c * d * d * 9 + c * d * channels


def nearest_width(c: int, budget: int = TABLE_2_BUDGET) -> int:
    """Exercise 3.2."""
    d = 1
    while block_params(c, d + 1) <= budget:  # the last width at or under the budget ...
        d += 1
    # ... or the first one over it
    return min((d, d + 1), key=lambda w: abs(block_params(c, w) - budget))


def matched_width(c: int, budget: int = TABLE_2_BUDGET, tolerance: float = 0.03) -> int | None:
    """Exercise 3.3."""
    d = nearest_width(c, budget)
    return d if abs(block_params(c, d) / budget - 1) <= tolerance else None


def block_macs(c: int, d: int, hw: int, channels: int = 256) -> int:
    """Exercise 3.4."""
    return block_params(c, d, channels) * hw * hw
