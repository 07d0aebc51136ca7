"""The value checks every validating module shares (plain Python: anything may import it)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from typing import Any


def suggest(word: str, valid: Iterable[Any]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``valid`` to ``word``, else ``""``."""
    match = difflib.get_close_matches(str(word), [str(v) for v in valid], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def is_int(v: Any) -> bool:
    """True for a Python integer that is not a bool (``True == 1`` in Python)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """True for a finite int or float that is not a bool."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def rule(ok: Callable[[Any], bool], what: str) -> Callable[[Any], Any]:
    """A check returning ``v`` when ``ok(v)``, else raising ``ValueError("<what>, got <v>")``."""
    def check(v: Any) -> Any:
        if not ok(v):
            raise ValueError(f"{what}, got {v!r}")
        return v
    return check
