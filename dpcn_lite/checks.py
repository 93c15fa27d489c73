"""The checks every setting goes through: a named choice, a bounded integer, a bounded finite number.

Each raises ``BadArgumentError`` (a ``ValueError``) whose message names the setting and what it may be, so the command
line can print it as one line before any work is done.
"""

from __future__ import annotations

import math
from typing import Any

from data_utils.errors import BadArgumentError


def check_choice(name: str, value: Any, valid: tuple) -> None:
    """Raise ``BadArgumentError`` naming the setting and its valid values (the one check of every named choice)."""
    if not isinstance(value, (str, int)) or value not in valid:
        raise BadArgumentError(f"{name}={value!r} is not valid; choose one of {list(valid)}.")


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """An integer in ``[low, high]``, else ``BadArgumentError``. The upper bounds keep a foreign or mistyped config
    from allocating gigabytes before anything else is checked."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadArgumentError(f"{name}={value!r} must be an integer from {low} to {high}.")
    return value


def check_number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``), else ``BadArgumentError``."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > low if low_open else value >= low) and value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise BadArgumentError(f"{name}={value!r} must be a finite number in {interval}.")
    return float(value)
