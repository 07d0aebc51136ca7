"""THE typed member config and data spec (pydantic): what a study's members are, every default.

:class:`Member` has a field per section (``model``, ``optim``, ``reg``, ``loss``, ``train``,
``seed``); ``model`` is the class its name chooses (``jaxmnist.models.specs``), ``optim.schedule``
the kind its name chooses (``jaxmnist.engine.schedules``). Names are checked against their
owners' registries when a config is checked (optimizers: ``jaxmnist.engine.optim``, losses,
strategies, datasets), so a registered optimizer or model is valid at once. Every default of a
member lives here or with the owner of a choice's own keys (a family's, an optimizer's), once.

:func:`member` checks a member config once, where it enters (a study, ``jm.grid``, the engine's
entry points) and returns the Member the engine trusts; ``Member.config()`` is the resolved
config that ``config.json`` records and that :func:`member` rebuilds the same Member from.
Pydantic's errors become the project's messages: ``where.key: what is wrong; valid choices``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    model_serializer,
    model_validator,
)

from jaxmnist.checks import is_int, is_number, suggest
from jaxmnist.data import DATA_DEFAULTS
from jaxmnist.engine import schedules
from jaxmnist.models import specs


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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# The member config: static classes whose names are checked against their owners' registries
# --------------------------------------------------------------------------------------------


def _choice(noun: str, names: Any):
    """A field validator: the value is one of ``names()`` (read when checked: registries grow)."""
    def check(value: Any) -> Any:
        valid = tuple(names())
        if value not in valid:
            raise ValueError(f"{value!r} is not a {noun}; valid choices: {', '.join(valid)}"
                             f"{suggest(str(value), valid)}")
        return value
    return check


def _losses() -> tuple[str, ...]:
    from jaxmnist.engine.losses import LOSSES
    return tuple(LOSSES)


def _strategies() -> tuple[str, ...]:
    from jaxmnist.groups import STRATEGIES
    return STRATEGIES


OPTIM_SHARED_KEYS = ("learning_rate", "schedule", "clip_norm")
"""The ``optim`` keys every optimizer takes (a grid point that changes optimizer keeps these)."""


class Optim(_Section):
    """An optimizer by name: ``optax.<name>(learning_rate, **hyper)``, scheduled and clipped.

    A study writes the optimizer's own hyperparameters beside ``name`` (``{"name": "adam",
    "learning_rate": 1e-3, "b1": 0.8}``); here they are ``hyper``, every default of
    ``jaxmnist.engine.optim`` filled in, and a key the optimizer does not take is refused.
    """

    name: str
    learning_rate: float
    hyper: dict[str, float] = {}
    schedule: schedules.Schedule = schedules.Constant()
    clip_norm: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _own_hyperparameters(cls, value: Any) -> Any:
        if not isinstance(value, Mapping) or "hyper" in value:
            return value
        from jaxmnist.engine import optim

        found = optim.validate_optimizer(value.get("name"), value)
        if found:
            raise ValueError("\n".join(found))
        own = {k: float(v) for k, v in value.items() if k != "name"
               and k not in OPTIM_SHARED_KEYS}
        return {**{k: v for k, v in value.items() if k == "name" or k in OPTIM_SHARED_KEYS},
                "hyper": {**optim.spec(value["name"]).defaults, **own}}

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        hyper = out.pop("hyper", {})
        return {"name": out.pop("name"), "learning_rate": out.pop("learning_rate"), **hyper,
                **out}


class Reg(_Section):
    """Penalties on the weight leaves: ``l1 * sum(abs(w)) + l2 * sum(w**2) / 2``."""

    l1: NonNegativeNumber = 0.0
    l2: NonNegativeNumber = 0.0


class Train(_Section):
    """Epochs, batch size and how a group's members share the devices."""

    epochs: PositiveInt
    batch_size: PositiveInt
    strategy: Annotated[str, BeforeValidator(_choice("valid strategy", _strategies))] = "auto"


class Member(_Section):
    """THE member config the engine trains: every section typed, every default filled in.

    ``config()`` is the resolved config as plain JSON values, what ``config.json`` records and
    what :func:`member` rebuilds the same Member from.
    """

    model: specs.ModelConfig
    optim: Optim
    reg: Reg = Reg()
    loss: Annotated[str, BeforeValidator(_choice("valid loss", _losses))] = "xent"
    train: Train
    seed: Seed = 0

    def config(self) -> dict[str, Any]:
        """The resolved member config as plain JSON-ready dicts."""
        return self.model_dump(mode="json")


def member_paths() -> tuple[str, ...]:
    """Dotted keys of the member settings every member has (``reg.l2``, ``train.strategy``).

    A study may set them in a grid point or an override without stating them in its base.
    """
    out: list[str] = []
    for name in Member.model_fields:
        if name == "optim":
            out += [f"optim.{k}" for k in Optim.model_fields if k != "hyper"]
        elif name in ("reg", "train"):
            section: type[BaseModel] = Reg if name == "reg" else Train
            out += [f"{name}.{k}" for k in section.model_fields]
        elif name != "model":
            out.append(name)
    return tuple(out)


def _datasets() -> tuple[str, ...]:
    from jaxmnist.data import DATASET_NAMES
    return tuple(DATASET_NAMES)


def _split_kinds() -> tuple[str, ...]:
    from jaxmnist.data import SPLIT_KINDS
    return tuple(SPLIT_KINDS)


def _sources() -> tuple[str, ...]:
    from jaxmnist.data import SOURCES
    return tuple(SOURCES)


class Data(_Section):
    """A study's ``data`` section: dataset, source and split (defaults: ``jaxmnist.data``)."""

    name: Annotated[str, BeforeValidator(_choice("known dataset", _datasets))] = \
        DATA_DEFAULTS["name"]
    split: Annotated[str, BeforeValidator(_choice("valid split", _split_kinds))]
    source: Annotated[str, BeforeValidator(_choice("valid source", _sources))] = \
        DATA_DEFAULTS["source"]
    val_fraction: float | None = DATA_DEFAULTS["val_fraction"]
    val_size: int | None = DATA_DEFAULTS["val_size"]
    test_fraction: float | None = DATA_DEFAULTS["test_fraction"]
    seed: OptionalSeed = DATA_DEFAULTS["seed"]
    train_limit: OptionalCount = DATA_DEFAULTS["train_limit"]
    val_limit: OptionalCount = DATA_DEFAULTS["val_limit"]
    test_limit: OptionalCount = DATA_DEFAULTS["test_limit"]


# --------------------------------------------------------------------------------------------
# The study: what a study file's get_config() returns, with every default
# --------------------------------------------------------------------------------------------


class Point(_Section):
    """One labelled setting of an experiment: ``{"label": "L1", "set": {"reg.l1": 0.01}}``."""

    label: str = ""
    set: dict[str, Any] = {}


class Experiment(_Section):
    """Named points and / or a grid (leaves: lists of values, their cartesian product)."""

    name: str
    title: str = ""
    grid: dict[str, Any] = {}
    points: list[Point] = []


def _study_name(v: Any) -> str:
    if not (isinstance(v, str) and v):
        raise ValueError("needs a short name such as 's2'")
    return v


def _baseline(v: Any) -> str:
    if v not in ("", "sklearn"):
        raise ValueError(f"{v!r} is not valid; valid choices: 'sklearn' (S3's scikit-learn "
                         "MLP beside the members) or '' (none)")
    return v


class Study(_Section):
    """A study: its data, a base member, the points that vary it, seeds and presets.

    ``jaxmnist.config.resolve`` applies a preset and overrides and adds the fields below
    ``notes``; :func:`study_problems` checks it.
    """

    study: Annotated[str, BeforeValidator(_study_name)]
    title: str = ""
    data: dict[str, Any]
    base: dict[str, Any]
    grid: dict[str, Any] = {}
    experiments: list[Experiment] = []
    seeds: PositiveInt
    presets: dict[str, dict[str, Any]] = {}
    baseline: Annotated[str, BeforeValidator(_baseline)] = ""
    notes: str = ""
    # Added by jaxmnist.config.resolve (config.json records them):
    preset: str | None = None
    overrides: list[str] = []
    quick_applied: bool = False
    reduced_reasons: list[str] = []
    reduced: bool = False

    @model_validator(mode="after")
    def _unique_experiments(self) -> Study:
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ValueError(f"experiments: names must be unique, got {names}")
        return self


RESOLVED_FIELDS = ("preset", "overrides", "quick_applied", "reduced_reasons", "reduced")
"""The study fields that ``jaxmnist.config.resolve`` sets (a study file does not)."""


def study_defaults() -> dict[str, Any]:
    """The fields a study file may leave out, with their defaults (fresh copies)."""
    return {k: copy.deepcopy(f.default) for k, f in Study.model_fields.items()
            if not f.is_required() and k not in RESOLVED_FIELDS}


def study_problems(study: Any) -> list[str]:
    """Problems with a study's own fields (its data and members are checked apart)."""
    return _problems(Study, study, "study")[1]


def data_with_defaults(spec: Any) -> Any:
    """``spec`` with every ``jaxmnist.data.DATA_DEFAULTS`` key it leaves out (a non-dict as is)."""
    if not isinstance(spec, Mapping):
        return spec
    return {**spec, **{k: v for k, v in DATA_DEFAULTS.items() if k not in spec}}


def with_defaults(study: Mapping[str, Any]) -> dict[str, Any]:
    """A plain study dict with every field it leaves out (and every data key) at its default."""
    out = {**study_defaults(), **study}
    if "data" in out:
        out["data"] = data_with_defaults(out["data"])
    return out


# --------------------------------------------------------------------------------------------
# Validation with the project's messages
# --------------------------------------------------------------------------------------------


def _message(e: Mapping[str, Any], where: str) -> list[str]:
    """The project's message(s) for one pydantic error of a member config or data spec."""
    loc = [str(p) for p in e["loc"]]
    kind = e["type"]
    msg = str(e["msg"]).removeprefix("Value error, ")
    if loc[:1] == ["model"]:
        return [f"{where}.model: {p}" for p in specs.problems_of_error(e)]
    if loc[:1] == ["optim"] and kind == "value_error" and len(loc) == 1:
        # The optimizer module's own checks, one "optim.key: ..." line per problem.
        return [f"{where}.{line}" for line in msg.split("\n")]
    path = ".".join(loc)
    if kind == "extra_forbidden":
        parent = loc[:-1]
        model = {"data": Data, "study": Study}.get(where, Member)
        valid = [".".join([*parent, f]) for f in _fields_at(model, parent)]
        return [f"{where}: unknown key {path!r}{suggest(path, valid)}"]
    if kind == "missing":
        return [f"{where}.{path}: missing"]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return [f"{where}.{path}: expected a dict, got {e['input']!r}"]
    return [f"{where}.{path}: {msg}" if path else f"{where}: {msg}"]


def _fields_at(model: type[BaseModel], loc: Sequence[str]) -> list[str]:
    cls: Any = model
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = field.annotation
    return list(getattr(cls, "model_fields", {}))


def _problems(model: type[BaseModel], value: Any, where: str) -> tuple[Any, list[str]]:
    try:
        return model.model_validate(value), []
    except ValidationError as err:
        found = [m for e in err.errors() for m in _message(e, where)]
        return None, list(dict.fromkeys(found))


def validated(cfg: Any, where: str = "member") -> tuple[Member | None, list[str]]:
    """Checks a member config once: ``(the Member, [])`` or ``(None, every problem)``.

    A user model is also evaluated abstractly (``jaxmnist.models.check_model``): its init, a
    training call and an evaluation call, nothing compiled.
    """
    if isinstance(cfg, Member):
        return cfg, []
    m, found = _problems(Member, cfg, where)
    if m is None:
        return None, found
    from jaxmnist import models

    try:
        models.check_model(m.model.config())
    except ValueError as err:
        return None, [f"{where}.model: {err}"]
    return m, []


def member_problems(cfg: Any, where: str = "base") -> list[str]:
    """Problems with one member config (empty when valid), the model's own checks included."""
    return validated(cfg, where)[1]


def member(cfg: Mapping[str, Any] | Member, where: str = "member") -> Member:
    """THE typed member config the engine reads, every default filled in.

    Args:
        cfg: A member config as plain dicts, or a :class:`Member` (returned as it is).
        where: How the messages name the config (``"members[3]"``).

    Raises:
        ConfigError: every problem at once (unknown keys with a did-you-mean, invalid choices
            with the valid ones, the model's and the optimizer's own checks).
    """
    m, found = validated(cfg, where)
    if m is None:
        raise ConfigError(found, "member config")
    return m


def with_seed(m: Member, seed: int) -> Member:
    """Another seed of a checked member (nothing else differs, so nothing is checked again)."""
    return m.model_copy(update={"seed": seed})


def data_problems(spec: Any, train_size: int = 60_000) -> list[str]:
    """Problems with a data spec: keys, choices, and the split rules of ``jaxmnist.data``.

    Args:
        spec: The study's ``data`` section.
        train_size: Images in the dataset's training file (bounds ``val_size``).
    """
    from jaxmnist import data

    found = _problems(Data, spec, "data")[1]
    if found or not isinstance(spec, Mapping):
        return found
    return [f"data.{key}: {msg}" for key, msg in data.split_problems(spec, train_size)]
