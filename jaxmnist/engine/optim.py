"""Optimizers by name (optax) with per-member hyperparameters, schedules and clipping.

A group may mix optimizers and every numeric value: every member carries the optax state of
every family present and keeps its own update, so it equals its optax optimizer run alone.
Design: docs/architecture.md ("How a group trains"); defaults (Keras' epsilon): docs/byo.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from pydantic import TypeAdapter, ValidationError

from jaxmnist.checks import is_number, suggest
from jaxmnist.engine import schedules

KERAS_EPSILON = 1e-7  # Keras' default epsilon for Adam, Nadam, Adamax and RMSprop.
DEFAULT_MOMENTUM = 0.9


@dataclass(frozen=True)
class OptimizerSpec:
    """How a name maps to ``factory(learning_rate, **defaults, **static)`` (register_optimizer)."""

    factory: Callable[..., optax.GradientTransformation]
    defaults: dict[str, float] = field(default_factory=dict)
    static: dict[str, Any] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float, bool]] = field(default_factory=dict)
    eval_params: Callable[[Any, Any], Any] | None = None


_UNIT = (0.0, 1.0, False)  # decay rates: [0, 1)
_NONNEG = (0.0, math.inf, False)
_DEFAULT_RANGES = {
    "b1": _UNIT, "b2": _UNIT, "decay": _UNIT, "rho": _UNIT, "momentum": _UNIT,
    "eps": _NONNEG, "eps_root": _NONNEG, "weight_decay": _NONNEG,
    "initial_accumulator_value": _NONNEG, "initial_scale": _NONNEG,
}  # fmt: skip
_ADAM = {"b1": 0.9, "b2": 0.999, "eps": KERAS_EPSILON}

_REGISTRY: dict[str, OptimizerSpec] = {
    # What each one is, and where Keras' and optax's numbers differ: docs/byo.md ("Optimizers").
    "sgd": OptimizerSpec(optax.sgd),
    "momentum": OptimizerSpec(optax.sgd, {"momentum": DEFAULT_MOMENTUM}),
    "nesterov": OptimizerSpec(optax.sgd, {"momentum": DEFAULT_MOMENTUM}, {"nesterov": True}),
    "adam": OptimizerSpec(optax.adam, dict(_ADAM)),
    "adamw": OptimizerSpec(optax.adamw, {**_ADAM, "weight_decay": 1e-4}),
    "nadam": OptimizerSpec(optax.nadam, dict(_ADAM)),
    "adamax": OptimizerSpec(optax.adamax, dict(_ADAM)),
    "rmsprop": OptimizerSpec(optax.rmsprop, {"decay": 0.9, "eps": KERAS_EPSILON}),
    "adagrad": OptimizerSpec(optax.adagrad, {"initial_accumulator_value": 0.1, "eps": 1e-7}),
    "adadelta": OptimizerSpec(optax.adadelta, {"rho": 0.9, "eps": 1e-6, "weight_decay": 0.0}),
    "lamb": OptimizerSpec(optax.lamb, {"b1": 0.9, "b2": 0.999, "eps": 1e-6,
                                       "weight_decay": 0.0}),
    "lion": OptimizerSpec(optax.lion, {"b1": 0.9, "b2": 0.99, "weight_decay": 1e-3}),
    # Schedule-free AdamW (Defazio et al. 2024) with optax's defaults: docs/byo.md.
    "schedule_free_adamw": OptimizerSpec(
        optax.contrib.schedule_free_adamw,
        {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
        eval_params=optax.contrib.schedule_free_eval_params),
}

OPTIMIZERS: tuple[str, ...] = tuple(_REGISTRY)
"""Every valid ``optim.name``; grows with :func:`register_optimizer`."""

COMMON_KEYS = ("name", "learning_rate", "schedule", "clip_norm", "ema")
"""Keys every optimizer takes. A grid point that changes ``optim.name`` inherits these from the
base member and none of the base optimizer's own hyperparameters (``jaxmnist.config.expand``)."""

SCHEDULES = schedules.SCHEDULES  # every kind's parameters and defaults: jaxmnist.engine.schedules


def register_optimizer(name: str, factory: Callable[..., optax.GradientTransformation] | str,
                       defaults: Mapping[str, float] | None = None, *,
                       static: Mapping[str, Any] | None = None,
                       ranges: Mapping[str, tuple[float, float, bool]] | None = None,
                       eval_params: Callable[[Any, Any], Any] | None = None) -> None:
    """Makes another optax optimizer available as ``optim.name`` (arguments: docs/byo.md).

    ``factory``: an optax alias name (``ValueError`` if optax has none) or a callable like one.
    """
    global OPTIMIZERS
    if isinstance(factory, str):
        if not callable(getattr(optax, factory, None)):
            raise ValueError(f"optax has no optimizer {factory!r}")
        factory = getattr(optax, factory)
    _REGISTRY[name] = OptimizerSpec(factory, dict(defaults or {}), dict(static or {}),
                                    dict(ranges or {}), eval_params)
    OPTIMIZERS = tuple(_REGISTRY)


def spec(name: str) -> OptimizerSpec:
    """The :class:`OptimizerSpec` of ``name`` (raises ``ValueError`` listing the choices)."""
    if name not in _REGISTRY:
        raise ValueError(f"optim.name: {_unknown_optimizer(name)}")
    return _REGISTRY[name]


def _unknown_optimizer(name: Any) -> str:
    return (f"{name!r} is not a valid optimizer; valid choices: {', '.join(_REGISTRY)} (register "
            f"others with jaxmnist.engine.optim.register_optimizer){suggest(name, _REGISTRY)}")


# Validation (plain Python: safe before anything compiles)
_COMMON_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "learning_rate": (lambda v: is_number(v) and v > 0, "a positive number"),
    "clip_norm": (lambda v: v is None or (is_number(v) and v > 0), "a positive number or None"),
    # a decay per step, e.g. 0.999 (averages ~1,000 steps)
    "ema": (lambda v: v is None or (is_number(v) and 0 < v < 1),
            "a decay in (0, 1), e.g. 0.999, or None"),
}


def learning_rate_problem(value: Any) -> str | None:
    """What is wrong with an ``optim.learning_rate`` (a finite number > 0), or None."""
    return _problem("learning_rate", value, None)


def _problem(key: str, value: Any, bounds: tuple[float, float, bool] | None) -> str | None:
    """What is wrong with ``value`` for a common key (its rule) or a hyperparameter (``bounds``)."""
    if key in _COMMON_RULES:
        accepts, what = _COMMON_RULES[key]
        return None if accepts(value) else f"must be {what}, got {value!r}"
    if not is_number(value):
        return f"expected a finite number, got {value!r}"
    if bounds is None:
        return None
    low, high, inclusive = bounds
    if value < low or value > high or (value == high and not inclusive):
        close = "]" if inclusive else ")"
        return f"must be in [{low:g}, {high:g}{close}, got {value!r}"
    return None


_SCHEDULE = TypeAdapter(schedules.Schedule)


def validate_schedule(sched: Any, where: str = "optim.schedule") -> list[str]:
    """Returns problems with a schedule spec (a name or ``{"name": ..., params}``)."""
    try:
        _SCHEDULE.validate_python(sched)
    except ValidationError as err:
        name = sched.get("name") if isinstance(sched, Mapping) else sched
        problems = []
        for e in err.errors():
            key = str(e["loc"][-1]) if len(e["loc"]) > 1 else ""
            msg = str(e["msg"]).removeprefix("Value error, ")
            if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
                problems.append(f"{where}.name: {name!r} is not valid; valid choices: "
                                f"{', '.join(SCHEDULES)}{suggest(name, SCHEDULES)}")
            elif e["type"] == "extra_forbidden":
                problems.append(f"{where}: {key!r} is not a parameter of schedule {name!r}; "
                                f"valid: {', '.join(SCHEDULES[name]) or 'none'}")
            elif e["type"] == "missing":
                problems.append(f"{where}: schedule {name!r} needs {key!r}")
            elif e["type"] in ("model_attributes_type", "dict_type", "model_type"):
                problems.append(f"{where}: expected a schedule name or a dict with a 'name', "
                                f"got {sched!r}")
            else:
                problems.append(f"{where}.{key}: {msg}" if key and key != name
                                else f"{where}: {msg}")
        return problems
    return []


def validate_optimizer(name: Any, hparams: Mapping[str, Any], where: str = "optim") -> list[str]:
    """Every problem with an ``optim`` section (empty = valid); ``where`` prefixes the messages."""
    sp = _REGISTRY.get(name)
    problems = [] if sp else [f"{where}.name: {_unknown_optimizer(name)}"]
    if sp is None:  # its own hyperparameters are unknown: the learning rate alone is checked
        hparams = {"learning_rate": hparams.get("learning_rate")}
    allowed = [k for k in COMMON_KEYS if k != "name"] + list(sp.defaults if sp else ())
    for key, value in hparams.items():
        if key == "name":
            continue
        if key not in allowed:
            takers = [n for n, s in _REGISTRY.items() if key in s.defaults]
            hint = (f"; the optimizers that take {key!r}: {', '.join(takers)}" if takers
                    else suggest(key, allowed))
            problems.append(f"{where}: {key!r} is not a hyperparameter of {name!r} (it takes: "
                            f"{', '.join(dict.fromkeys(allowed))}){hint}")
        elif key == "schedule":
            problems += validate_schedule(value, f"{where}.schedule")
        elif problem := _problem(key, value, sp.ranges.get(key, _DEFAULT_RANGES.get(key))
                                 if sp else None):
            problems.append(f"{where}.{key}: {problem}")
    if "learning_rate" not in hparams:
        problems.append(f"{where}.learning_rate: missing")
    return problems


# The static plan of a group and its per-member arrays
def _schedule_dict(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The section's schedule with every parameter (a name or None parsed by its owner)."""
    return _SCHEDULE.validate_python(cfg.get("schedule")).model_dump()


def _hparams(cfg: Mapping[str, Any]) -> dict[str, float]:
    """The optimizer's own hyperparameters with defaults filled in."""
    sp = spec(cfg["name"])
    return {k: float(cfg.get(k, default)) for k, default in sp.defaults.items()}


@dataclass(frozen=True)
class Plan:
    """What a group's program needs to know statically about its members' optimizers."""

    families: tuple[str, ...]  # in first-appearance order (``opt_id`` indexes it)
    constants: tuple[tuple[str, tuple[tuple[str, float], ...]], ...]  # shared: Python floats
    varying: tuple[str, ...]  # "family.hparam" keys held per member
    schedules: tuple[str, ...] = ("constant",)
    boundaries: int = 0  # the most piecewise boundaries of a member
    clip: bool = False
    ema: bool = False  # some member averages its parameters (``optim.ema``)
    eval_params: bool = False  # some family is evaluated at other parameters than it trains


def plan(cfgs: Sequence[Mapping[str, Any]]) -> Plan:
    """The static :class:`Plan` of a group from its members' (validated) ``optim`` sections."""
    families = tuple(dict.fromkeys(cfg["name"] for cfg in cfgs))
    constants, varying = [], []
    for fam in families:
        values = [_hparams(c) for c in cfgs if c["name"] == fam]
        fixed = []
        for key in spec(fam).defaults:
            if len({v[key] for v in values}) == 1:
                fixed.append((key, values[0][key]))
            else:
                varying.append(f"{fam}.{key}")
        constants.append((fam, tuple(fixed)))
    scheds = [_schedule_dict(c) for c in cfgs]
    return Plan(families=families, constants=tuple(constants), varying=tuple(varying),
                schedules=tuple(dict.fromkeys(s["name"] for s in scheds)),
                boundaries=max((len(s["boundaries"]) for s in scheds if s["name"] == "piecewise"),
                               default=0),
                clip=any(c.get("clip_norm") is not None for c in cfgs),
                ema=any(c.get("ema") for c in cfgs),
                eval_params=any(spec(f).eval_params is not None for f in families))


# Every schedule parameter but the piecewise lists is one number per member.
_SCHEDULE_ARRAYS = tuple(dict.fromkeys(k for params in SCHEDULES.values() for k in params
                                       if k not in ("boundaries", "scales")))


def member_hyper(cfgs: Sequence[Mapping[str, Any]], group_plan: Plan,
                 total_steps: int) -> dict[str, jax.Array]:
    """Stacks the members' dynamic optimizer values into arrays with a leading grid axis.

    ``{"opt_id", "learning_rate", "<family>.<hparam>", "sched.<param>", "clip_norm", "ema"}``,
    each ``[G]`` (``[G, K]`` for piecewise). ``total_steps``: the cosines' default decay_steps.
    """
    out: dict[str, Any] = {
        "opt_id": np.asarray([group_plan.families.index(c["name"]) for c in cfgs], np.int32),
        "learning_rate": np.asarray([c["learning_rate"] for c in cfgs], np.float32),
    }
    for key in group_plan.varying:
        fam, hp = key.split(".", 1)
        default = spec(fam).defaults[hp]
        out[key] = np.asarray([_hparams(c)[hp] if c["name"] == fam else default for c in cfgs],
                              np.float32)
    if group_plan.schedules != ("constant",):
        scheds = [_schedule_dict(c) for c in cfgs]
        for s in scheds:
            if s["name"] in ("cosine", "warmup_cosine") and s.get("decay_steps") is None:
                s["decay_steps"] = int(total_steps)
        out["sched.id"] = np.asarray([group_plan.schedules.index(s["name"]) for s in scheds],
                                     np.int32)
        for key in _SCHEDULE_ARRAYS:  # exponential's end_value None: "no floor / ceiling"
            unset = math.nan if key == "end_value" else 0
            out[f"sched.{key}"] = np.asarray([unset if s.get(key) is None else s[key]
                                              for s in scheds], np.float32)
        k = max(group_plan.boundaries, 1)
        bounds = np.full((len(cfgs), k), np.inf, np.float32)
        scales = np.ones((len(cfgs), k), np.float32)
        for i, s in enumerate(scheds):
            if s["name"] == "piecewise":
                bounds[i, : len(s["boundaries"])] = s["boundaries"]
                scales[i, : len(s["scales"])] = s["scales"]
        out["sched.boundaries"], out["sched.scales"] = bounds, scales
    if group_plan.clip:
        out["clip_norm"] = np.asarray([math.inf if c.get("clip_norm") is None else c["clip_norm"]
                                       for c in cfgs], np.float32)
    if group_plan.ema:
        out["ema"] = np.asarray([0.0 if c.get("ema") is None else c["ema"] for c in cfgs],
                               np.float32)
    return {k: jnp.asarray(v) for k, v in out.items()}


# Schedules (traced parameters)
def _cosine(count, init, decay_steps, alpha, exponent):
    count = jnp.minimum(count, decay_steps)
    cosine = 0.5 * (1 + jnp.cos(jnp.pi * count / decay_steps))
    return init * ((1 - alpha) * cosine**exponent + alpha)


def _schedule_kind(kind: str, count: jax.Array, lr: jax.Array, h: Mapping[str, jax.Array]):
    if kind == "constant":
        return lr
    if kind == "cosine":
        return _cosine(count, lr, h["sched.decay_steps"], h["sched.alpha"], h["sched.exponent"])
    if kind == "warmup_cosine":
        warm, init, end = h["sched.warmup_steps"], h["sched.init_value"], h["sched.end_value"]
        # Linear warm-up init -> lr over `warm` steps (a zero-length warm-up is constant).
        frac = 1 - jnp.clip(count, 0, warm) / jnp.maximum(warm, 1.0)
        warmup = jnp.where(warm > 0, (init - lr) * frac + lr, init)
        alpha = jnp.where(lr == 0.0, 0.0, end / jnp.where(lr == 0.0, 1.0, lr))
        decay = _cosine(count - warm, lr, h["sched.decay_steps"] - warm, alpha, h["sched.exponent"])
        return jnp.where(count < warm, warmup, decay)
    if kind == "exponential":
        begin, steps, rate = (h["sched.transition_begin"], h["sched.transition_steps"],
                              h["sched.decay_rate"])
        p = (count - begin) / steps
        p = jnp.where(h["sched.staircase"] > 0, jnp.floor(p), p)
        value = jnp.where(count - begin <= 0, lr, lr * jnp.power(rate, p))
        end = h["sched.end_value"]
        clipped = jnp.where(rate < 1.0, jnp.maximum(value, end), jnp.minimum(value, end))
        return jnp.where(jnp.isnan(end), value, clipped)
    if kind == "piecewise":
        value = lr
        for i in range(h["sched.boundaries"].shape[-1]):
            # optax: the scale applies from the boundary step on (count >= boundary).
            past = count >= h["sched.boundaries"][i]
            value = jnp.where(past, value * h["sched.scales"][i], value)
        return value
    raise AssertionError(kind)


def schedule_value(count: jax.Array, hyper: Mapping[str, jax.Array], group_plan: Plan):
    """The learning rate of one member at optimizer step ``count`` (traced)."""
    lr = hyper["learning_rate"]
    count = jnp.asarray(count, jnp.float32)
    values = [_schedule_kind(k, count, lr, hyper) for k in group_plan.schedules]
    return _select(hyper.get("sched.id"), values)


def _select(index: jax.Array | None, options: Sequence[Any]) -> Any:
    """``options[index]`` for a traced ``index``, by ``jnp.where`` (a single option as it is)."""
    out = options[-1]
    for i, option in enumerate(options[:-1]):
        out = jnp.where(index == i, option, out)
    return out


# One member's union optimizer (vmapped / lax.mapped over the grid by the engine)
def _family_tx(fam: str, hyper: Mapping[str, jax.Array], group_plan: Plan):
    sp = spec(fam)
    kwargs: dict[str, Any] = dict(dict(group_plan.constants)[fam])
    kwargs.update({key.partition(".")[2]: hyper[key] for key in group_plan.varying
                   if key.partition(".")[0] == fam})
    lr = (hyper["learning_rate"] if group_plan.schedules == ("constant",)
          else functools.partial(schedule_value, hyper=hyper, group_plan=group_plan))
    tx = sp.factory(lr, **kwargs, **sp.static)
    if group_plan.clip:
        tx = optax.chain(optax.clip_by_global_norm(hyper["clip_norm"]), tx)
    return tx


def init(params: Any, hyper: Mapping[str, jax.Array], group_plan: Plan) -> dict[str, Any]:
    """One member's state: ``{family: optax state}`` (and ``"ema"``: the average with optim.ema)."""
    state = {fam: _family_tx(fam, hyper, group_plan).init(params)
             for fam in group_plan.families}
    return {**state, "ema": params} if group_plan.ema else state


def update(grads: Any, state: dict[str, Any], params: Any, hyper: Mapping[str, jax.Array],
           group_plan: Plan) -> tuple[Any, dict[str, Any]]:
    """One member's ``(new_params, new_state)``; ``hyper`` is its slice of :func:`member_hyper`."""
    updates, new_state = {}, {}
    for fam in group_plan.families:
        tx = _family_tx(fam, hyper, group_plan)
        updates[fam], new_state[fam] = tx.update(grads, state[fam], params)
    # Keep this member's update leaf by leaf; the other families' are computed but unused.
    chosen = jax.tree_util.tree_map(lambda *leaves: _select(hyper["opt_id"], leaves),
                                    *(updates[f] for f in group_plan.families))
    new_params = optax.apply_updates(params, chosen)
    if group_plan.ema:  # decay 0 (members without ema) keeps a copy of the parameters
        d = hyper["ema"]
        new_state["ema"] = jax.tree_util.tree_map(lambda e, p: d * e + (1 - d) * p,
                                                  state["ema"], new_params)
    return new_params, new_state


def eval_params(state: dict[str, Any], params: Any, hyper: Mapping[str, jax.Array],
                group_plan: Plan) -> Any:
    """Where a member is evaluated: its EMA, else its family's ``eval_params``, else its params."""
    options = []
    for fam in group_plan.families:
        fn = spec(fam).eval_params
        fam_state = state[fam][-1] if group_plan.clip else state[fam]  # after the clipping
        options.append(params if fn is None else fn(fam_state, params))
    chosen = jax.tree_util.tree_map(lambda *leaves: _select(hyper["opt_id"], leaves), *options)
    if group_plan.ema:
        chosen = jax.tree_util.tree_map(lambda e, p: jnp.where(hyper["ema"] > 0, e, p),
                                        state["ema"], chosen)
    return chosen


# Oracles: the plain optax objects a member must match
def schedule(cfg: Mapping[str, Any], total_steps: int | None = None):
    """The plain optax schedule (or the learning rate) an ``optim`` section describes."""
    s = _schedule_dict(cfg)
    lr = cfg["learning_rate"]
    name = s["name"]
    if name == "constant":
        return lr
    decay = s.get("decay_steps") or total_steps
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, decay, s["alpha"], s["exponent"])
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(s["init_value"], lr, s["warmup_steps"], decay,
                                                  s["end_value"], s["exponent"])
    if name == "exponential":
        return optax.exponential_decay(lr, s["transition_steps"], s["decay_rate"],
                                       s["transition_begin"], s["staircase"], s["end_value"])
    return optax.piecewise_constant_schedule(lr, dict(zip(s["boundaries"], s["scales"],
                                                          strict=True)))


def reference(cfg: Mapping[str, Any], total_steps: int | None = None):
    """The plain optax optimizer that a member with this ``optim`` section must equal."""
    sp = spec(cfg["name"])
    tx = sp.factory(schedule(cfg, total_steps), **_hparams(cfg), **sp.static)
    if cfg.get("clip_norm") is not None:
        tx = optax.chain(optax.clip_by_global_norm(float(cfg["clip_norm"])), tx)
    return tx

