"""THE typed member config and data spec (pydantic): what a study's members are, every default.

:func:`member` checks a member config once, where it enters, and returns the :class:`Member` the
engine trusts. Names are checked against their owners' registries (a registered optimizer or
model is valid at once); messages read ``where.key: what is wrong; valid choices``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    model_serializer,
    model_validator,
)

from jaxmnist import models
from jaxmnist.checks import is_int, is_number, rule, suggest
from jaxmnist.data import DATA_DEFAULTS, DATASET_NAMES, SOURCES
from jaxmnist.data.splits import MNIST_TRAIN, SPLIT_KINDS, expected_sizes, split_problems
from jaxmnist.engine import schedules
from jaxmnist.engine.losses import LOSSES
from jaxmnist.groups import STRATEGIES
from jaxmnist.models import specs
from jaxmnist.ranking import RANKING_METRICS


class ConfigError(ValueError):
    """A study or member config is invalid; the message lists every problem and the choices."""

    def __init__(self, problems: Sequence[str], source: str = "study"):
        self.problems = list(dict.fromkeys(problems))  # dedupe, keep order
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {source}:\n{lines}")


# Value types with the project's messages
def _rule(ok: Callable[[Any], bool], what: str) -> BeforeValidator:
    return BeforeValidator(rule(ok, what))


PositiveInt = Annotated[int, _rule(lambda v: is_int(v) and v > 0, "must be a positive integer")]
NonNegativeNumber = Annotated[float, _rule(lambda v: is_number(v) and v >= 0,
                                           "must be a number >= 0")]
OptionalCount = Annotated[int | None, _rule(lambda v: v is None or (is_int(v) and v >= 1),
                                            "expected a positive integer or None")]
OptionalSeed = Annotated[int | None, _rule(lambda v: v is None or (is_int(v) and v >= 0),
                                           "expected a non-negative integer or None")]
Seed = Annotated[int, _rule(lambda v: is_int(v) and v >= 0, "must be a non-negative integer")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The member config: static classes whose names are checked against their owners' registries
def _choice(noun: str, names: Callable[[], Any]) -> BeforeValidator:
    """The value is one of ``names()`` (read when checked: registries grow)."""
    def check(value: Any) -> Any:
        valid = tuple(names())
        if value not in valid:
            raise ValueError(f"{value!r} is not a {noun}; valid choices: {', '.join(valid)}"
                             f"{suggest(str(value), valid)}")
        return value
    return BeforeValidator(check)


class Optim(_Section):
    """An optimizer by name: ``optax.<name>(learning_rate, **hyper)``, scheduled and clipped.

    A study writes the optimizer's own hyperparameters beside ``name``; here they are ``hyper``,
    every default of ``jaxmnist.engine.optim`` filled in.
    """

    name: str
    learning_rate: float
    hyper: dict[str, float] = {}
    schedule: schedules.Schedule = schedules.Constant()
    clip_norm: float | None = None
    # Evaluate at an exponential moving average of the parameters with this decay per step.
    ema: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _own_hyperparameters(cls, value: Any) -> Any:
        if not isinstance(value, Mapping) or "hyper" in value:
            return value
        from jaxmnist.engine import optim

        found = optim.validate_optimizer(value.get("name"), value)
        if found:
            raise ValueError("\n".join(found))
        own = {k: float(v) for k, v in value.items() if k not in optim.COMMON_KEYS}
        return {**{k: v for k, v in value.items() if k in optim.COMMON_KEYS},
                "hyper": {**optim.spec(value["name"]).defaults, **own}}

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        hyper = out.pop("hyper", {})
        if out.get("ema") is None:  # configs written before ``ema`` existed read the same
            out.pop("ema", None)
        return {"name": out.pop("name"), "learning_rate": out.pop("learning_rate"), **hyper, **out}


class Reg(_Section):
    """Penalties on the weight leaves: ``l1 * sum(abs(w)) + l2 * sum(w**2) / 2``."""

    l1: NonNegativeNumber = 0.0
    l2: NonNegativeNumber = 0.0


class Train(_Section):
    """Epochs, batch size, how a group's members share the devices, and which epoch counts.

    ``restore_best``: the best epoch on validation instead of the last (docs/studies.md).
    """

    epochs: PositiveInt
    batch_size: PositiveInt
    strategy: Annotated[str, _choice("valid strategy", lambda: STRATEGIES)] = "auto"
    restore_best: bool = False


class Member(_Section):
    """THE member config the engine trains: every section typed, every default filled in."""

    model: specs.ModelConfig
    optim: Optim
    reg: Reg = Reg()
    loss: Annotated[str, _choice("valid loss", lambda: LOSSES)] = "xent"
    train: Train
    seed: Seed = 0

    def config(self) -> dict[str, Any]:
        """The resolved config as plain JSON values (``config.json``; :func:`member` reads it)."""
        return self.model_dump(mode="json")


@functools.cache
def member_paths() -> tuple[str, ...]:
    """Dotted keys every member has (``reg.l2``): a point or override may set them unstated."""
    sections: dict[str, type[BaseModel]] = {"optim": Optim, "reg": Reg, "train": Train}
    out: list[str] = []
    for name in Member.model_fields:
        if name in sections:
            out += [f"{name}.{k}" for k in sections[name].model_fields if k != "hyper"]
        elif name != "model":
            out.append(name)
    return tuple(out)


class Data(_Section):
    """A study's ``data`` section: dataset, source and split (defaults: ``jaxmnist.data``)."""

    name: Annotated[str, _choice("known dataset", lambda: DATASET_NAMES)] = DATA_DEFAULTS["name"]
    split: Annotated[str, _choice("valid split", lambda: SPLIT_KINDS)]
    source: Annotated[str, _choice("valid source", lambda: SOURCES)] = DATA_DEFAULTS["source"]
    val_fraction: float | None = DATA_DEFAULTS["val_fraction"]
    val_size: int | None = DATA_DEFAULTS["val_size"]
    test_fraction: float | None = DATA_DEFAULTS["test_fraction"]
    seed: OptionalSeed = DATA_DEFAULTS["seed"]
    train_limit: OptionalCount = DATA_DEFAULTS["train_limit"]
    val_limit: OptionalCount = DATA_DEFAULTS["val_limit"]
    test_limit: OptionalCount = DATA_DEFAULTS["test_limit"]


# The study: what a study file's get_config() returns, with every default
class Point(_Section):
    """One labelled setting of an experiment: ``{"label": "L1", "set": {"reg.l1": 0.01}}``."""

    label: str = ""
    set: dict[str, Any] = {}


class Experiment(_Section):
    """Named points and / or a grid (leaves: lists of values, their cartesian product).

    ``seeds`` / ``first_seed``: this experiment's seeds are ``first_seed, ...`` (default: the
    study's ``seeds`` from 0), e.g. fresh seeds for the settings a tuning phase chose.
    """

    name: str
    title: str = ""
    grid: dict[str, Any] = {}
    points: list[Point] = []
    seeds: PositiveInt | None = None
    first_seed: Seed = 0


class Prune(_Section):
    """Successive halving inside a group: at each rung epoch keep the top ``1/eta`` of the points.

    docs/studies.md, "Pruning". ``within``: rank within each optimizer name, or the whole group.
    """

    eta: Annotated[float, _rule(lambda v: is_number(v) and v > 1,
                                "must be a number > 1 (keep the top 1/eta of the points)")] = 3.0
    rungs: list[PositiveInt]
    metric: Annotated[str, _choice("ranking metric", lambda: RANKING_METRICS)] = "val_acc"
    within: Annotated[str, _choice("valid 'within'", lambda: ("family", "group"))] = "family"

    @model_validator(mode="after")
    def _increasing(self) -> Prune:
        if not self.rungs or any(b <= a for a, b in zip(self.rungs, self.rungs[1:], strict=False)):
            raise ValueError(f"rungs: need increasing epochs such as [1, 3], got {self.rungs}")
        return self


class Study(_Section):
    """A study: its data, a base member, the points that vary it, seeds and presets."""

    study: Annotated[str, _rule(lambda v: isinstance(v, str) and v != "",
                                "needs a short name such as 's2'")]
    title: str = ""
    data: dict[str, Any]
    base: dict[str, Any]
    grid: dict[str, Any] = {}
    experiments: list[Experiment] = []
    seeds: PositiveInt
    # Sampled points per optimizer family (jaxmnist.search), drawn from search_seed when loaded.
    search: dict[str, Any] = {}
    samples: PositiveInt = 16
    search_seed: Seed = 0
    presets: dict[str, dict[str, Any]] = {}
    baseline: Annotated[str, _rule(lambda v: v in ("", "sklearn"), "valid choices: 'sklearn' "
                                   "(S3's scikit-learn MLP beside the members) or '' (none)")] = ""
    notes: str = ""
    prune: Prune | None = None
    # The tuning protocol (jaxmnist.runner.with_final): > 0 re-runs each optimizer's setting
    # chosen on validation over this many fresh seeds; ``final`` is that experiment (phase 2).
    final_seeds: Annotated[int, _rule(lambda v: is_int(v) and v >= 0,
                                      "must be an integer >= 0 (0: no final phase)")] = 0
    final: Experiment | None = None
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
        if "final" in names:
            raise ValueError("experiments: 'final' is the tuning protocol's own experiment "
                             "(final_seeds); name yours otherwise")
        for field, used, why in (
                ("base.train.restore_best", (self.base.get("train") or {}).get("restore_best"),
                 "the best epoch is chosen on the validation split"),
                ("final_seeds", self.final_seeds,
                 "the protocol chooses each optimizer's setting on the validation split"),
                ("prune", self.prune is not None, "ranks points on the validation split")):
            if used and self.data.get("split", "none") == "none":
                raise ValueError(f"{field}: {why}, and data.split is 'none'; set data.split to "
                                 "'keras', 'holdout' or 'merged'")
        if self.prune is not None:
            epochs = (self.base.get("train") or {}).get("epochs")
            if isinstance(epochs, int) and is_int(epochs) and self.prune.rungs[-1] > epochs:
                raise ValueError(f"prune.rungs: {self.prune.rungs[-1]} is past the last epoch "
                                 f"({epochs}); keep every rung at or below train.epochs")
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


def with_defaults(study: Mapping[str, Any]) -> dict[str, Any]:
    """A plain study dict with every field it leaves out (and every data key) at its default."""
    out = {**study_defaults(), **study}
    if isinstance(out.get("data"), Mapping):
        out["data"] = {**out["data"], **{k: v for k, v in DATA_DEFAULTS.items()
                                         if k not in out["data"]}}
    return out


# Validation with the project's messages
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
        sections: dict[str, type[BaseModel]] = {"data": Data, "study": Study}
        model = sections.get(where, Member)
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

    A user model is also called abstractly (``jaxmnist.models.check_model``), nothing compiled.
    """
    if isinstance(cfg, Member):
        return cfg, []
    m, found = _problems(Member, cfg, where)
    if m is None:
        return None, found
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

    ``where`` names the config in the messages (``"members[3]"``); a Member is returned as is.
    Raises ``ConfigError`` listing every problem at once (unknown keys with a did-you-mean,
    invalid choices with the valid ones, the model's and the optimizer's own checks).
    """
    m, found = validated(cfg, where)
    if m is None:
        raise ConfigError(found, "member config")
    return m


def data_problems(spec: Any) -> list[str]:
    """Problems with a data spec: keys, choices, split rules, a split with no training image."""
    found = _problems(Data, spec, "data")[1]
    if found or not isinstance(spec, Mapping):
        return found
    found = [f"data.{key}: {msg}" for key, msg in split_problems(spec, MNIST_TRAIN)]
    if not found and (train := expected_sizes(spec)[0]) < 1:
        found.append(f"data: the split leaves {train} training images")
    return found
