"""Learning-rate schedules as typed configs: each kind's parameters and defaults, once (no jax).

:data:`Schedule` parses a name or ``{"name": ..., parameters}``; the peak is the member's
``learning_rate``, steps are optimizer updates, ``decay_steps=None`` is the whole run.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from jaxmnist.checks import is_int, is_number, rule


def _at_least(minimum: int) -> BeforeValidator:
    return BeforeValidator(rule(lambda v: v is None or (is_int(v) and v >= minimum),
                                f"expected an integer >= {minimum}"))


_NON_NEGATIVE = BeforeValidator(rule(lambda v: v is None or (is_number(v) and v >= 0),
                                     "must be a number >= 0"))
_FINITE = BeforeValidator(rule(is_number, "expected a finite number"))
Steps = Annotated[int, _at_least(0)]
OptionalDecaySteps = Annotated[int | None, _at_least(1)]
NonNegative = Annotated[float, _NON_NEGATIVE]
Number = Annotated[float, _FINITE]


class _Kind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Constant(_Kind):
    """A fixed ``learning_rate``."""

    name: Literal["constant"] = "constant"


class Cosine(_Kind):
    """``optax.cosine_decay_schedule(learning_rate, decay_steps, alpha, exponent)``."""

    name: Literal["cosine"]
    decay_steps: OptionalDecaySteps = None
    alpha: NonNegative = 0.0
    exponent: Number = 1.0


class WarmupCosine(_Kind):
    """``optax.warmup_cosine_decay_schedule(init_value, learning_rate, ...)``, warm-up included."""

    name: Literal["warmup_cosine"]
    warmup_steps: Steps = 0
    decay_steps: OptionalDecaySteps = None
    init_value: NonNegative = 0.0
    end_value: NonNegative = 0.0
    exponent: Number = 1.0

    @model_validator(mode="after")
    def _decay_after_warmup(self) -> WarmupCosine:
        if self.decay_steps is not None and self.decay_steps <= self.warmup_steps:
            raise ValueError("decay_steps (which include the warm-up) must exceed warmup_steps")
        return self


class Exponential(_Kind):
    """``optax.exponential_decay(learning_rate, transition_steps, decay_rate, ...)``."""

    name: Literal["exponential"]
    transition_steps: Annotated[int, _at_least(1)]
    decay_rate: Annotated[float, Field(gt=0), _FINITE]
    transition_begin: Steps = 0
    staircase: bool = False
    end_value: Annotated[float | None, _NON_NEGATIVE] = None


class Piecewise(_Kind):
    """``optax.piecewise_constant_schedule(learning_rate, dict(zip(boundaries, scales)))``."""

    name: Literal["piecewise"]
    boundaries: list[Steps] = []
    scales: list[NonNegative] = []

    @model_validator(mode="after")
    def _pairs(self) -> Piecewise:
        if len(self.boundaries) != len(self.scales):
            raise ValueError("'boundaries' and 'scales' need the same length")
        if self.boundaries != sorted(set(self.boundaries)):
            raise ValueError(f"boundaries: expected increasing step numbers, got "
                             f"{self.boundaries}")
        return self


def _named(v: Any) -> Any:
    """A bare name (or None, the constant rate) as ``{"name": ...}``."""
    if v is None:
        return {"name": "constant"}
    return {"name": v} if isinstance(v, str) else v


Schedule = Annotated[Constant | Cosine | WarmupCosine | Exponential | Piecewise,
                     Field(discriminator="name"), BeforeValidator(_named)]
"""An ``optim.schedule``: a name or ``{"name": ..., parameters}``, parsed into its kind."""

SCHEDULES: dict[str, dict[str, Any]] = {
    get_args(cls.model_fields["name"].annotation)[0]: {
        k: (None if f.is_required() else f.default) for k, f in cls.model_fields.items()
        if k != "name"}
    for cls in (Constant, Cosine, WarmupCosine, Exponential, Piecewise)
}
"""``{kind: {parameter: default (None: required, or for decay_steps the whole run)}}``."""
