"""How numbers are printed in tables and verdicts (one rule for every command)."""

from __future__ import annotations

import math


def fmt(v: float | None) -> str:
    """A value with as many digits as a table needs: thousands grouped, small values to three
    decimals, ``-`` for a missing or undefined value."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"
