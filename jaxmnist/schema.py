"""The member-config and data-spec schema, declared with pydantic from the modules that own it.

Every choice list comes from its owner: optimizers from :mod:`jaxmnist.engine.optim`, losses from
:mod:`jaxmnist.engine.losses`, model families, activations and initializers from
:mod:`jaxmnist.models`, strategies from :mod:`jaxmnist.groups`, datasets, sources and split kinds
from :mod:`jaxmnist.data`. Hyperparameters that depend on the choice are checked by the owner's own
function: ``jaxmnist.engine.optim.check_hyperparameters`` (per optimizer),
``jaxmnist.engine.optim.check_learning_rate``, ``jaxmnist.models.validate_model_config`` (per model
family) and ``jaxmnist.data.split_problems`` (per split kind), so those modules can grow without
touching this file.

:func:`member` turns a member config (a plain dict) into THE typed object the engine reads
(:class:`Member`: ``m.train.strategy``, ``m.reg.l2``, ``m.optim.learning_rate``), every default
filled from here; nothing else in the library defines a default for a member-config key
(``tests/test_schema.py`` checks it). The defaults of a model family's own keys (``hidden``,
``activation``, ``init``, ...) and of an optimizer's hyperparameters belong to that family and
optimizer (``jaxmnist.models``, ``jaxmnist.engine.optim``).

The models are built on first use (importing the owners imports jax, ~1 s) and cached. Pydantic's
errors are turned into the project's messages: ``where.key: what is wrong; valid choices: ...``
with a did-you-mean for unknown keys and near-miss names; every problem is reported at once.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from jaxmnist.checks import is_int, is_number, suggest  # noqa: F401 - suggest: public here too


class ConfigError(ValueError):
    """A study or member config is invalid; the message lists every problem and the choices."""

    def __init__(self, problems: Sequence[str], source: str = "study"):
        self.problems = list(dict.fromkeys(problems))  # dedupe, keep order
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {source}:\n{lines}")


# --------------------------------------------------------------------------------------------
# Value types with the project's messages
# --------------------------------------------------------------------------------------------


def _positive_int(v: Any) -> int:
    if not (is_int(v) and v > 0):
        raise ValueError(f"must be a positive integer, got {v!r}")
    return v


def _non_negative_number(v: Any) -> float:
    if not (is_number(v) and v >= 0):
        raise ValueError(f"must be a number >= 0, got {v!r}")
    return v


def _optional_count(minimum: int):
    def check(v: Any) -> int | None:
        if v is not None and not (is_int(v) and v >= minimum):
            raise ValueError(f"expected a positive integer or None, got {v!r}")
        return v
    return check


PositiveInt = Annotated[int, BeforeValidator(_positive_int)]
NonNegativeNumber = Annotated[float, BeforeValidator(_non_negative_number)]
OptionalCount = Annotated[int | None, BeforeValidator(_optional_count(1))]
OptionalSeed = Annotated[int | None, BeforeValidator(_optional_count(0))]


def _seed(v: Any) -> int:
    if not (is_int(v) and v >= 0):
        raise ValueError(f"must be a non-negative integer, got {v!r}")
    return v


Seed = Annotated[int, BeforeValidator(_seed)]


def _spec_names(spec: Any) -> list[Any]:
    """Names in an activation/init spec: ``"relu"``, ``{"name": ..}`` or a per-layer list."""
    if isinstance(spec, list | tuple):
        return [n for s in spec for n in _spec_names(s)]
    if isinstance(spec, Mapping):
        return [spec.get("name")]
    return [spec]


def _spec_problems(spec: Any, names: tuple[str, ...], noun: str) -> list[str]:
    bad = [n for n in _spec_names(spec) if n not in names]
    return [f"{n!r} is not a valid {noun}; valid choices: {', '.join(names)}{suggest(n, names)}"
            for n in dict.fromkeys(map(str, bad))]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Member(_Section):
    """THE member config: what :func:`member` returns and the engine reads.

    Sections (the classes :func:`schemas` builds from the owners' choice lists): ``model``
    (``name`` and the family's own keys, ``m.model.model_dump()`` is the dict the family
    reads), ``optim`` (``name``, ``learning_rate`` and the optimizer's hyperparameters as
    extras), ``reg`` (``l1``, ``l2``), ``loss``, ``train`` (``epochs``, ``batch_size``,
    ``strategy``) and ``seed``; every default is filled in.
    """

    _config: dict[str, Any] | None = PrivateAttr(default=None)

    def config(self) -> dict[str, Any]:
        """The member config as plain JSON-ready dicts: what a run directory records.

        The dict :func:`member` was given, as written (a copy); for a Member built directly,
        its ``model_dump()`` (every default filled in).
        """
        if self._config is not None:
            return copy.deepcopy(self._config)
        return self.model_dump(mode="json")


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

    Rebuilt only when a list changed (e.g. ``jaxmnist.engine.optim.register`` added an optimizer).
    """
    from jaxmnist import data, models
    from jaxmnist.engine import losses, optim
    from jaxmnist.groups import STRATEGIES
    from jaxmnist.models import common

    return _build(tuple(optim.OPTIMIZERS), tuple(models.FAMILIES), tuple(losses.LOSSES),
                  tuple(STRATEGIES), tuple(common.ACTIVATIONS), tuple(common.INITIALIZERS),
                  tuple(data.DATASET_NAMES), tuple(data.SPLIT_KINDS), tuple(data.SOURCES))


@functools.lru_cache(maxsize=8)
def _build(optimizers: tuple[str, ...], families: tuple[str, ...], loss_names: tuple[str, ...],
           strategies: tuple[str, ...], activations: tuple[str, ...],
           initializers: tuple[str, ...], datasets: tuple[str, ...], split_kinds: tuple[str, ...],
           sources: tuple[str, ...]) -> dict[str, type[BaseModel]]:
    from jaxmnist.data import DATA_DEFAULTS
    from jaxmnist.engine import optim
    from jaxmnist.models import adapters

    class Optim(_Section):
        model_config = ConfigDict(extra="allow", frozen=True)  # per-optimizer hyperparameters

        name: Literal[optimizers] = Field(title="valid optimizer")  # type: ignore[valid-type]
        learning_rate: Annotated[float, BeforeValidator(optim.check_learning_rate)]

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
        # The family's own keys (hidden, activation, init, dropout, ...) or, for a user's model
        # (import path or registered name), its factory's arguments: their defaults and checks
        # belong to jaxmnist.models (member_problems runs the family's checks).
        model_config = ConfigDict(extra="allow", frozen=True)

        name: str

        @model_validator(mode="before")
        @classmethod
        def _family(cls, value: Any) -> Any:
            if not isinstance(value, Mapping) or adapters.is_user_model(value.get("name")):
                return value
            if value.get("name") not in families:
                raise ValueError(
                    f"name: {value.get('name')!r} is not a valid model; valid choices: "
                    f"{', '.join(families)}, or your own as 'package.module:factory' or "
                    f"'path/to/file.py:factory'{suggest(str(value.get('name')), families)}")
            found = [f"{key}: {msg}"
                     for key, names, noun in (("activation", activations, "activation"),
                                              ("init", initializers, "initializer"))
                     if key in value for msg in _spec_problems(value[key], names, noun)]
            if found:
                raise ValueError("; ".join(found))
            return value

    class _Member(Member):
        model: Model
        optim: Optim
        reg: Reg
        loss: Literal[loss_names] = Field(title="valid loss")  # type: ignore[valid-type]
        train: Train
        seed: Seed = 0

    _Member.__name__ = _Member.__qualname__ = "Member"
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

    return {"member": _Member, "data": Data}


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
    key, sep, rest = msg.partition(": ")
    if (kind == "value_error" and sep and isinstance(e.get("input"), Mapping)
            and key in e["input"] and "; " not in key):
        # A section's own check naming one of its keys ("activation: 'x' is not ...").
        path, msg = ".".join([*map(str, loc), key]), rest
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


def validated(cfg: Any, where: str = "member") -> tuple[Member | None, list[str]]:
    """Validates a member config once: ``(the Member, [])`` or ``(None, every problem)``.

    Args:
        cfg: A member config as plain dicts.
        where: How the messages name the config.

    Returns:
        The :class:`Member` (its :meth:`Member.config` is ``cfg``) and no problem, or None and
        the problems, the model family's checks included (a user model evaluated abstractly).
    """
    if isinstance(cfg, Member):
        return cfg, []
    model = schemas()["member"]
    try:
        m = model.model_validate(cfg)
    except ValidationError as err:
        return None, [_message(model, e, where) for e in err.errors()]
    from jaxmnist import models

    try:
        models.check_model(cfg["model"])
    except ValueError as err:
        return None, [f"{where}.model: {err}"]
    m._config = copy.deepcopy(dict(cfg))
    return m, []


def member_problems(cfg: Any, where: str = "base") -> list[str]:
    """Problems with one member config (empty when valid), the model family's checks included."""
    return validated(cfg, where)[1]


def member(cfg: Mapping[str, Any] | Member, where: str = "member") -> Member:
    """THE typed member config the engine reads, every default filled in.

    Args:
        cfg: A member config as plain dicts (``docs/architecture.md``), or a :class:`Member`
            (returned as it is: it was validated when it was made).
        where: How the messages name the config (``"members[3]"``).

    Returns:
        The :class:`Member`; its :meth:`Member.config` is ``cfg`` as written.

    Raises:
        ConfigError: every problem at once (unknown keys with a did-you-mean, invalid choices
            with the valid ones, the model family's and the optimizer's own checks).
    """
    m, found = validated(cfg, where)
    if m is None:
        raise ConfigError(found, "member config")
    return m


def with_seed(m: Member, cfg: Mapping[str, Any]) -> Member:
    """Another seed of a validated member: ``m`` with ``cfg["seed"]``, recording ``cfg``.

    Args:
        m: A validated member.
        cfg: Its config with another seed (nothing else differs; not validated again).

    Returns:
        The new :class:`Member`.
    """
    out = m.model_copy(update={"seed": cfg["seed"]})
    out._config = copy.deepcopy(dict(cfg))
    return out


def data_problems(spec: Any, train_size: int = 60_000) -> list[str]:
    """Problems with a data spec: keys, choices, and the split rules of ``jaxmnist.data``.

    Args:
        spec: The study's ``data`` section.
        train_size: Images in the dataset's training file (bounds ``val_size``).
    """
    from jaxmnist import data

    found = problems(schemas()["data"], spec, "data")
    if found or not isinstance(spec, Mapping):
        return found
    return [f"data.{key}: {msg}" for key, msg in data.split_problems(spec, train_size)]
