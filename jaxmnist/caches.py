"""Bounded caches of objects kept between calls, least recently used dropped first.

One rule for the built models (:func:`jaxmnist.models.build`) and the engine's compiled group
programs (:mod:`jaxmnist.engine.program`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import Any


def kept(cache: collections.OrderedDict[Hashable, Any], key: Hashable, make: Callable[[], Any],
         limit: int) -> Any:
    """``cache[key]``, made with ``make()`` on a miss; at most ``limit`` entries stay.

    Args:
        cache: The cache (an ``OrderedDict`` in least-recently-used-first order).
        key: The entry's key.
        make: Builds the value on a miss.
        limit: Entries kept; the least recently used go first.

    Returns:
        The cached value.
    """
    if key not in cache:
        cache[key] = make()
        while len(cache) > limit:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]
