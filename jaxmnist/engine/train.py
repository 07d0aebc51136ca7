"""The grid engine: a whole group of members trained as ONE compiled program.

A *member* is one model trained with one optimizer, learning rate, regularisation and seed (see
``docs/architecture.md`` for the member-config format). Members that agree on every *static* key
(everything except :data:`DYNAMIC_KEYS`) have the same shapes, so they form a *group*: their
states are stacked on a leading grid axis ``G`` and one jitted function trains them all.

Per epoch, on the device, with no host loop per batch:

* each member draws its own permutation of the training set from its own key (``fold_in`` of the
  seed and the epoch number, so a resumed run draws the same order);
* ``lax.scan`` walks the batches; the dataset lives on the device once, as uint8;
* a step whose loss or new parameters are non-finite is discarded and the member is marked
  diverged: it stays frozen at its last finite state while the others continue.

Two strategies run the members of a group inside the one program (``train.strategy``):

* ``"vmap"`` — batched: every op sees a leading ``G`` axis (matmuls become batched matmuls).
  Best on accelerators. A member frozen by divergence is still computed (and discarded).
* ``"sequential"`` — ``lax.map`` over members: the same per-member program, run one member after
  another inside the same compiled executable. On XLA:CPU a vmapped convolution lowers to a
  grouped convolution that runs poorly, so this can win there (``python -m benchmarks.bench``).
  A member frozen by divergence skips its later epochs (a branch; same results, no work).
* ``"auto"`` (default) — ``vmap`` on GPU/TPU; on CPU, :data:`CPU_STRATEGY`, chosen from the
  benchmark's measurements.

Multi-device: the grid axis is sharded over all devices with a 1-D ``Mesh`` and
``NamedSharding``; the grid is padded to a multiple of the device count with copies of member 0
whose results are dropped. "All devices" are every process's devices in a multi-process run
(``jaxmnist.engine.distributed``): each process feeds and computes only the members on its own
devices. In one process, a group uses only the devices that reduce its members per device
(:func:`useful_devices`: a one-member group trains on one device, not on two with a discarded
copy), and the sequential strategy deals the members out to the devices by decreasing learning
rate (:func:`member_layout`), so that those likeliest to diverge sit on different devices; results,
histories and checkpoints are always in member order. On a CPU-only machine the CLI and the API
start XLA with one single-threaded host device per core (:mod:`jaxmnist.engine.hostdevices`).
"""

from __future__ import annotations

import collections
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxmnist import models, schema
from jaxmnist.caches import kept
from jaxmnist.engine import checkpoint, distributed, losses, metrics, optim
from jaxmnist.engine.hooks import (  # noqa: F401 - Callback is part of the engine's API
    HISTORY_FIELDS,
    Callback,
    EpochFunction,
    EpochInfo,
    GroupStart,
    emit,
)
from jaxmnist.groups import (  # noqa: F401 - re-exported: the engine's grouping API
    DYNAMIC_KEYS,
    STRATEGIES,
    group_key,
    group_members,
    static_config,
)

CPU_STRATEGY = "sequential"
"""What ``"auto"`` means on XLA:CPU: ``lax.map`` over the members, measured faster than ``vmap``.

On 2 CPU cores (``python -m benchmarks.bench``, docs/performance.md) a 12-member S0 grid runs at
about the solo speed per member with ``sequential`` and ~25% slower with ``vmap`` (batched
matmuls and scatters where the solo program has plain ones), with ~4x the peak memory."""

EVAL_BATCH = 1000  # images per evaluation step (forward only, so larger than training batches)
GRAD_HIST_IMAGES = 512  # training images used for the final gradient histograms
NUM_CLASSES = 10


class GridError(ValueError):
    """Members given to :func:`train_grid` cannot train together (a clear, user-facing error)."""


MemberLike = schema.Member | Mapping[str, Any]
"""What the engine's entry points accept per member: a validated :class:`jaxmnist.schema.Member`
or a plain member-config dict (validated once, at the entry, by :func:`jaxmnist.schema.member`)."""


def as_members(members: Sequence[MemberLike]) -> list[schema.Member]:
    """The typed members the engine reads; dicts are validated here, Members pass as they are.

    Raises:
        jaxmnist.config.ConfigError: every problem with the dicts, each named ``members[k]``.
    """
    typed, problems = [], []
    for k, m in enumerate(members):
        one, found = schema.validated(m, f"members[{k}]")
        typed.append(one)
        problems += found
    if problems:
        raise schema.ConfigError(problems, "member config")
    return typed


# --------------------------------------------------------------------------------------------
# Groups (the grouping rule lives in jaxmnist.groups; the spec of one group lives here)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSpec:
    """What every member of a group shares (all static)."""

    model_cfg: dict[str, Any]
    loss: str
    epochs: int
    batch_size: int
    optimizer: optim.Plan  # the families, schedules and clipping present (optim.plan)
    strategy: str
    # Which weight penalties any member uses ("l1", "l2"). The values stay per-member arrays;
    # a penalty that is 0 for every member is left out of the program (a pass over every kernel
    # per step, and the same again for its gradient: ~0.5 ms of a ~10 ms S0 step on 2 cores).
    penalties: tuple[str, ...] = ("l1", "l2")

    @classmethod
    def from_members(cls, members: Sequence[MemberLike]) -> GroupSpec:
        """Builds the spec, checking that all members share their static keys.

        Args:
            members: Members or member-config dicts (see :func:`as_members`).

        Raises:
            GridError: no member, or members that differ in a static key.
        """
        if not members:
            raise GridError("train_grid needs at least one member config")
        members = as_members(members)
        keys = {group_key(m.config()) for m in members}
        if len(keys) != 1:
            raise GridError(
                "members differ in static (shape-changing) keys and cannot train as one program; "
                "split them with jaxmnist.engine.train.group_members first"
            )
        first = members[0]
        return cls(
            model_cfg=first.model.model_dump(),
            loss=first.loss,
            epochs=first.train.epochs,
            batch_size=first.train.batch_size,
            optimizer=_optim_plan(members),
            strategy=first.train.strategy,
            penalties=tuple(
                name for name in ("l1", "l2") if any(getattr(m.reg, name) for m in members)
            ),
        )


def _optim_sections(members: Sequence[schema.Member]) -> list[dict[str, Any]]:
    """The members' ``optim`` sections as the dicts :mod:`jaxmnist.engine.optim` reads."""
    return [m.optim.model_dump() for m in members]


def _optim_plan(members: Sequence[schema.Member]) -> optim.Plan:
    try:
        return optim.plan(_optim_sections(members))
    except ValueError as err:
        raise GridError(str(err)) from None


class MemberArrays(NamedTuple):
    """Per-member dynamic values, each with a leading grid axis."""

    hyper: dict[str, jax.Array]  # jaxmnist.engine.optim.member_hyper
    l1: jax.Array
    l2: jax.Array
    keys: jax.Array  # [G, 3, 2] uint32: init, dropout, data-order keys


def member_arrays(
    members: Sequence[MemberLike],
    plan: optim.Plan | None = None,
    total_steps: int | None = None,
) -> MemberArrays:
    """Stacks the dynamic keys of the members into arrays with a leading grid axis.

    Args:
        members: members (or member configs) of one group.
        plan: the group's optimizer plan (default: built from ``members``).
        total_steps: optimizer updates in the whole run (default length of cosine schedules).

    Returns:
        The :class:`MemberArrays`.
    """
    members = as_members(members)
    plan = plan or _optim_plan(members)
    seeds = [m.seed for m in members]
    # Three independent streams per member, derived from its seed alone, so two members with the
    # same seed start from the same weights and see the same data order (a paired comparison).
    keys = jnp.stack(
        [
            jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), i) for i in range(3)])
            for s in seeds
        ]
    )
    return MemberArrays(
        hyper=optim.member_hyper(_optim_sections(members), plan, total_steps),
        l1=jnp.asarray([m.reg.l1 for m in members], jnp.float32),
        l2=jnp.asarray([m.reg.l2 for m in members], jnp.float32),
        keys=keys,
    )


# --------------------------------------------------------------------------------------------
# The per-member program (pure functions; vmapped or lax.mapped over the grid)
# --------------------------------------------------------------------------------------------


class TrainState(NamedTuple):
    """One member's training state (a leading ``G`` axis on a grid)."""

    params: Any
    model_state: Any  # non-parameter variables (BatchNorm statistics, ...); {} for the zoo
    opt: Any
    alive: jax.Array  # bool: False once a step produced a non-finite loss or parameters
    diverged_epoch: jax.Array  # int32: the epoch in which it diverged, 0 while alive


def _all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class _Program:
    """The jitted functions of one group: built once, reused for every epoch."""

    def __init__(self, spec: GroupSpec, n_train: int, skip_frozen: bool = False):
        self.spec = spec
        # Sequential strategy only: a member frozen by divergence skips its epochs (a branch, so
        # nothing is computed). Under vmap a branch on a per-member value runs both sides.
        self.skip_frozen = skip_frozen
        self.model = models.build(spec.model_cfg)
        self.loss_fn = losses.get_loss(spec.loss)
        self.n_train = n_train
        self.steps = math.ceil(n_train / spec.batch_size)

    # -- losses ------------------------------------------------------------------------------
    def _data_loss(self, logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
        if self.spec.loss != "xent":
            # One-hot targets, as the papers' Keras code fed them (S1's categorical CE).
            labels = jax.nn.one_hot(labels, NUM_CLASSES, dtype=jnp.float32)
        return self.loss_fn(logits, labels, weights)

    def _objective(self, params, model_state, x, y, w, key, l1, l2):
        logits, new_model_state = self.model.apply(params, model_state, x, train=True, key=key)
        data_loss = self._data_loss(logits, y, w)
        penalty = jnp.float32(0.0)
        if "l1" in self.spec.penalties:
            penalty = penalty + l1 * losses.l1_penalty(params, self.model.weight_names)
        if "l2" in self.spec.penalties:
            penalty = penalty + l2 * losses.l2_penalty(params, self.model.weight_names)
        correct = jnp.sum((jnp.argmax(logits, -1) == y) * w)
        return data_loss + penalty, (correct, new_model_state)

    # -- one member ----------------------------------------------------------------------------
    def init_member(self, variables: tuple[Any, Any], arrays: MemberArrays) -> TrainState:
        params, model_state = variables
        opt = optim.init(params, arrays.hyper, self.spec.optimizer)
        return TrainState(params, model_state, opt, jnp.asarray(True), jnp.asarray(0, jnp.int32))

    def member_epoch(self, state: TrainState, arrays: MemberArrays, train_x, train_y, epoch):
        """Trains one member for one epoch; returns (state, loss_sum, correct_sum, seen).

        A member frozen at the start of the epoch (``alive`` False) would run every step only
        to discard its update, so the result is exactly its input state and zero sums; with
        ``skip_frozen`` that result is returned without running the steps.
        """
        if not self.skip_frozen:
            return self._train_epoch(state, arrays, train_x, train_y, epoch)
        zero = jnp.asarray(0.0, jnp.float32)
        return jax.lax.cond(
            state.alive,
            lambda st: self._train_epoch(st, arrays, train_x, train_y, epoch),
            lambda st: (st, zero, zero, zero),
            state,
        )

    def _train_epoch(self, state: TrainState, arrays: MemberArrays, train_x, train_y, epoch):
        batch, steps, n = self.spec.batch_size, self.steps, self.n_train
        order = jax.random.permutation(jax.random.fold_in(arrays.keys[2], epoch), n)
        # Keras semantics: the last batch is partial. Shapes must be static, so it is padded
        # with index 0 and a zero weight (the loss is a weighted mean over real images only).
        pad = steps * batch - n
        order = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)]).reshape(steps, batch)
        weights = (jnp.arange(steps * batch) < n).astype(jnp.float32).reshape(steps, batch)
        dropout_key = jax.random.fold_in(arrays.keys[1], epoch)
        grad_fn = jax.value_and_grad(self._objective, has_aux=True)

        def step(carry, inputs):
            st, loss_sum, correct_sum, seen = carry
            i, idx, w = inputs
            x, y = train_x[idx], train_y[idx]
            key = jax.random.fold_in(dropout_key, i)
            (loss, (correct, new_model_state)), grads = grad_fn(
                st.params, st.model_state, x, y, w, key, arrays.l1, arrays.l2)
            new_params, new_opt = optim.update(
                grads, st.opt, st.params, arrays.hyper, self.spec.optimizer
            )
            ok = (st.alive & jnp.isfinite(loss) & _all_finite(new_params)
                  & _all_finite(new_model_state))
            count = jnp.sum(w)
            new_state = TrainState(
                params=_select(ok, new_params, st.params),
                model_state=_select(ok, new_model_state, st.model_state),
                opt=_select(ok, new_opt, st.opt),
                alive=ok,
                diverged_epoch=jnp.where(st.alive & ~ok, epoch, st.diverged_epoch),
            )
            # Metrics count only the steps that were applied, so a frozen member's epoch
            # metrics describe its last finite updates (NaN only if nothing was applied).
            loss_sum = loss_sum + jnp.where(ok, loss * count, 0.0)
            correct_sum = correct_sum + jnp.where(ok, correct, 0.0)
            seen = seen + jnp.where(ok, count, 0.0)
            return (new_state, loss_sum, correct_sum, seen), None

        zero = jnp.asarray(0.0, jnp.float32)
        (state, loss_sum, correct_sum, seen), _ = jax.lax.scan(
            step, (state, zero, zero, zero), (jnp.arange(steps), order, weights)
        )
        return state, loss_sum, correct_sum, seen

    def member_eval(self, variables, eval_x, eval_y, eval_w):
        """Forward-only pass over a padded ``[steps, EVAL_BATCH, ...]`` split.

        ``variables`` is ``(params, model_state)``: evaluation uses the running statistics.
        """
        params, model_state = variables

        def body(carry, inputs):
            loss_sum, correct = carry
            x, y, w = inputs
            logits = self.model.predict(params, model_state, x)
            loss = self._data_loss(logits, y, w)
            pred = jnp.argmax(logits, -1).astype(jnp.int32)
            correct = correct + jnp.sum((pred == y) * w)
            return (loss_sum + loss * jnp.sum(w), correct), pred

        zero = jnp.asarray(0.0, jnp.float32)
        (loss_sum, correct), preds = jax.lax.scan(body, (zero, zero), (eval_x, eval_y, eval_w))
        return loss_sum, correct, preds.reshape(-1)

    def member_probs_and_grads(self, variables, arrays: MemberArrays, x_probe, y_probe, x_grad,
                               y_grad):
        """Class probabilities of a few test images and the data-loss gradient on a batch."""
        params, model_state = variables
        probs = jax.nn.softmax(self.model.predict(params, model_state, x_probe), -1)
        w = jnp.ones(y_grad.shape, jnp.float32)

        def loss(p):
            return self._data_loss(self.model.predict(p, model_state, x_grad), y_grad, w)

        return probs, jax.grad(loss)(params)


def _over_members(
    fn: Callable, strategy: str, mesh: Mesh | None = None, shared: tuple = ()
) -> Callable:
    """Maps ``fn(*member_args, *shared)`` over the leading grid axis of the member arguments.

    ``shared`` values (the dataset, the epoch number) are the same for every member. ``vmap``
    is partitioned over the mesh by the compiler. A ``lax.map`` is a loop, which the compiler
    cannot split over devices, so with several devices each device runs the loop over its own
    members (``shard_map``): every member still runs its own unbatched program, and a grid on
    4 devices gives the same bits as on one (tests/test_distributed.py).
    """
    if strategy == "vmap":
        return jax.vmap(lambda *args: fn(*args, *shared))

    def sequential(args, shared_values):
        return jax.lax.map(lambda a: fn(*a, *shared_values), args)

    if mesh is None or mesh.size == 1:
        return lambda *args: sequential(args, shared)
    # check_vma=False: the members never communicate, and the per-member program (written for
    # vmap and lax.map) mixes per-device values with constants in its scan carries.
    mapped = jax.shard_map(sequential, mesh=mesh, check_vma=False,
                           in_specs=(PartitionSpec("grid"), PartitionSpec()),
                           out_specs=PartitionSpec("grid"))
    return lambda *args: mapped(args, shared)


def _initial_params(members: Sequence[schema.Member], init_keys: jax.Array) -> Any:
    """Draws every member's starting ``(params, model_state)``, stacked on the grid axis.

    Members are initialised in batches that share an initializer spec (``model.init``), then put
    back in member order; the training program never sees the spec.
    """
    by_spec: dict[str, list[int]] = {}
    sections = [m.model.model_dump() for m in members]
    for k, section in enumerate(sections):
        by_spec.setdefault(json.dumps(section, sort_keys=True), []).append(k)
    order = np.empty(len(members), np.int64)
    parts = []
    offset = 0
    for indices in by_spec.values():
        model = models.build(sections[indices[0]])
        parts.append(_per_model(model, "init", lambda m: jax.jit(jax.vmap(m.init)))(
            init_keys[np.asarray(indices)]))
        order[np.asarray(indices)] = np.arange(offset, offset + len(indices))
        offset += len(indices)
    if len(parts) == 1:
        return parts[0]
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.concatenate(leaves), *parts)
    return jax.tree_util.tree_map(lambda leaf: leaf[order], stacked)


def useful_devices(n_members: int, n_devices: int) -> int:
    """How many of ``n_devices`` a group of ``n_members`` trains on by default.

    The fewest devices that reach the least members per device, ``ceil(G / ceil(G / D))``:
    every device beyond them would train only padding (copies of member 0 whose results are
    dropped). One member: one device; 12 on 2: 2; 12 on 8: 6 (two members each, as on 8).
    """
    if n_devices <= 1 or n_members <= 1:
        return 1
    per_device = math.ceil(n_members / n_devices)
    return math.ceil(n_members / per_device)


def member_layout(rates: Sequence[float], n_padded: int, n_devices: int) -> np.ndarray:
    """Deals the members out to the devices: grid position p trains member ``layout[p]``.

    The grid axis is split into ``n_devices`` contiguous blocks. Members are dealt one device
    after another (0, 1, 0, 1, ... on two) in order of decreasing learning rate (ties in member
    order), then the padding: which members diverge is known only at run time, but the largest
    rates are the likeliest (S2's two diverged members were Adam and RMSprop at lr 0.1, members
    0 and 4, both on device 0 with contiguous blocks), so this puts them on different devices,
    and a frozen member's skipped epochs leave no single device with most of the live work.

    Args:
        rates: Each real member's learning rate (a number; anything else counts as 0).
        n_padded: The padded grid size, a multiple of ``n_devices`` (pads follow the members).
        n_devices: Devices the grid axis is split over.

    Returns:
        ``[n_padded]`` int64, a permutation of ``range(n_padded)``.
    """
    if n_devices <= 1:
        return np.arange(n_padded)
    key = [-float(r) if isinstance(r, (int, float)) and math.isfinite(r) else 0.0
           for r in rates]
    order = sorted(range(len(rates)), key=lambda j: (key[j], j)) + list(range(len(rates),
                                                                              n_padded))
    per_device = n_padded // n_devices
    layout = np.empty(n_padded, np.int64)
    for i, j in enumerate(order):
        layout[(i % n_devices) * per_device + i // n_devices] = j
    return layout


def resolve_strategy(strategy: str, n_devices: int) -> str:
    """Turns ``"auto"`` into a concrete strategy for the default backend.

    ``n_devices`` does not change the choice: both strategies run on any number of devices.
    """
    if strategy != "auto":
        return strategy
    return CPU_STRATEGY if jax.default_backend() == "cpu" else "vmap"


# --------------------------------------------------------------------------------------------
# Host side: data on the device, sharding, the epoch loop, checkpoints, results
# --------------------------------------------------------------------------------------------


def _pad_eval(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pads a split to a multiple of EVAL_BATCH and reshapes it to ``[steps, EVAL_BATCH, ...]``."""
    n = x.shape[0]
    batch = min(EVAL_BATCH, max(n, 1))
    steps = math.ceil(n / batch)
    pad = steps * batch - n
    xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    yp = np.concatenate([y, np.zeros((pad,), y.dtype)])
    wp = (np.arange(steps * batch) < n).astype(np.float32)
    return (
        xp.reshape((steps, batch) + x.shape[1:]),
        yp.reshape(steps, batch),
        wp.reshape(steps, batch),
    )


def predict_classes(model_cfg: Mapping[str, Any], params: Any, state: Any,
                    images: np.ndarray) -> np.ndarray:
    """One member's predicted class per image, in evaluation mode (running statistics used).

    Args:
        model_cfg: The member's model config.
        params: Its parameters (NumPy or device arrays, no grid axis).
        state: Its non-parameter variables (``{}`` for the zoo).
        images: ``[N, 28, 28, 1]`` uint8.

    Returns:
        ``[N]`` int32 class indices.
    """
    model = models.build(model_cfg)
    predict = _per_model(model, "predict", lambda m: jax.jit(
        lambda p, s, x: jnp.argmax(m.predict(p, s, x), -1).astype(jnp.int32)))
    x, _, _ = _pad_eval(np.asarray(images), np.zeros(len(images), np.int32))
    preds = [np.asarray(predict(params, state, batch)) for batch in x]
    return np.concatenate(preds)[: len(images)]


class _CompileCounter:
    """Counts XLA backend compilations while active (for the 'no recompile' guarantee)."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count = 0

    def __call__(self, event: str, duration: float, **kwargs: Any) -> None:
        if event == self.EVENT:
            self.count += 1

    def __enter__(self) -> _CompileCounter:
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        jax.monitoring.unregister_event_duration_listener(self)


# --------------------------------------------------------------------------------------------
# Hooks: what the fit loop tells the outside world (progress, metrics files, TensorBoard, ...)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Compiled groups kept between calls: a second grid of the same shape traces and compiles nothing
# --------------------------------------------------------------------------------------------

COMPILED_GROUPS_KEPT = 8
"""Group programs (jitted functions and compiled epochs) kept per process, least recently used
dropped first. A notebook that runs ``jm.grid`` again with other learning rates or seeds, or a
test suite that trains the same small group many times, reuses them: on a CPU the trace, lowering
and compile of a small group take seconds, its training a fraction of that."""


@dataclass
class _Jitted:
    """The jitted functions of one group shape (see :func:`_jitted`)."""

    program: _Program
    over: Callable[..., Callable]
    init_fn: Any
    epoch_fn: Any
    eval_fn: Any
    probe_fn: Any
    epochs: dict[Any, Any]  # compiled epochs by argument signature


_JITTED: collections.OrderedDict[tuple[Any, ...], _Jitted] = collections.OrderedDict()
_PER_MODEL: collections.OrderedDict[tuple[int, str], tuple[Any, Any]] = (
    collections.OrderedDict())


def _per_model(model: models.Model, what: str, make: Callable[[models.Model], Any]) -> Any:
    """``make(model)`` (a jitted function of one built model), made once per model object.

    ``models.build`` returns the same object for the same config (and the same user factory), so
    the jitted function keeps its compiles from one call to the next. The model is held with it,
    so its ``id`` is never reused while the entry lives.
    """
    return kept(_PER_MODEL, (id(model), what), lambda: (model, make(model)),
                8 * COMPILED_GROUPS_KEPT)[1]


def _jitted(spec: GroupSpec, n_train: int, strategy: str, mesh: Mesh) -> _Jitted:
    """The jitted functions of a group: what they close over is the key, nothing else.

    The program depends on the spec (model, loss, epochs, batch, optimizer plan, penalties), the
    training-set size, the strategy and the devices; every per-member value (learning rates,
    seeds, hyperparameters) is an argument, so members of any values share the entry.
    """
    model = models.build(spec.model_cfg)  # the entry's program holds it: its id stays unique
    key = (repr(spec), n_train, strategy, tuple(d.id for d in mesh.devices.flat),
           jax.process_count(), id(model))
    return kept(_JITTED, key, lambda: _new_jitted(spec, n_train, strategy, mesh),
                COMPILED_GROUPS_KEPT)


def _new_jitted(spec: GroupSpec, n_train: int, strategy: str, mesh: Mesh) -> _Jitted:
    program = _Program(spec, n_train, skip_frozen=strategy == "sequential")
    grid_sharding = NamedSharding(mesh, PartitionSpec("grid"))
    over = lambda fn, *shared: _over_members(fn, strategy, mesh, shared)  # noqa: E731
    return _Jitted(
        program=program,
        over=over,
        init_fn=jax.jit(over(program.init_member), out_shardings=grid_sharding),
        epoch_fn=jax.jit(lambda st, ar, x, y, e: over(program.member_epoch, x, y, e)(st, ar),
                         donate_argnums=(0,)),
        eval_fn=jax.jit(lambda p, x, y, w: over(program.member_eval, x, y, w)(p)),
        probe_fn=jax.jit(lambda p, a, *xs: over(program.member_probs_and_grads, *xs)(p, a)),
        epochs={},
    )


def clear_compiled_groups() -> None:
    """Drops every kept group program and per-model jitted function (frees their memory)."""
    _JITTED.clear()
    _PER_MODEL.clear()


def _signature(*trees: Any) -> tuple[Any, ...]:
    """What an ahead-of-time compile depends on: tree structure, shapes, dtypes, shardings."""
    leaves, treedef = jax.tree_util.tree_flatten(trees)
    return (treedef, tuple((leaf.shape, str(leaf.dtype), getattr(leaf, "sharding", None))
                           for leaf in leaves))


# --------------------------------------------------------------------------------------------
# Step 1: build the program (data on the device, sharding, initial state, compiled epoch)
# --------------------------------------------------------------------------------------------


@dataclass
class GroupProgram:
    """One group, ready to train: everything :func:`fit` and :func:`analyse` need."""

    spec: GroupSpec
    members: list[schema.Member]  # the real members (Member.config(): the recorded dicts)
    padded: int  # grid size after padding to a multiple of the device count
    devices: int
    layout: np.ndarray  # [padded] int: grid position p trains member layout[p] (pads >= G)
    strategy: str
    program: _Program
    arrays: MemberArrays  # on the device, sharded over the grid axis
    train_x: jax.Array
    train_y: jax.Array
    val: tuple[jax.Array, ...] | None  # padded [steps, EVAL_BATCH, ...] split, or None
    test: tuple[jax.Array, ...]
    init_state: TrainState
    epoch_exec: Any  # the compiled epoch (state, arrays, x, y, epoch) -> (state, sums...)
    eval_fn: Callable
    over: Callable[[Callable], Callable]
    replicated: NamedSharding
    compile_seconds: float
    probe_fn: Any  # jitted (variables, arrays, probe x, y, grad x, y) -> (probs, grads)

    def evaluate(self, state: TrainState, split: tuple[jax.Array, ...]):
        """``(loss [G], acc [G], preds [G, padded N])`` of every member on a padded split.

        In member order (member k at index k, then the padding), whatever the layout.
        """
        variables = (state.params, state.model_state)
        loss_sum, correct, preds = self.to_member_order(
            distributed.to_host(self.eval_fn(variables, *split)))
        n = float(distributed.to_host(split[2]).sum())
        return loss_sum / n, correct / n, preds

    def to_member_order(self, tree: Any) -> Any:
        """Host (NumPy) leaves with a leading grid axis, from grid order into member order."""
        if np.array_equal(self.layout, np.arange(self.padded)):
            return tree
        position = np.argsort(self.layout)  # member k sits at grid position position[k]
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[position], tree)

    def reorder_state(self, state: TrainState, *, to_members: bool) -> TrainState:
        """The device state from grid into member order (``to_members``) or back.

        Checkpoints hold the state in member order, so a run resumes on another layout
        (another device count) with every member's own state.
        """
        if np.array_equal(self.layout, np.arange(self.padded)):
            return state
        index = np.argsort(self.layout) if to_members else self.layout
        sharding = NamedSharding(self.replicated.mesh, PartitionSpec("grid"))
        take = jax.jit(lambda t: jax.tree_util.tree_map(lambda a: a[index], t),
                       out_shardings=sharding)
        return take(state)


def build_program(
    members: Sequence[MemberLike], splits: Any, *, devices: Sequence[Any] | None = None
) -> GroupProgram:
    """Validates a group, puts its data on the device and compiles its epoch.

    Args:
        members: Members (or member-config dicts, validated here) that share all static keys.
        splits: A ``jaxmnist.data.Splits``.
        devices: Devices to shard the grid over; every device of every process
            by default (``jax.devices()``).

    Returns:
        The :class:`GroupProgram`; its ``compile_seconds`` covers the initial state and the
        ahead-of-time compile of the epoch.

    Raises:
        GridError: the members cannot train together, or the training split is empty.
        jaxmnist.config.ConfigError: a member config is invalid (every problem listed).
    """
    members = as_members(members)
    spec = GroupSpec.from_members(members)
    # Every process's devices: one process, or all processes of a distributed run.
    if devices is None:
        devices = jax.devices()
        if jax.process_count() == 1:  # a distributed run feeds every process's devices
            devices = devices[: useful_devices(len(members), len(devices))]
    devices = list(devices)
    n_dev = len(devices)
    strategy = resolve_strategy(spec.strategy, n_dev)
    # Pad the grid with copies of member 0 so it splits evenly over the devices.
    padded = list(members) + [members[0]] * (-len(members) % n_dev)
    # Grid position p trains padded[layout[p]]: dealt out over the devices by decreasing learning
    # rate in the sequential strategy (one process), so that the members likeliest to diverge
    # (and then skip their epochs) sit on different devices.
    rates = [m.optim.learning_rate for m in members]
    layout = member_layout(rates, len(padded), n_dev) \
        if strategy == "sequential" and jax.process_count() == 1 else np.arange(len(padded))
    padded = [padded[j] for j in layout]
    if splits.train_x.shape[0] == 0:
        raise GridError("the training split is empty")

    mesh = Mesh(np.asarray(devices), ("grid",))
    grid_sharding = NamedSharding(mesh, PartitionSpec("grid"))
    replicated = NamedSharding(mesh, PartitionSpec())

    jitted = _jitted(spec, int(splits.train_x.shape[0]), strategy, mesh)
    program = jitted.program
    # Host values enter as global arrays: each process transfers only its own devices' shards.
    arrays = distributed.put(
        member_arrays(padded, spec.optimizer, spec.epochs * program.steps), grid_sharding
    )
    # The dataset goes to the device once, as uint8; every epoch indexes it there.
    train_x = distributed.put(np.asarray(splits.train_x, np.uint8), replicated)
    train_y = distributed.put(np.asarray(splits.train_y, np.int32), replicated)
    has_val = splits.val_x is not None and len(splits.val_x) > 0
    val = tuple(distributed.put(a, replicated) for a in _pad_eval(splits.val_x, splits.val_y)) \
        if has_val else None
    test = tuple(distributed.put(a, replicated) for a in _pad_eval(splits.test_x, splits.test_y))

    init_variables = _initial_params(padded, arrays.keys[:, 0])

    t0 = time.perf_counter()
    state = jax.block_until_ready(jitted.init_fn(init_variables, arrays))
    # Compile the epoch ahead of time so its cost is reported apart from training speed (once
    # per argument signature: a group of the same shape trained again reuses it).
    epoch_args = (state, arrays, train_x, train_y, jnp.asarray(1, jnp.int32))
    signature = _signature(*epoch_args)
    if signature not in jitted.epochs:
        jitted.epochs[signature] = jitted.epoch_fn.lower(*epoch_args).compile()
    epoch_exec = jitted.epochs[signature]
    compile_seconds = time.perf_counter() - t0
    return GroupProgram(
        spec=spec, members=members, padded=len(padded), devices=n_dev,
        layout=layout, strategy=strategy, program=program, arrays=arrays, train_x=train_x,
        train_y=train_y,
        val=val, test=test, init_state=state, epoch_exec=epoch_exec, eval_fn=jitted.eval_fn,
        over=jitted.over, replicated=replicated, compile_seconds=compile_seconds,
        probe_fn=jitted.probe_fn,
    )


# --------------------------------------------------------------------------------------------
# Step 2: the fit loop (checkpoint restore/save, one compiled call per epoch, hooks)
# --------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """The state after the last epoch and what the loop measured."""

    state: TrainState
    history: np.ndarray  # [epochs, padded G, len(HISTORY_FIELDS)] float32, NaN = not run/finite
    seconds: np.ndarray  # [epochs] wall seconds per epoch
    resumed: bool


def _member_metrics(row: np.ndarray, alive: np.ndarray, n: int,
                    rates: Sequence[float | None]) -> list[dict[str, Any]]:
    return [
        {**{f: metrics.finite_or_none(row[k, j]) for j, f in enumerate(HISTORY_FIELDS)},
         "alive": bool(alive[k]), "learning_rate": rates[k]}
        for k in range(n)
    ]


def epoch_learning_rates(members: Sequence[MemberLike], epoch: int,
                         steps_per_epoch: int, epochs: int) -> list[float | None]:
    """The learning rate each member's optimizer used in the last step of ``epoch``.

    Schedules count optimizer updates from 0, so that step's count is
    ``epoch * steps_per_epoch - 1``; the value is the plain optax schedule of the member's
    ``optim`` section (:func:`jaxmnist.engine.optim.schedule`, the oracle the engine's optimizer is
    tested against), computed on the host.
    """
    count = epoch * steps_per_epoch - 1
    out: list[float | None] = []
    for section in _optim_sections(as_members(members)):
        try:
            sched = optim.schedule(section, epochs * steps_per_epoch)
        except (KeyError, TypeError, ValueError):
            out.append(None)
            continue
        out.append(float(sched(count)) if callable(sched) else float(sched))
    return out


def fit(
    prog: GroupProgram,
    *,
    checkpointer: checkpoint.GroupCheckpointer | None = None,
    callbacks: Sequence[Any] = (),
    group_index: int = 0,
) -> FitResult:
    """Trains a built group for its epochs, resuming from the checkpointer's latest save.

    Args:
        prog: From :func:`build_program`.
        checkpointer: Saves ``{state, history, seconds}`` after epochs (and restores the latest
            before the first); ``None`` trains without checkpoints.
        callbacks: :class:`Callback`-like objects; ``on_group_start`` and ``on_epoch_end`` run
            here, each epoch's hooks after its checkpoint is saved.
        group_index: Passed to the hooks (the group's index within a study).

    Returns:
        The :class:`FitResult`.
    """
    spec, n_members = prog.spec, len(prog.members)
    state = prog.init_state
    history = np.full((spec.epochs, prog.padded, len(HISTORY_FIELDS)), np.nan, np.float32)
    seconds = np.zeros((spec.epochs,), np.float32)
    start_epoch, resumed = 1, False
    if checkpointer is not None:
        restored = checkpointer.restore({"state": state, "history": history, "seconds": seconds})
        if restored is not None:
            step, saved = restored
            state = prog.reorder_state(saved["state"], to_members=False)
            history = np.asarray(saved["history"])
            seconds = np.asarray(saved["seconds"])
            start_epoch, resumed = step + 1, True
    emit(callbacks, "on_group_start", group_index, GroupStart(
        members=n_members, epochs=spec.epochs, start_epoch=start_epoch, strategy=prog.strategy,
        devices=prog.devices, compile_seconds=prog.compile_seconds))

    for epoch in range(start_epoch, spec.epochs + 1):
        with _CompileCounter() as counter:
            t0 = time.perf_counter()
            state, loss_sum, correct_sum, seen = prog.epoch_exec(
                state, prog.arrays, prog.train_x, prog.train_y, jnp.asarray(epoch, jnp.int32)
            )
            # A collective in a multi-process run: every process gathers, callbacks or not.
            loss_sum, correct_sum, seen, alive = prog.to_member_order(distributed.to_host(
                (loss_sum, correct_sum, seen, state.alive)))
            train_seconds = time.perf_counter() - t0
            with np.errstate(invalid="ignore", divide="ignore"):
                history[epoch - 1, :, 0] = loss_sum / seen
                history[epoch - 1, :, 1] = correct_sum / seen
            if prog.val is not None:
                val_loss, val_acc, _ = prog.evaluate(state, prog.val)
                history[epoch - 1, :, 2] = val_loss
                history[epoch - 1, :, 3] = val_acc
            seconds[epoch - 1] = time.perf_counter() - t0
        if checkpointer is not None:
            checkpointer.save(epoch, {"state": prog.reorder_state(state, to_members=True),
                                      "history": history, "seconds": seconds},
                              final=epoch == spec.epochs)
        if callbacks:
            info = EpochInfo(
                epochs=spec.epochs, seconds=float(seconds[epoch - 1]),
                train_seconds=train_seconds,
                images_per_second=n_members * prog.program.n_train / train_seconds,
                compiles=counter.count, resumed=resumed,
            )
            rates = epoch_learning_rates(prog.members, epoch, prog.program.steps, spec.epochs)
            rows = _member_metrics(history[epoch - 1], alive, n_members, rates)
            emit(callbacks, "on_epoch_end", group_index, epoch, rows, info)
    return FitResult(state, history, seconds, resumed)


# --------------------------------------------------------------------------------------------
# Step 3: analysis (test predictions, confusion inputs, probabilities, gradient histograms)
# --------------------------------------------------------------------------------------------


@dataclass
class Analysis:
    """Host-side (NumPy) evaluation of the final state, every array with a grid axis."""

    test_loss: np.ndarray  # [G]
    test_acc: np.ndarray  # [G]
    test_pred: np.ndarray  # [G, n_test]
    train_pred: np.ndarray | None  # [G, n_train] when asked for
    probs: np.ndarray  # [G, <=25, 10] test-image class probabilities
    params: Any  # final params as NumPy, [G, ...] leaves
    model_state: Any  # final non-parameter variables as NumPy, [G, ...] leaves ({} for the zoo)
    grads: Any  # data-loss gradients on GRAD_HIST_IMAGES training images, [G, ...] leaves
    alive: np.ndarray  # [G] bool
    diverged_epoch: np.ndarray  # [G] int, 0 while alive


def analyse(prog: GroupProgram, state: TrainState, splits: Any, *,
            train_confusion: bool = True) -> Analysis:
    """Evaluates the final state of every member on the test (and optionally train) split.

    Args:
        prog: From :func:`build_program`.
        state: The final :class:`TrainState` (``fit(...).state``).
        splits: The same ``Splits`` the program was built from.
        train_confusion: Also predict the whole training split.

    Returns:
        The :class:`Analysis`.
    """
    test_loss, test_acc, test_pred = prog.evaluate(state, prog.test)
    n_test, n_train = splits.test_x.shape[0], prog.program.n_train
    train_pred = None
    if train_confusion:
        train_split = tuple(distributed.put(a, prog.replicated)
                            for a in _pad_eval(splits.train_x, splits.train_y))
        train_pred = prog.evaluate(state, train_split)[2][:, :n_train]
    n_probe, n_grad = min(25, n_test), min(GRAD_HIST_IMAGES, n_train)
    probe_inputs = [
        distributed.put(a, prog.replicated)
        for a in (splits.test_x[:n_probe], np.asarray(splits.test_y[:n_probe], np.int32),
                  splits.train_x[:n_grad], np.asarray(splits.train_y[:n_grad], np.int32))
    ]
    probs, grads = prog.probe_fn((state.params, state.model_state), prog.arrays, *probe_inputs)
    # One gather of everything the results need (every process gets the whole grid).
    probs, params, model_state, grads, alive, diverged_epoch = prog.to_member_order(
        distributed.to_host(
            (probs, state.params, state.model_state, grads, state.alive, state.diverged_epoch)))
    return Analysis(
        test_loss=test_loss, test_acc=test_acc, test_pred=test_pred[:, :n_test],
        train_pred=train_pred, probs=probs, params=params, model_state=model_state, grads=grads,
        alive=alive, diverged_epoch=diverged_epoch,
    )


# --------------------------------------------------------------------------------------------
# Step 4: results (one MemberResult per member: arrays, no JSON)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupStats:
    """Compile and train time, speed, strategy and devices of one trained group."""

    members: int
    padded_members: int  # members + the copies of member 0 that pad the grid to the devices
    devices: int
    processes: int
    strategy: str
    compile_seconds: float
    train_seconds: float  # the epochs' wall time, summed (this session's and resumed ones)
    images_per_second: float | None  # members x training images x epochs / train_seconds
    resumed: bool


@dataclass(frozen=True)
class MemberResult:
    """One trained member as arrays: what the engine measured, nothing shaped for a file.

    :mod:`jaxmnist.runs.results` turns it into the run directory's JSON (status, confusion
    matrices, histograms); the parameters go to ``RunWriter.export_member``.
    """

    member: schema.Member
    alive: bool  # False: a step produced a non-finite loss or parameters (frozen since)
    diverged_epoch: int | None  # the epoch of that step; None while alive
    history: np.ndarray  # [epochs, len(HISTORY_FIELDS)] float32; NaN = not finite / no val split
    epoch_seconds: np.ndarray  # [epochs] wall seconds of the group's epochs
    has_val: bool  # the splits had a validation set (the val columns are meaningful)
    test_loss: float  # NaN when not finite
    test_acc: float
    test_pred: np.ndarray  # [n_test] int32 predicted classes
    train_pred: np.ndarray | None  # [n_train] int32, when the analysis was asked for it
    test_probs: np.ndarray  # [<= 25, 10] class probabilities of the first test images
    params: Any  # final parameters, NumPy leaves, no grid axis
    model_state: Any  # final non-parameter variables (BatchNorm statistics; {} for the zoo)
    weights: dict[str, np.ndarray]  # {layer path: final weight array} (the model's weight leaves)
    grads: dict[str, np.ndarray]  # {layer path: data-loss gradient on GRAD_HIST_IMAGES images}
    param_count: int
    group: GroupStats


def group_stats(prog: GroupProgram, fitted: FitResult) -> GroupStats:
    """Compile and train time, speed, strategy and devices of one group."""
    n_members, total = len(prog.members), float(fitted.seconds.sum())
    return GroupStats(
        members=n_members, padded_members=prog.padded, devices=prog.devices,
        processes=jax.process_count(), strategy=prog.strategy,
        compile_seconds=prog.compile_seconds, train_seconds=total,
        images_per_second=(n_members * prog.program.n_train * prog.spec.epochs / total
                           if total else None),
        resumed=fitted.resumed)


def _weight_layers(tree: Any, member: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    """``{layer path: leaf}`` of one member's weight leaves (``names``), as NumPy."""
    return {path.rpartition("/")[0]: np.asarray(leaf[member])
            for path, leaf in models.layer_paths(tree).items()
            if models.is_weight_path(path, names)}


def member_results(prog: GroupProgram, fitted: FitResult,
                   analysis: Analysis) -> list[MemberResult]:
    """One :class:`MemberResult` per real member, in member order."""
    stats = group_stats(prog, fitted)
    names = prog.program.model.weight_names
    param_count = models.param_count(jax.tree_util.tree_map(lambda a: a[0], analysis.params))
    return [
        MemberResult(
            member=member, alive=bool(analysis.alive[k]),
            diverged_epoch=int(analysis.diverged_epoch[k]) or None,
            history=np.asarray(fitted.history[:, k, :]), epoch_seconds=np.asarray(fitted.seconds),
            has_val=prog.val is not None,
            test_loss=float(analysis.test_loss[k]), test_acc=float(analysis.test_acc[k]),
            test_pred=np.asarray(analysis.test_pred[k]),
            train_pred=(np.asarray(analysis.train_pred[k])
                        if analysis.train_pred is not None else None),
            test_probs=np.asarray(analysis.probs[k]),
            params=jax.tree_util.tree_map(lambda a, k=k: a[k], analysis.params),
            model_state=jax.tree_util.tree_map(lambda a, k=k: a[k], analysis.model_state),
            weights=_weight_layers(analysis.params, k, names),
            grads=_weight_layers(analysis.grads, k, names),
            param_count=param_count, group=stats)
        for k, member in enumerate(prog.members)
    ]


# --------------------------------------------------------------------------------------------
# The orchestration
# --------------------------------------------------------------------------------------------


def train_grid(
    members: Sequence[MemberLike],
    splits: Any,
    workdir: str | None = None,
    *,
    on_epoch: Callable[[int, list[dict[str, Any]], dict[str, Any]], None] | None = None,
    callbacks: Sequence[Any] = (),
    group_index: int = 0,
    checkpoint_every: int = 1,
    keep: int = 2,
    train_confusion: bool = True,
    devices: Sequence[Any] | None = None,
) -> list[MemberResult]:
    """Trains a group of members as one compiled program and evaluates them.

    Args:
        members: Members (``jaxmnist.schema.member``) or member-config dicts (validated once,
            here) that share all static keys (see ``docs/architecture.md``).
        splits: A ``jaxmnist.data.Splits`` (images uint8 ``[N,28,28,1]``, labels int32 ``[N]``;
            ``val_x`` may be ``None``).
        workdir: This group's orbax checkpoint folder (resumed from when it holds one);
            ``None`` disables checkpointing.
        on_epoch: Shorthand for ``EpochFunction(on_epoch)``: ``on_epoch(epoch, metrics, info)``
            with ``info`` = :class:`EpochInfo` as a dict.
        callbacks: :class:`Callback`-like hooks (progress, metrics files, TensorBoard, ...).
        group_index: This group's index within the study, passed to the hooks.
        checkpoint_every: Save every this many epochs (the last epoch is always saved).
        keep: How many checkpoints to keep.
        train_confusion: Also predict the whole training split for a train confusion matrix.
        devices: Devices to shard the grid over; every device of every process
            by default (``jax.devices()``).

    Returns:
        One :class:`MemberResult` per member (arrays; :func:`jaxmnist.runs.results.member_record`
        shapes one as the run directory's JSON).
    """
    hooks = [*callbacks, *([EpochFunction(on_epoch)] if on_epoch is not None else [])]
    prog = build_program(members, splits, devices=devices)
    saver = (checkpoint.GroupCheckpointer(workdir, every=checkpoint_every, keep=keep)
             if workdir else None)
    fitted = fit(prog, checkpointer=saver, callbacks=hooks, group_index=group_index)
    analysis = analyse(prog, fitted.state, splits, train_confusion=train_confusion)
    results = member_results(prog, fitted, analysis)
    emit(hooks, "on_group_end", group_index, results)
    return results
