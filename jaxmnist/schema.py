"""The member-config and data-spec schema, declared with pydantic from the modules that own it.

Every choice list comes from its owner: optimizers from :mod:`jaxmnist.optim`, losses from
:mod:`jaxmnist.losses`, model families, activations and initializers from :mod:`jaxmnist.models`,
strategies from :mod:`jaxmnist.train`, datasets, sources and split kinds from :mod:`jaxmnist.data`.
Hyperparameters that depend on the choice are checked by the owner's own function:
``jaxmnist.optim.check_hyperparameters`` (per optimizer) and
``jaxmnist.models.validate_model_config`` (per model family), so those modules can grow without
touching this file.

The models are built on first use (importing the owners imports jax, ~1 s) and cached. Pydantic's
errors are turned into the project's messages: ``where.key: what is wrong; valid choices: ...``
with a did-you-mean for unknown keys and near-miss names; every problem is reported at once.
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)


def suggest(word: str, valid: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest valid word, else ``""``."""
    match = difflib.get_close_matches(str(word), [str(v) for v in valid], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


# --------------------------------------------------------------------------------------------
# Value types with the project's messages
# --------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(v: Any) -> int:
    if not (_is_int(v) and v > 0):
        raise ValueError(f"must be a positive integer, got {v!r}")
    return v


def _positive_number(v: Any) -> float:
    if not (_is_number(v) and v > 0):
        raise ValueError(f"must be a positive number, got {v!r}")
    return v


def _non_negative_number(v: Any) -> float:
    if not (_is_number(v) and v >= 0):
        raise ValueError(f"must be a number >= 0, got {v!r}")
    return v


def _optional_count(minimum: int):
    def check(v: Any) -> int | None:
        if v is not None and not (_is_int(v) and v >= minimum):
            raise ValueError(f"expected a positive integer or None, got {v!r}")
        return v
    return check


PositiveInt = Annotated[int, BeforeValidator(_positive_int)]
PositiveNumber = Annotated[float, BeforeValidator(_positive_number)]
NonNegativeNumber = Annotated[float, BeforeValidator(_non_negative_number)]
OptionalCount = Annotated[int | None, BeforeValidator(_optional_count(1))]
OptionalSeed = Annotated[int | None, BeforeValidator(_optional_count(0))]


def _spec_names(spec: Any) -> list[Any]:
    """Names in an activation/init spec: ``"relu"``, ``{"name": ..}`` or a per-layer list."""
    if isinstance(spec, list | tuple):
        return [n for s in spec for n in _spec_names(s)]
    if isinstance(spec, Mapping):
        return [spec.get("name")]
    return [spec]


def _spec_of(names: tuple[str, ...], noun: str):
    def check(spec: Any) -> Any:
        bad = [n for n in _spec_names(spec) if n not in names]
        if bad:
            raise ValueError("; ".join(
                f"{n!r} is not a valid {noun}; valid choices: {', '.join(names)}"
                f"{suggest(n, names)}" for n in dict.fromkeys(map(str, bad))))
        return spec
    return check


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Defaults: a study file states only what differs from these
# --------------------------------------------------------------------------------------------

STUDY_DEFAULTS: dict[str, Any] = {
    "grid": {}, "experiments": [], "presets": {}, "baseline": "", "notes": "",
}  # fmt: skip
"""The study fields a study file may leave out, with their defaults."""


def data_with_defaults(spec: Any) -> Any:
    """``spec`` with every ``jaxmnist.data.DATA_DEFAULTS`` key it leaves out (a non-dict as is).

    Args:
        spec: A study's ``data`` section.

    Returns:
        A new dict: the given keys first, in their order, then the defaults.
    """
    from jaxmnist.data import DATA_DEFAULTS  # the owner of the data spec (no jax)

    if not isinstance(spec, Mapping):
        return spec
    return {**spec, **{k: v for k, v in DATA_DEFAULTS.items() if k not in spec}}


def with_defaults(study: Mapping[str, Any]) -> dict[str, Any]:
    """A plain study dict with every field it leaves out set to its default.

    Fills :data:`STUDY_DEFAULTS` and, in ``data``, ``jaxmnist.data.DATA_DEFAULTS``; the member
    config (``base``) is left as written. Values are copied, never shared with the defaults.

    Args:
        study: A study as plain dicts and lists (``jaxmnist.config.to_plain``).

    Returns:
        A new dict; ``study`` is not changed.
    """
    out = dict(study)
    for key, value in STUDY_DEFAULTS.items():
        out.setdefault(key, copy.deepcopy(value))
    if "data" in out:
        out["data"] = data_with_defaults(out["data"])
    return out


# --------------------------------------------------------------------------------------------
# The schema, built from the owning modules
# --------------------------------------------------------------------------------------------


def schemas() -> dict[str, type[BaseModel]]:
    """``{"member": Member, "data": Data}`` pydantic models from the owners' current lists.

    Rebuilt only when a list changed (e.g. ``jaxmnist.optim.register`` added an optimizer).
    """
    from jaxmnist import data, losses, models, optim, train
    from jaxmnist.models import common

    return _build(tuple(optim.OPTIMIZERS), tuple(models.FAMILIES), tuple(losses.LOSSES),
                  tuple(train.STRATEGIES), tuple(common.ACTIVATIONS), tuple(common.INITIALIZERS),
                  tuple(data.DATASET_NAMES), tuple(data.SPLIT_KINDS), tuple(data.SOURCES))


@functools.lru_cache(maxsize=8)
def _build(optimizers: tuple[str, ...], families: tuple[str, ...], loss_names: tuple[str, ...],
           strategies: tuple[str, ...], activations: tuple[str, ...],
           initializers: tuple[str, ...], datasets: tuple[str, ...], split_kinds: tuple[str, ...],
           sources: tuple[str, ...]) -> dict[str, type[BaseModel]]:
    from jaxmnist import optim
    from jaxmnist.data import DATA_DEFAULTS
    from jaxmnist.models import adapters

    class Optim(_Section):
        model_config = ConfigDict(extra="allow", frozen=True)  # per-optimizer hyperparameters

        name: Literal[optimizers] = Field(title="valid optimizer")  # type: ignore[valid-type]
        learning_rate: PositiveNumber

        @model_validator(mode="after")
        def _hyperparameters(self) -> Optim:
            optim.check_hyperparameters(self.name, dict(self.model_extra or {}))
            return self

    class Reg(_Section):
        l1: NonNegativeNumber = 0.0
        l2: NonNegativeNumber = 0.0

    class Train(_Section):
        epochs: PositiveInt
        batch_size: PositiveInt
        strategy: Literal[strategies] = Field(  # type: ignore[valid-type]
            "auto", title="valid strategy")

    class Model(_Section):
        model_config = ConfigDict(extra="allow", frozen=True)  # family-specific keys

        name: str
        activation: Annotated[Any, BeforeValidator(
            _spec_of(activations, "activation"))] = "relu"
        init: Annotated[Any, BeforeValidator(
            _spec_of(initializers, "initializer"))] = "he"

        @model_validator(mode="before")
        @classmethod
        def _user_model(cls, value: Any) -> Any:
            # A user's model (import path or registered name) has its own keys; the model
            # module checks them (import, factory arguments) in _family below.
            if isinstance(value, Mapping) and adapters.is_user_model(value.get("name")):
                return {"name": value["name"]}
            if isinstance(value, Mapping) and value.get("name") not in families:
                raise ValueError(
                    f"name: {value.get('name')!r} is not a valid model; valid choices: "
                    f"{', '.join(families)}, or your own as 'package.module:factory' or "
                    f"'path/to/file.py:factory'{suggest(str(value.get('name')), families)}")
            return value

    class Member(_Section):
        model: Model
        optim: Optim
        reg: Reg
        loss: Literal[loss_names] = Field(title="valid loss")  # type: ignore[valid-type]
        train: Train
        seed: OptionalSeed = 0

    class Data(_Section):
        # Defaults from their owner, jaxmnist.data (with_defaults fills them into a study).
        name: Literal[datasets] = Field(  # type: ignore[valid-type]
            DATA_DEFAULTS["name"], title="known dataset")
        split: Literal[split_kinds] = Field(title="valid split")  # type: ignore[valid-type]
        source: Literal[sources] = Field(  # type: ignore[valid-type]
            DATA_DEFAULTS["source"], title="valid source")
        val_fraction: float | None = DATA_DEFAULTS["val_fraction"]
        val_size: int | None = DATA_DEFAULTS["val_size"]
        test_fraction: float | None = DATA_DEFAULTS["test_fraction"]
        seed: OptionalSeed = DATA_DEFAULTS["seed"]
        train_limit: OptionalCount = DATA_DEFAULTS["train_limit"]
        val_limit: OptionalCount = DATA_DEFAULTS["val_limit"]
        test_limit: OptionalCount = DATA_DEFAULTS["test_limit"]

    return {"member": Member, "data": Data}


# --------------------------------------------------------------------------------------------
# Validation with the project's messages
# --------------------------------------------------------------------------------------------


def _field_title(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    cls: Any = model
    field = None
    for part in loc:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
        field = cls.model_fields.get(str(part))
        if field is None:
            return None
        cls = field.annotation
    return field.title if field is not None else None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    cls: Any = model
    for part in loc:
        field = cls.model_fields.get(str(part)) if isinstance(cls, type) else None
        if field is None:
            return []
        cls = field.annotation
    return list(cls.model_fields) if isinstance(cls, type) and issubclass(cls, BaseModel) else []


def problems(model: type[BaseModel], value: Any, where: str) -> list[str]:
    """Every problem pydantic finds in ``value``, as ``where.key: message`` lines."""
    try:
        model.model_validate(value)
    except ValidationError as err:
        return [_message(model, e, where) for e in err.errors()]
    return []


def _message(model: type[BaseModel], e: Mapping[str, Any], where: str) -> str:
    loc = tuple(e["loc"])
    path = ".".join(str(p) for p in loc)
    kind = e["type"]
    if kind == "extra_forbidden":
        parent = loc[:-1]
        valid = [".".join([*map(str, parent), f]) for f in _fields_at(model, parent)]
        return f"{where}: unknown key {path!r}{suggest(path, valid)}"
    if kind == "missing":
        return f"{where}.{path}: missing"
    if kind == "literal_error":
        noun = _field_title(model, loc) or f"valid {path}"
        choices = [str(c) for c in model_choices(model, loc)]
        return (f"{where}.{path}: {e['input']!r} is not a {noun}; valid choices: "
                f"{', '.join(choices)}{suggest(str(e['input']), choices)}")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{where}.{path}: expected a dict, got {e['input']!r}"
    msg = str(e["msg"]).removeprefix("Value error, ")
    if kind == "value_error" and loc and msg.startswith(f"{loc[-1]}: "):
        msg = msg[len(f"{loc[-1]}: "):]  # the owner's message already names the key
    return f"{where}.{path}: {msg}" if path else f"{where}: {msg}"


def model_choices(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The ``Literal`` choices of the field at ``loc`` (empty when it is not a choice)."""
    cls: Any = model
    field = None
    for part in loc:
        field = cls.model_fields.get(str(part)) if isinstance(cls, type) else None
        if field is None:
            return ()
        cls = field.annotation
    return tuple(getattr(cls, "__args__", ()))


def member_problems(cfg: Any, where: str = "base") -> list[str]:
    """Problems with one member config (empty when valid), the model family's checks included."""
    found = problems(schemas()["member"], cfg, where)
    model = cfg.get("model") if isinstance(cfg, Mapping) else None
    if not found and isinstance(model, Mapping):
        from jaxmnist import models

        try:
            models.check_model(model)  # the family's checks; a user model evaluated abstractly
        except ValueError as err:
            found.append(f"{where}.model: {err}")
    return found


def data_problems(spec: Any, train_size: int = 60_000) -> list[str]:
    """Problems with a data spec: keys, choices, and what each split kind needs.

    Args:
        spec: The study's ``data`` section.
        train_size: Images in the dataset's training file (bounds ``val_size``).
    """
    from jaxmnist import data

    found = problems(schemas()["data"], spec, "data")
    if found or not isinstance(spec, Mapping):
        return found
    split = spec["split"]
    needs = data.SPLIT_NEEDS[split]
    for key in ("val_fraction", "val_size", "test_fraction"):
        if key not in needs and spec.get(key) is not None:
            found.append(f"data.{key}: split {split!r} does not use it (set it to None); "
                         f"{split!r} needs {list(needs) or 'no parameter'}")
    if split == "none" and spec.get("val_limit") is not None:
        found.append("data.val_limit: split 'none' has no validation set (set it to None)")
    if split in ("keras", "merged"):
        key = "val_fraction" if split == "keras" else "test_fraction"
        f = spec.get(key)
        if not (_is_number(f) and 0 < f < 1):
            found.append(f"data.{key}: split {split!r} needs a number in (0, 1), got {f!r}")
    if split == "holdout":
        v, n = spec.get("val_size"), train_size
        if not (_is_int(v) and 0 < v < n):
            found.append(f"data.val_size: split 'holdout' needs an integer in [1, {n - 1}], "
                         f"got {v!r}")
    return found
