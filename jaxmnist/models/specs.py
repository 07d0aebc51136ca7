"""Typed model configs: each zoo family's keys and defaults, and the user's own models.

A ``model`` section is the class its ``name`` chooses (:data:`ModelConfig`); ``config()`` is the
resolved dict the family reads. Checking a config builds nothing and starts no backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from jaxmnist.checks import is_int, is_number, rule
from jaxmnist.models import adapters, common, layers

ZOO = ("mlp", "cnn", "cnn_depth", "squeezenet")
_NOT_A_MODEL = (f"model config must be a dict with a 'name' in {list(ZOO)} (or "
                "'package.module:factory')")


def unknown_model(name: Any) -> str:
    """The message for a ``model.name`` that names no family and no user model."""
    return (f"model name: {name!r} is not valid; valid choices are "
            f"{list(ZOO) + list(adapters.registered())} or your own model as "
            "'package.module:factory' / 'path/to/file.py:factory'")


def _rate(family: str):
    def check(value: Any) -> float:
        if not (is_number(value) and 0.0 <= value < 1.0):
            raise ValueError(f"{family} 'dropout': dropout rate must be a number in [0, 1), "
                             f"got {value!r}")
        return float(value)
    return check


def _choice(what: str, choices: tuple[Any, ...]) -> BeforeValidator:
    def check(value: Any) -> Any:
        # bool is an int and 2.0 == 2 in Python: compare types too.
        if not any(value == c and type(value) is type(c) for c in choices):
            raise ValueError(f"{what}: {value!r} is not valid; valid choices are {list(choices)}")
        return value
    return BeforeValidator(check)


def _bool(what: str) -> BeforeValidator:
    return BeforeValidator(rule(lambda v: isinstance(v, bool), f"{what}: expected true/false"))


ConvImpl = Annotated[str, _choice("'conv_impl'", layers.CONV_IMPLS)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def config(self) -> dict[str, Any]:
        """The resolved config as plain JSON-ready values (every default filled in)."""
        return self.model_dump(mode="json")


class Mlp(_Spec):
    """S3's feed-forward network; ``activation`` / ``init``: one spec, or one per layer."""

    name: Literal["mlp"]
    hidden: list[int] = [64]
    activation: Any = "relu"
    init: Any = "he_normal"
    rmsnorm: Annotated[bool, _bool("mlp 'rmsnorm'")] = False
    dropout: Annotated[float, BeforeValidator(_rate("mlp"))] = 0.0

    @field_validator("hidden", mode="before")
    @classmethod
    def _hidden(cls, value: Any) -> list[int]:
        if not (isinstance(value, list | tuple) and all(is_int(h) and h > 0 for h in value)):
            raise ValueError(f"mlp 'hidden': expected a list of positive ints, got {value!r}")
        return list(value)

    @model_validator(mode="after")
    def _per_layer(self) -> Mlp:
        for key, n, check in (("activation", len(self.hidden), common.validate_activation),
                              ("init", len(self.hidden) + 1, common.validate_init)):
            for i, spec in enumerate(per_layer(getattr(self, key), n, key)):
                check(spec, f"mlp {key}[{i}]")
        return self


def per_layer(value: Any, n: int, key: str) -> list[Any]:
    """An MLP's per-layer list of ``key`` specs: ``value`` repeated, or checked to have ``n``."""
    if isinstance(value, list | tuple):
        if len(value) != n:
            raise ValueError(f"mlp {key!r}: a list needs {n} entries, got {len(value)}")
        return list(value)
    return [value] * n


def _pair(value: Any) -> list[float]:
    pair = list(value) if isinstance(value, list | tuple) else [value, value]
    if len(pair) != 2:
        raise ValueError(f"cnn 'dropout': a number or a list of 2 rates, got {value!r}")
    return [_rate("cnn")(r) for r in pair]


class Cnn(_Spec):
    """S0 / S1's CNN; ``dropout``: after the pool and after the dense layer (one or two rates)."""

    name: Literal["cnn"]
    dropout: Annotated[list[float], BeforeValidator(_pair)] = [0.0, 0.0]
    conv_impl: ConvImpl = "auto"


class CnnDepth(_Spec):
    """S4's CNN of 1-4 conv blocks."""

    name: Literal["cnn_depth"]
    depth: Annotated[int, _choice("cnn_depth 'depth'", (1, 2, 3, 4))] = 4
    dropout: Annotated[float, BeforeValidator(_rate("cnn_depth"))] = 0.25
    padding: Annotated[str, _choice("cnn_depth 'padding'", layers.PADDINGS)] = "same"
    conv_impl: ConvImpl = "auto"

    @model_validator(mode="after")
    def _fits(self) -> CnnDepth:
        if self.padding == "valid" and self.depth > 3:  # 28 -> 13 -> 5 -> 1: no 4th 3x3 conv
            raise ValueError(f"cnn_depth: depth {self.depth} does not fit 28x28 with "
                             "'valid' padding; use 'same' or depth <= 3")
        return self


class SqueezeNet(_Spec):
    """S2's SqueezeNet (``final_relu``: the ReLU after conv10 of the original)."""

    name: Literal["squeezenet"]
    dropout: Annotated[float, BeforeValidator(_rate("squeezenet"))] = 0.5
    final_relu: Annotated[bool, _bool("squeezenet 'final_relu'")] = True
    conv_impl: ConvImpl = "auto"


class UserModel(_Spec):
    """A Flax linen / NNX Module or an ``(init, apply)`` pair, by import path or registered name.

    ``kwargs`` are the factory's keyword arguments, written beside ``name`` in a study file; the
    other keys (``cpu_convs``, ``weight_leaves``, ``axis_names``): docs/byo.md.
    """

    name: str
    cpu_convs: Annotated[bool, _bool("model 'cpu_convs'")] = True
    weight_leaves: list[str] = list(common.WEIGHT_NAMES)
    axis_names: list[str] = []
    kwargs: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _factory_arguments(cls, value: Any) -> Any:
        if not isinstance(value, Mapping) or "kwargs" in value:
            return value
        own = {k: v for k, v in value.items() if k in adapters.RESERVED_KEYS}
        leaves = own.get("weight_leaves", list(common.WEIGHT_NAMES))
        if not (isinstance(leaves, list | tuple) and all(isinstance(s, str) for s in leaves)):
            raise ValueError(f"model {value.get('name')!r}: 'weight_leaves' must be a list of "
                             f"leaf names, got {leaves!r}")
        return {**own, "kwargs": {k: v for k, v in value.items()
                                  if k not in adapters.RESERVED_KEYS}}

    @model_validator(mode="after")
    def _resolves(self) -> UserModel:
        if not adapters.is_user_model(self.name):
            raise ValueError(unknown_model(self.name))
        adapters.validate(self.config())
        return self

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        return {**{k: v for k, v in out.items() if k != "kwargs"}, **out.get("kwargs", {})}


def _tag(value: Any) -> str:
    name = value.get("name") if isinstance(value, Mapping) else getattr(value, "name", None)
    return name if name in ZOO else "user"


ModelConfig = Annotated[
    Annotated[Mlp, Tag("mlp")] | Annotated[Cnn, Tag("cnn")]
    | Annotated[CnnDepth, Tag("cnn_depth")] | Annotated[SqueezeNet, Tag("squeezenet")]
    | Annotated[UserModel, Tag("user")],
    Discriminator(_tag)]
"""A member's ``model`` section: the class its ``name`` chooses."""

_ADAPTER: TypeAdapter[Any] = TypeAdapter(ModelConfig)


def problems_of_error(e: Mapping[str, Any]) -> list[str]:
    """The message of one pydantic error of a ``model`` section (its location starts there)."""
    loc = [str(p) for p in e["loc"]]
    loc = loc[1:] if loc[:1] == ["model"] else loc
    if e["type"] == "extra_forbidden":
        family = loc[0] if loc else "model"
        valid = [k for k in _CLASSES.get(family, UserModel).model_fields if k != "kwargs"]
        return [f"{family} config: unknown key(s) {[loc[-1]]}; valid keys are {sorted(valid)}"]
    if e["type"] == "missing":
        return [f"model config: {loc[-1]!r} is missing"]
    if e["type"] in ("model_attributes_type", "dict_type", "model_type"):
        return [f"{_NOT_A_MODEL}, got {e.get('input')!r}"]
    return [str(e["msg"]).removeprefix("Value error, ")]


_CLASSES: dict[str, type[_Spec]] = {"mlp": Mlp, "cnn": Cnn, "cnn_depth": CnnDepth,
                                    "squeezenet": SqueezeNet, "user": UserModel}


def parse(cfg: Any) -> Any:
    """The typed config of a ``model`` section (``ValueError``: every problem, with choices)."""
    if isinstance(cfg, _Spec):
        return cfg
    if not isinstance(cfg, Mapping) or "name" not in cfg:
        raise ValueError(f"{_NOT_A_MODEL}, got {cfg!r}")
    try:
        return _ADAPTER.validate_python(dict(cfg))
    except ValidationError as err:
        found = [m for e in err.errors() for m in problems_of_error(e)]
        raise ValueError("; ".join(dict.fromkeys(found))) from None


def resolved(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with every default of its family filled in."""
    return parse(cfg).config()
