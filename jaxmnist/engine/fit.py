"""Training a group: :func:`train_grid` = build the program, :func:`fit` it, evaluate it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmnist import ranking, schema
from jaxmnist.engine import checkpoint, distributed, metrics, optim
from jaxmnist.engine.evaluate import FitResult, MemberResult, member_results
from jaxmnist.engine.hooks import HISTORY_FIELDS, EpochInfo, GroupStart, emit
from jaxmnist.engine.placement import member_layout
from jaxmnist.engine.program import GroupProgram, MemberLike, TrainState, build_program


@contextlib.contextmanager
def _count_compiles() -> Iterator[list[int]]:
    """``[n]``: XLA backend compilations inside the block (the 'no recompile' promise)."""
    count = [0]

    def listen(event: str, duration: float, **kwargs: Any) -> None:
        count[0] += event == "/jax/core/compile/backend_compile_duration"

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def kept_epochs(history: np.ndarray, upto: int) -> np.ndarray:
    """Per member, its best epoch of ``1..upto`` by :func:`jaxmnist.ranking.rank` (0: none yet)."""
    out = np.zeros(history.shape[1], np.int64)
    for k in range(history.shape[1]):
        acc, loss = history[:upto, k, 3], history[:upto, k, 2]
        if np.isfinite(acc).any():
            out[k] = ranking.rank(acc.tolist(), loss.tolist())[0] + 1
    return out


def rung_records(fate: np.ndarray, prune: schema.Prune | None, n: int) -> list[list[dict]]:
    """Per member, ``{"epoch", "rank", "of", "by", "survived"}`` of each rung that ranked it."""
    if prune is None:
        return [[] for _ in range(n)]
    return [[{"epoch": e, "rank": int(fate[i, k, 0]), "of": int(fate[i, k, 1]),
              "by": prune.metric, "survived": bool(fate[i, k, 2])}
             for i, e in enumerate(prune.rungs) if fate[i, k, 0]] for k in range(n)]


def _redeal(prog: GroupProgram, active: np.ndarray, state: Any = None) -> Any:
    """Deals the ``active`` members over the devices again (sequential); returns ``state`` moved."""
    old = prog.placement
    if old.strategy != "sequential" or old.devices == 1 or jax.process_count() > 1:
        return state
    rates = [m.optim.learning_rate for m in prog.members]
    new = dataclasses.replace(old, layout=member_layout(rates, old.padded, old.devices,
                                                        active[: len(rates)]))
    move = lambda tree: new.reorder(old.reorder(tree, to_members=True),  # noqa: E731
                                    to_members=False)
    prog.placement, prog.arrays = new, move(prog.arrays)
    return None if state is None else move(state)


def _rung(prog: GroupProgram, prune: schema.Prune, row: np.ndarray, alive: np.ndarray,
          fate: np.ndarray) -> np.ndarray:
    """Ranks the alive points on the epoch's ``row`` and fills ``fate[rung]``.

    Returns who trains on, ``[padded]`` bool: not the stopped, the diverged or the padding.
    """
    n, col = len(prog.members), HISTORY_FIELDS.index(prune.metric)
    active = np.asarray(alive, bool)[:n]
    values = np.where(active, row[:n, col], np.nan)
    points = [json.dumps({**m.config(), "seed": None}, sort_keys=True) for m in prog.members]
    families = [m.optim.name if prune.within == "family" else "" for m in prog.members]
    decided = ranking.rung(points, families, values.tolist(), row[:n, 2].tolist(),
                           active.tolist(), eta=prune.eta, metric=prune.metric)
    for k, (place, of, survives) in decided.items():
        if active[k]:  # a diverged seed of a ranked point keeps its own status
            fate[k] = (place, of, survives)
    keep = np.zeros(prog.placement.padded, bool)
    keep[:n] = active & np.asarray([decided.get(k, (0, 0, True))[2] for k in range(n)])
    return keep


def _gather(prog: GroupProgram, state: TrainState, training: np.ndarray
            ) -> tuple[GroupProgram, TrainState, np.ndarray]:
    """Under vmap: ``(program, state, members)`` of the ``training`` members alone (compiled once).

    The smaller program's compile time is added to the group's; its grid is padded with the first.
    """
    index = np.flatnonzero(training[: len(prog.members)])
    index = index if len(index) else np.zeros(1, np.int64)
    pad = np.concatenate([index, np.repeat(index[:1], -len(index) % prog.placement.devices)])
    placement = dataclasses.replace(prog.placement, layout=np.arange(len(pad)))
    take = jax.jit(lambda tree: jax.tree_util.tree_map(lambda a: a[pad], tree),
                   out_shardings=placement.grid)
    state, arrays = take(state), take(prog.arrays)
    t0 = time.perf_counter()
    epoch_exec = prog.compile_epoch(state, arrays)
    prog.compile_seconds += time.perf_counter() - t0
    prog.epoch_programs += 1
    return dataclasses.replace(prog, placement=placement, arrays=arrays, epoch_exec=epoch_exec,
                               members=[prog.members[k] for k in index]), state, index


def _scatter(prog: GroupProgram, full: TrainState, state: TrainState,
             index: np.ndarray | None) -> TrainState:
    """The member-order state of the group: ``full`` with the gathered members' ``state``."""
    if index is None:
        return prog.placement.reorder(state, to_members=True)
    return _put_rows(full, state, np.asarray(index))


@jax.jit  # compiled once per grid size (a fresh closure per call would compile every epoch)
def _put_rows(full: Any, state: Any, index: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda a, b: a.at[index].set(b[: index.shape[0]]), full, state)


def epoch_learning_rates(members: Sequence[Any], epoch: int, steps_per_epoch: int,
                         epochs: int) -> list[float | None]:
    """Each member's learning rate in the last step of ``epoch`` (its optax schedule, on host)."""
    count, out = epoch * steps_per_epoch - 1, []
    for m in members:
        try:
            sched = optim.schedule(m.optim.model_dump(), epochs * steps_per_epoch)
        except (KeyError, TypeError, ValueError):
            out.append(None)
            continue
        out.append(float(sched(count)) if callable(sched) else float(sched))
    return out


def fit(prog: GroupProgram, *, checkpointer: checkpoint.GroupCheckpointer | None = None,
        callbacks: Sequence[Any] = (), group_index: int = 0,
        prune: schema.Prune | None = None) -> FitResult:
    """Trains a built group for its epochs, resuming from the checkpointer's latest save.

    Checkpoints hold ``{state (member order), history, seconds[, fate]}``; each epoch's hook
    runs after it. ``prune``: successive halving at its rung epochs; ``fate`` ``[rungs, G, 3]``
    holds each rung's (rank, of, survived) per member, so a resume decides nothing twice.
    """
    spec, n_members, padded = prog.spec, len(prog.members), prog.placement.padded
    state = prog.init_state
    history = np.full((spec.epochs, padded, len(HISTORY_FIELDS)), np.nan, np.float32)
    seconds = np.zeros((spec.epochs,), np.float32)
    fate = np.zeros((len(prune.rungs) if prune else 0, padded, 3), np.int32)
    # Members still training after the last rung (member order): the sequential layout deals
    # them; under vmap they alone form the program ``work`` trains, ``index`` its members.
    training = np.ones(padded, bool)
    vmap, work, index, full = prog.placement.strategy == "vmap", prog, None, None
    # restore_best: the best epoch's evaluated variables so far (host, member order).
    kept = (prog.placement.to_member_order(distributed.to_host(prog.eval_variables(state)))
            if spec.restore_best else None)
    extra = lambda: {**({"fate": fate, "training": training} if prune else {}),  # noqa: E731
                     **({"kept": kept} if kept is not None else {})}
    start_epoch, resumed = 1, False
    restored = checkpointer.restore({"state": state, "history": history, "seconds": seconds,
                                     **extra()}) if checkpointer is not None else None
    if restored is not None:
        step, saved = restored
        state = saved["state"]
        kept = jax.tree_util.tree_map(np.asarray, saved["kept"]) if kept is not None else None
        if prune is not None and np.asarray(saved["fate"]).any():  # as the last rung left it
            fate, training = np.asarray(saved["fate"]), np.asarray(saved["training"])
            if vmap:
                full = state
                work, state, index = _gather(prog, full, training)
            else:
                _redeal(prog, training)
        if index is None:
            state = prog.placement.reorder(state, to_members=False)
        history, seconds = np.asarray(saved["history"]), np.asarray(saved["seconds"])
        start_epoch, resumed = step + 1, True
    emit(callbacks, "on_group_start", group_index, GroupStart(
        members=n_members, epochs=spec.epochs, start_epoch=start_epoch,
        strategy=prog.placement.strategy, devices=prog.placement.devices,
        compile_seconds=prog.compile_seconds))

    def spread(values: Any, fill: Any) -> Any:  # the working members' host values, member order
        if index is None:
            return values
        out = np.full((padded,) + values.shape[1:], fill, values.dtype)
        out[index] = values[: len(index)]
        return out

    for epoch in range(start_epoch, spec.epochs + 1):
        with _count_compiles() as compiles:
            t0 = time.perf_counter()
            state, loss_sum, correct_sum, seen = work.epoch_exec(
                state, work.arrays, prog.train_x, prog.train_y, jnp.asarray(epoch, jnp.int32))
            # A collective in a multi-process run: every process gathers, callbacks or not.
            loss_sum, correct_sum, seen, alive = (spread(v, f) for v, f in zip(
                work.placement.to_member_order(distributed.to_host(
                    (loss_sum, correct_sum, seen, state.alive))), (0, 0, 0, False), strict=True))
            train_seconds = time.perf_counter() - t0
            row = history[epoch - 1]
            with np.errstate(invalid="ignore", divide="ignore"):
                row[:, 0], row[:, 1] = loss_sum / seen, correct_sum / seen
            if prog.val is not None:  # pruned members are not evaluated (sequential)
                active = None if vmap else training[work.placement.layout]
                row[:, 2], row[:, 3] = (spread(v, np.nan) for v in work.evaluate(
                    state, prog.val, active)[:2])
            # A pruned member's epochs after its rung: NaN, as it trained none.
            row[((fate[..., 0] > 0) & (fate[..., 2] == 0)).any(0)] = np.nan
            if kept is not None and (improved := kept_epochs(history, epoch) == epoch).any():
                now = work.placement.to_member_order(distributed.to_host(
                    work.eval_variables(state)))
                kept = jax.tree_util.tree_map(lambda k, n: np.where(
                    improved.reshape((-1,) + (1,) * (k.ndim - 1)), spread(n, 0), k), kept, now)
            seconds[epoch - 1] = time.perf_counter() - t0
        if prune is not None and epoch in prune.rungs:
            training = alive = _rung(prog, prune, row, alive, fate[prune.rungs.index(epoch)])
            if vmap and training.sum() < len(work.members):  # smaller: gather
                full = _scatter(prog, full, state, index)
                full = full._replace(alive=distributed.put(training, prog.placement.grid))
                work, state, index = _gather(prog, full, training)
            elif not vmap:
                state = state._replace(alive=distributed.put(training[prog.placement.layout],
                                                             prog.placement.grid))
                state = _redeal(prog, training, state)
        if checkpointer is not None:
            checkpointer.save(epoch, {"state": _scatter(prog, full, state, index),
                                      "history": history, "seconds": seconds, **extra()},
                              final=epoch == spec.epochs)
        if callbacks:
            info = EpochInfo(
                epochs=spec.epochs, seconds=float(seconds[epoch - 1]), train_seconds=train_seconds,
                images_per_second=len(work.members) * prog.program.n_train / train_seconds,
                compiles=compiles[0], resumed=resumed)
            rates = epoch_learning_rates(prog.members, epoch, prog.program.steps, spec.epochs)
            rows = [{**{f: metrics.finite_or_none(row[k, j])
                        for j, f in enumerate(HISTORY_FIELDS)},
                     "alive": bool(alive[k]), "learning_rate": rates[k]}
                    for k in range(n_members)]
            emit(callbacks, "on_epoch_end", group_index, epoch, rows, info)
    if index is not None:
        state = _scatter(prog, full, state, index)
    return FitResult(state, history, seconds, resumed, rung_records(fate, prune, n_members),
                     kept_epochs(history, spec.epochs) if kept is not None else None, kept)


def train_grid(members: Sequence[MemberLike], splits: Any, workdir: str | None = None, *,
               callbacks: Sequence[Any] = (), group_index: int = 0, checkpoint_every: int = 1,
               keep: int = 2, devices: Sequence[Any] | None = None,
               prune: schema.Prune | Mapping[str, Any] | None = None) -> list[MemberResult]:
    """Trains a group of members as one compiled program; one :class:`MemberResult` each.

    Args:
        members: Members or member-config dicts (validated here) sharing all static keys.
        splits: A ``jaxmnist.data.Splits`` (``val_x`` may be None).
        workdir: The group's checkpoint folder (resumed from); ``None``: no checkpoints.
        callbacks: Hook objects (:class:`jaxmnist.engine.hooks.Callback`-like).
        group_index: The group's index within the study, passed to the hooks.
        checkpoint_every: Save every this many epochs (and always the last).
        keep: How many checkpoints to keep.
        devices: Devices to shard the grid over (default: every useful device).
        prune: Successive halving at rung epochs (:class:`jaxmnist.schema.Prune` or its dict).
    """
    prune = schema.Prune.model_validate(prune) if prune is not None else None
    prog = build_program(members, splits, devices=devices)
    saver = (checkpoint.GroupCheckpointer(workdir, every=checkpoint_every, keep=keep)
             if workdir else None)
    fitted = fit(prog, checkpointer=saver, callbacks=callbacks, group_index=group_index,
                 prune=prune)
    results = member_results(prog, fitted, splits)
    emit(callbacks, "on_group_end", group_index, results)
    return results
