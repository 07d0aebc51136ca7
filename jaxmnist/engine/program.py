"""A group's compiled program: the per-member step, the epoch ``lax.scan``, evaluation.

Members that share every static key (``jaxmnist.groups``) are stacked on a leading grid axis
``G``; one jitted epoch trains them all (design: docs/architecture.md, "How a group trains").
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
from jax.sharding import PartitionSpec

from jaxmnist import models, schema
from jaxmnist.caches import kept
from jaxmnist.engine import distributed, losses, optim
from jaxmnist.engine.placement import Placement, place
from jaxmnist.groups import group_key
from jaxmnist.models.common import NUM_CLASSES

EVAL_BATCH = 1000  # images per evaluation step (forward only, so larger than training batches)
# Group programs kept per process (docs/architecture.md, "Compiled groups are kept").
COMPILED_GROUPS_KEPT = 8


class GridError(ValueError):
    """Members cannot train together (a clear, user-facing error)."""


MemberLike = schema.Member | Mapping[str, Any]
"""A validated :class:`jaxmnist.schema.Member` or a member-config dict (validated on entry)."""


def as_members(members: Sequence[MemberLike]) -> list[schema.Member]:
    """The typed members; dicts are validated here (a ``ConfigError`` lists every problem)."""
    checked = [schema.validated(m, f"members[{k}]") for k, m in enumerate(members)]
    problems = [problem for _, found in checked for problem in found]
    if problems:
        raise schema.ConfigError(problems, "member config")
    return [one for one, _ in checked]


@dataclass(frozen=True)
class GroupSpec:
    """What every member of a group shares (all static)."""

    model_cfg: dict[str, Any]
    loss: str
    epochs: int
    batch_size: int
    optimizer: optim.Plan  # the families, schedules and clipping present (optim.plan)
    strategy: str
    penalties: tuple[str, ...] = ("l1", "l2")  # any member's (docs/performance.md)
    restore_best: bool = False  # members end with their best epoch on validation

    @classmethod
    def from_members(cls, members: Sequence[schema.Member]) -> GroupSpec:
        """The spec of typed members (``GridError``: none, or differing static keys)."""
        if not members:
            raise GridError("train_grid needs at least one member config")
        if len({group_key(m.config()) for m in members}) != 1:
            raise GridError(
                "members differ in static (shape-changing) keys and cannot train as one program; "
                "split them with jaxmnist.groups.group_members first")
        first = members[0]
        return cls(
            model_cfg=first.model.model_dump(), loss=first.loss, epochs=first.train.epochs,
            batch_size=first.train.batch_size, strategy=first.train.strategy,
            optimizer=optim.plan([m.optim.model_dump() for m in members]),
            penalties=tuple(n for n in ("l1", "l2") if any(getattr(m.reg, n) for m in members)),
            restore_best=first.train.restore_best)


class MemberArrays(NamedTuple):
    """Per-member dynamic values, each with a leading grid axis."""

    hyper: dict[str, jax.Array]  # jaxmnist.engine.optim.member_hyper
    l1: jax.Array
    l2: jax.Array
    keys: jax.Array  # [G, 3, 2] uint32: init, dropout, data-order keys


def member_arrays(members: Sequence[schema.Member], plan: optim.Plan,
                  total_steps: int) -> MemberArrays:
    """The members' dynamic keys on a leading grid axis (``total_steps``: cosine's default)."""
    # Three streams per member from its seed alone: two members with the same seed start from
    # the same weights and see the same data order (a paired comparison).
    keys = jnp.stack([jnp.stack([jax.random.fold_in(jax.random.PRNGKey(m.seed), i)
                                 for i in range(3)]) for m in members])
    return MemberArrays(
        hyper=optim.member_hyper([m.optim.model_dump() for m in members], plan, total_steps),
        l1=jnp.asarray([m.reg.l1 for m in members], jnp.float32),
        l2=jnp.asarray([m.reg.l2 for m in members], jnp.float32),
        keys=keys)


class TrainState(NamedTuple):
    """One member's training state (a leading ``G`` axis on a grid)."""

    params: Any
    model_state: Any  # non-parameter variables (BatchNorm statistics, ...); {} for the zoo
    opt: Any
    alive: jax.Array  # bool: False once a step produced a non-finite loss or values, or pruned
    diverged_epoch: jax.Array  # int32: the epoch in which it diverged, 0 while alive
    steps: jax.Array  # int32: steps taken while alive (a skipped or frozen epoch adds none)


def _all_finite(tree: Any) -> jax.Array:  # True for an empty tree (the zoo's model state)
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(leaf)) for leaf in leaves], bool))


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class MemberProgram:
    """One member's pure functions (init, epoch, evaluation) and their jitted forms on the grid.

    The jitted functions take the member values as arguments: a grid of the same shape reuses them.
    """

    def __init__(self, spec: GroupSpec, n_train: int, placement: Placement):
        # Sequential only (vmap runs both branches): inactive members skip their work.
        self.skip_frozen = placement.strategy == "sequential"
        self.spec, self.n_train = spec, n_train
        self.strategy, self.mesh = placement.strategy, placement.mesh
        self.model, self.loss_fn = models.build(spec.model_cfg), losses.get_loss(spec.loss)
        self.steps = math.ceil(n_train / spec.batch_size)
        over = self._over
        self.init_fn = jax.jit(over(self.init_member), out_shardings=placement.grid)
        self.epoch_fn = jax.jit(lambda st, ar, x, y, e: over(self.member_epoch, x, y, e)(st, ar),
                                donate_argnums=(0,))
        self.eval_fn = jax.jit(lambda p, a, x, y, w: over(self.member_eval, x, y, w)(p, a))
        # (variables, arrays, probe x, grad x, y) -> (probs, grads)
        self.probe_fn = jax.jit(lambda p, a, *xs: over(self.member_probs_and_grads, *xs)(p, a))
        # (state, arrays) -> the parameters members are evaluated at
        self.eval_params_fn = jax.jit(over(lambda st, ar: optim.eval_params(
            st.opt, st.params, ar.hyper, spec.optimizer)))
        self.epochs: dict[Any, Any] = {}  # compiled epochs by argument signature

    def _data_loss(self, logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
        if self.spec.loss != "xent":  # one-hot targets, as the papers' Keras code fed them
            labels = jax.nn.one_hot(labels, NUM_CLASSES, dtype=jnp.float32)
        return self.loss_fn(logits, labels, weights)

    def _objective(self, params, model_state, x, y, w, key, l1, l2):
        logits, new_model_state = self.model.apply(params, model_state, x, train=True, key=key)
        penalty = jnp.float32(0.0)
        if "l1" in self.spec.penalties:
            penalty = penalty + l1 * losses.l1_penalty(params, self.model.weight_names)
        if "l2" in self.spec.penalties:
            penalty = penalty + l2 * losses.l2_penalty(params, self.model.weight_names)
        correct = jnp.sum((jnp.argmax(logits, -1) == y) * w)
        return self._data_loss(logits, y, w) + penalty, (correct, new_model_state)

    def init_member(self, variables: tuple[Any, Any], arrays: MemberArrays) -> TrainState:
        """The starting state of one member from its ``(params, model_state)``."""
        params, model_state = variables
        opt = optim.init(params, arrays.hyper, self.spec.optimizer)
        zero = jnp.asarray(0, jnp.int32)
        return TrainState(params, model_state, opt, jnp.asarray(True), zero, zero)

    def member_epoch(self, state: TrainState, arrays: MemberArrays, train_x, train_y, epoch):
        """One epoch of one member: ``(state, loss_sum, correct_sum, seen)`` (0 when frozen)."""
        if not self.skip_frozen:
            return self._train_epoch(state, arrays, train_x, train_y, epoch)
        zero = jnp.asarray(0.0, jnp.float32)
        return jax.lax.cond(state.alive,
                            lambda st: self._train_epoch(st, arrays, train_x, train_y, epoch),
                            lambda st: (st, zero, zero, zero), state)

    def _train_epoch(self, state: TrainState, arrays: MemberArrays, train_x, train_y, epoch):
        batch, steps, n = self.spec.batch_size, self.steps, self.n_train
        order = jax.random.permutation(jax.random.fold_in(arrays.keys[2], epoch), n)
        # Keras semantics: the last batch is partial, padded with index 0 at weight 0.
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
            new_params, new_opt = optim.update(grads, st.opt, st.params, arrays.hyper,
                                               self.spec.optimizer)
            ok = (st.alive & jnp.isfinite(loss) & _all_finite(new_params)
                  & _all_finite(new_model_state))
            count = jnp.sum(w)
            new_state = TrainState(
                params=_select(ok, new_params, st.params),
                model_state=_select(ok, new_model_state, st.model_state),
                opt=_select(ok, new_opt, st.opt),
                alive=ok,
                diverged_epoch=jnp.where(st.alive & ~ok, epoch, st.diverged_epoch),
                steps=st.steps + st.alive.astype(jnp.int32))
            # Only applied steps count: a frozen member's metrics describe its last finite
            # updates (NaN only if nothing was applied).
            loss_sum = loss_sum + jnp.where(ok, loss * count, 0.0)
            correct_sum = correct_sum + jnp.where(ok, correct, 0.0)
            seen = seen + jnp.where(ok, count, 0.0)
            return (new_state, loss_sum, correct_sum, seen), None

        zero = jnp.asarray(0.0, jnp.float32)
        (state, loss_sum, correct_sum, seen), _ = jax.lax.scan(
            step, (state, zero, zero, zero), (jnp.arange(steps), order, weights))
        return state, loss_sum, correct_sum, seen

    def member_eval(self, variables, active, eval_x, eval_y, eval_w):
        """``(loss_sum, correct, preds)`` over a padded split (zeros when skipped: not active)."""
        if not self.skip_frozen:
            return self._eval(variables, eval_x, eval_y, eval_w)
        zero = jnp.asarray(0.0, jnp.float32)
        skipped = (zero, zero, jnp.zeros((eval_x.shape[0] * eval_x.shape[1],), jnp.int32))
        return jax.lax.cond(active, lambda v: self._eval(v, eval_x, eval_y, eval_w),
                            lambda v: skipped, variables)

    def _eval(self, variables, eval_x, eval_y, eval_w):
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

    def member_probs_and_grads(self, variables, arrays: MemberArrays, x_probe, x_grad, y_grad):
        """Class probabilities of a few test images and the data-loss gradient on a batch."""
        params, model_state = variables
        probs = jax.nn.softmax(self.model.predict(params, model_state, x_probe), -1)
        w = jnp.ones(y_grad.shape, jnp.float32)

        def loss(p):
            return self._data_loss(self.model.predict(p, model_state, x_grad), y_grad, w)

        return probs, jax.grad(loss)(params)

    def _over(self, fn: Callable, *shared: Any) -> Callable:
        """Maps ``fn(*member_args, *shared)`` over the members' grid axis (docs/architecture.md)."""
        if self.strategy == "vmap":
            return jax.vmap(lambda *args: fn(*args, *shared))

        def sequential(args, shared_values):
            return jax.lax.map(lambda a: fn(*a, *shared_values), args)

        if self.mesh.size == 1:
            return lambda *args: sequential(args, shared)
        # check_vma=False: the members never communicate, and the per-member program mixes
        # per-device values with constants in its scan carries.
        mapped = jax.shard_map(sequential, mesh=self.mesh, check_vma=False,
                               in_specs=(PartitionSpec("grid"), PartitionSpec()),
                               out_specs=PartitionSpec("grid"))
        return lambda *args: mapped(args, shared)


_JITTED: collections.OrderedDict[tuple[Any, ...], MemberProgram] = collections.OrderedDict()
_PER_MODEL: collections.OrderedDict[tuple[int, str], tuple[Any, Any]] = (
    collections.OrderedDict())


def per_model(model: models.Model, what: str, make: Callable[[models.Model], Any]) -> Any:
    """``make(model)``, once per model object (the entry holds it, so its ``id`` stays unique)."""
    return kept(_PER_MODEL, (id(model), what), lambda: (model, make(model)),
                8 * COMPILED_GROUPS_KEPT)[1]


def _kept_program(spec: GroupSpec, n_train: int, placement: Placement) -> MemberProgram:
    """A group's program, kept by what its jitted functions close over."""
    model = models.build(spec.model_cfg)  # the kept program holds it: its id stays unique
    key = (repr(spec), n_train, placement.strategy,
           tuple(d.id for d in placement.mesh.devices.flat), jax.process_count(), id(model))
    return kept(_JITTED, key, lambda: MemberProgram(spec, n_train, placement),
                COMPILED_GROUPS_KEPT)


def clear_compiled_groups() -> None:
    """Drops every kept group program and per-model jitted function (frees their memory)."""
    _JITTED.clear()
    _PER_MODEL.clear()


def _signature(*trees: Any) -> tuple[Any, ...]:
    """What an ahead-of-time compile depends on: tree structure, shapes, dtypes, shardings."""
    leaves, treedef = jax.tree_util.tree_flatten(trees)
    return (treedef, tuple((leaf.shape, str(leaf.dtype), getattr(leaf, "sharding", None))
                           for leaf in leaves))


def pad_eval(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A split padded to whole evaluation batches: ``[steps, EVAL_BATCH, ...]`` x, y, weights."""
    n = x.shape[0]
    batch = min(EVAL_BATCH, max(n, 1))
    steps = math.ceil(n / batch)
    pad = steps * batch - n
    xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    yp = np.concatenate([y, np.zeros((pad,), y.dtype)])
    wp = (np.arange(steps * batch) < n).astype(np.float32)
    return (xp.reshape((steps, batch) + x.shape[1:]), yp.reshape(steps, batch),
            wp.reshape(steps, batch))


def _initial_params(members: Sequence[schema.Member], init_keys: jax.Array) -> Any:
    """Every member's starting ``(params, model_state)``, drawn per shared initializer."""
    by_spec: dict[str, list[int]] = {}
    sections = [m.model.model_dump() for m in members]
    for k, section in enumerate(sections):
        by_spec.setdefault(json.dumps(section, sort_keys=True), []).append(k)
    order = np.empty(len(members), np.int64)
    parts, offset = [], 0
    for indices in by_spec.values():
        model = models.build(sections[indices[0]])
        parts.append(per_model(model, "init", lambda m: jax.jit(jax.vmap(m.init)))(
            init_keys[np.asarray(indices)]))
        order[np.asarray(indices)] = np.arange(offset, offset + len(indices))
        offset += len(indices)
    if len(parts) == 1:
        return parts[0]
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.concatenate(leaves), *parts)
    return jax.tree_util.tree_map(lambda leaf: leaf[order], stacked)


@dataclass
class GroupProgram:
    """One group, ready to train: what :func:`jaxmnist.engine.fit.fit` and the evaluation need."""

    spec: GroupSpec
    members: list[schema.Member]  # the real members, in member order
    placement: Placement
    program: MemberProgram  # kept: its jitted functions and compiled epochs
    arrays: MemberArrays  # on the device, sharded over the grid axis, in grid order
    train_x: jax.Array
    train_y: jax.Array
    val: tuple[jax.Array, ...] | None  # padded [steps, EVAL_BATCH, ...] split, or None
    test: tuple[jax.Array, ...]
    init_state: TrainState
    epoch_exec: Any = None  # the compiled epoch (state, arrays, x, y, epoch) -> (state, sums...)
    compile_seconds: float = 0.0
    epoch_programs: int = 1  # grid sizes trained (vmap pruning gathers survivors: one more each)

    def compile_epoch(self, state: TrainState, arrays: MemberArrays) -> Any:
        """The epoch compiled ahead of time for ``(state, arrays)``, once per argument signature."""
        args = (state, arrays, self.train_x, self.train_y, jnp.asarray(1, jnp.int32))
        signature = _signature(*args)
        if signature not in self.program.epochs:
            self.program.epochs[signature] = self.program.epoch_fn.lower(*args).compile()
        return self.program.epochs[signature]

    def to_grid(self, tree: Any) -> Any:
        """Host leaves in member order (``[padded, ...]``) on the devices in grid order."""
        return jax.tree_util.tree_map(
            lambda a: distributed.put(np.asarray(a)[self.placement.layout], self.placement.grid),
            tree)

    def eval_variables(self, state: TrainState) -> tuple[Any, Any]:
        """``(params, model_state)`` as evaluated, exported and served (optim.eval_params)."""
        plan = self.spec.optimizer
        params = (self.program.eval_params_fn(state, self.arrays) if plan.ema or plan.eval_params
                  else state.params)
        return params, state.model_state

    def evaluate(self, state: TrainState, split: tuple[jax.Array, ...],
                 active: np.ndarray | None = None, variables: Any = None):
        """``(loss [G], acc [G], preds [G, padded N])`` on a padded split, in member order.

        ``active`` (grid order, default all): the others are skipped under ``sequential`` (their
        values meaningless). ``variables`` (grid order): evaluated instead of the state's.
        """
        mask = np.ones(self.placement.padded, bool) if active is None else active
        variables = self.eval_variables(state) if variables is None else variables
        loss_sum, correct, preds = self.placement.to_member_order(distributed.to_host(
            self.program.eval_fn(variables, distributed.put(mask, self.placement.grid), *split)))
        n = float(distributed.to_host(split[2]).sum())
        return loss_sum / n, correct / n, preds


def build_program(members: Sequence[MemberLike], splits: Any, *,
                  devices: Sequence[Any] | None = None) -> GroupProgram:
    """Validates a group, places it, puts its data on the devices and compiles its epoch.

    ``members`` (or member-config dicts) share all static keys; ``devices`` default to
    :func:`placement.place`'s choice. GridError: they cannot train together, or no training data.
    """
    members = as_members(members)
    spec = GroupSpec.from_members(members)
    if splits.train_x.shape[0] == 0:
        raise GridError("the training split is empty")
    placement = place(spec.strategy, [m.optim.learning_rate for m in members], devices)
    # Grid position p trains padded[p]; the padding is copies of member 0.
    pool = members + [members[0]] * (placement.padded - len(members))
    padded = [pool[j] for j in placement.layout]
    program = _kept_program(spec, int(splits.train_x.shape[0]), placement)
    # Host values enter as global arrays: each process transfers only its own devices' shards.
    arrays = distributed.put(member_arrays(padded, spec.optimizer, spec.epochs * program.steps),
                             placement.grid)
    put = lambda *a: tuple(distributed.put(v, placement.replicated) for v in a)  # noqa: E731
    # The dataset goes to the devices once, as uint8; every epoch indexes it there.
    train_x, train_y = put(np.asarray(splits.train_x, np.uint8),
                           np.asarray(splits.train_y, np.int32))
    has_val = splits.val_x is not None and len(splits.val_x) > 0
    if spec.restore_best and not has_val:
        raise GridError("train.restore_best keeps the best epoch on validation, and the splits "
                        "have no validation set; add one or set restore_best False")
    val = put(*pad_eval(splits.val_x, splits.val_y)) if has_val else None
    test = put(*pad_eval(splits.test_x, splits.test_y))
    init_variables = _initial_params(padded, arrays.keys[:, 0])

    t0 = time.perf_counter()  # the initial state and the epoch's ahead-of-time compile
    state = jax.block_until_ready(program.init_fn(init_variables, arrays))
    prog = GroupProgram(spec=spec, members=members, placement=placement, program=program,
                        arrays=arrays, train_x=train_x, train_y=train_y, val=val, test=test,
                        init_state=state)
    prog.epoch_exec = prog.compile_epoch(state, arrays)
    prog.compile_seconds = time.perf_counter() - t0
    return prog
