"""Nested dicts addressed by dotted keys (``"optim.learning_rate"``, ``"dense1/w"``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_RAISE = object()


def flatten(tree: Mapping[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; an empty dict stays a leaf; keys kept as written."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, sep, path))
        else:
            out[path] = value
    return out


def unflatten(flat: Mapping[str, Any], sep: str = ".") -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (the inverse of :func:`flatten`)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        set_dotted(out, key, value, sep)
    return out


def get_dotted(tree: Mapping[str, Any], key: str, default: Any = _RAISE) -> Any:
    """Returns ``tree["a"]["b"]`` for ``key="a.b"``; ``default`` (or KeyError) when absent."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is _RAISE:
                raise KeyError(key)
            return default
        node = node[part]
    return node


def set_dotted(tree: dict[str, Any], key: str, value: Any, sep: str = ".") -> None:
    """Sets ``tree["a"]["b"] = value`` for ``key="a.b"`` (missing parents become dicts)."""
    *parents, leaf = key.split(sep)
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
