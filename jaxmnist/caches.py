"""Bounded caches (least recently used dropped first) of built models and compiled programs."""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import Any


def kept(cache: collections.OrderedDict[Hashable, Any], key: Hashable, make: Callable[[], Any],
         limit: int) -> Any:
    """``cache[key]``, made by ``make()`` on a miss; the least recently used beyond ``limit`` go."""
    if key not in cache:
        cache[key] = make()
        while len(cache) > limit:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]
