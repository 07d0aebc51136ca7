"""Training a group: :func:`train_grid` = build the program, :func:`fit` it, evaluate it.

One compiled call per epoch; hooks run after each epoch's checkpoint is saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmnist import ranking, schema
from jaxmnist.engine import checkpoint, distributed, metrics, optim
from jaxmnist.engine.evaluate import MemberResult, member_results
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


@dataclass
class FitResult:
    """The state after the last epoch and what the loop measured."""

    state: TrainState
    history: np.ndarray  # [epochs, padded G, len(HISTORY_FIELDS)] float32, member order
    seconds: np.ndarray  # [epochs] wall seconds per epoch
    resumed: bool
    rungs: list[list[dict[str, Any]]]  # per member, its pruning rungs (rung_records)


def rung_records(fate: np.ndarray, prune: schema.Prune | None, n: int) -> list[list[dict]]:
    """Per member, ``{"epoch", "rank", "of", "by", "survived"}`` of each rung that ranked it."""
    if prune is None:
        return [[] for _ in range(n)]
    return [[{"epoch": e, "rank": int(fate[i, k, 0]), "of": int(fate[i, k, 1]),
              "by": prune.metric, "survived": bool(fate[i, k, 2])}
             for i, e in enumerate(prune.rungs) if fate[i, k, 0]] for k in range(n)]


def _redeal(prog: GroupProgram, active: np.ndarray, state: Any = None) -> Any:
    """Deals the ``active`` members (member order) evenly over the devices again.

    Sequential strategy, one process, several devices (as :func:`placement.place` deals): no
    device keeps all the remaining work. Moves the member arrays; returns ``state`` moved.
    """
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


def _rung(prog: GroupProgram, prune: schema.Prune, state: TrainState, row: np.ndarray,
          alive: np.ndarray, fate: np.ndarray) -> TrainState:
    """Ranks the alive points after a rung epoch, fills ``fate[rung]``, stops the losers.

    Decided on the host from the epoch's validation ``row`` (member order); the stopped members
    (and the padding) are marked not alive, so they skip their epochs as a diverged one does.
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
    state = state._replace(alive=distributed.put(keep[prog.placement.layout],
                                                 prog.placement.grid))
    return _redeal(prog, keep, state)


def epoch_learning_rates(members: Sequence[Any], epoch: int, steps_per_epoch: int,
                         epochs: int) -> list[float | None]:
    """The learning rate each member's optimizer used in the last step of ``epoch``.

    From the plain optax schedule on the host (:func:`jaxmnist.engine.optim.schedule`).
    """
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
    spec, n_members = prog.spec, len(prog.members)
    state = prog.init_state
    history = np.full((spec.epochs, prog.placement.padded, len(HISTORY_FIELDS)), np.nan,
                      np.float32)
    seconds = np.zeros((spec.epochs,), np.float32)
    fate = np.zeros((len(prune.rungs) if prune else 0, prog.placement.padded, 3), np.int32)
    carry = {"state": state, "history": history, "seconds": seconds,
             **({"fate": fate} if prune else {})}
    start_epoch, resumed = 1, False
    restored = checkpointer.restore(carry) if checkpointer is not None else None
    if restored is not None:
        step, saved = restored
        if prune is not None:
            fate = np.asarray(saved["fate"])
            if fate.any():  # deal the members the rungs left as they did
                _redeal(prog, distributed.to_host(saved["state"].alive))
        state = prog.placement.reorder(saved["state"], to_members=False)
        history, seconds = np.asarray(saved["history"]), np.asarray(saved["seconds"])
        start_epoch, resumed = step + 1, True
    emit(callbacks, "on_group_start", group_index, GroupStart(
        members=n_members, epochs=spec.epochs, start_epoch=start_epoch,
        strategy=prog.placement.strategy, devices=prog.placement.devices,
        compile_seconds=prog.compile_seconds))

    for epoch in range(start_epoch, spec.epochs + 1):
        with _count_compiles() as compiles:
            t0 = time.perf_counter()
            state, loss_sum, correct_sum, seen = prog.epoch_exec(
                state, prog.arrays, prog.train_x, prog.train_y, jnp.asarray(epoch, jnp.int32))
            # A collective in a multi-process run: every process gathers, callbacks or not.
            loss_sum, correct_sum, seen, alive = prog.placement.to_member_order(
                distributed.to_host((loss_sum, correct_sum, seen, state.alive)))
            train_seconds = time.perf_counter() - t0
            row = history[epoch - 1]
            with np.errstate(invalid="ignore", divide="ignore"):
                row[:, 0], row[:, 1] = loss_sum / seen, correct_sum / seen
            if prog.val is not None:
                row[:, 2], row[:, 3], _ = prog.evaluate(state, prog.val)
            # A pruned member's epochs after its rung: NaN, as it trained none.
            row[((fate[..., 0] > 0) & (fate[..., 2] == 0)).any(0)] = np.nan
            seconds[epoch - 1] = time.perf_counter() - t0
        if prune is not None and epoch in prune.rungs:
            state = _rung(prog, prune, state, row, alive, fate[prune.rungs.index(epoch)])
            alive = prog.placement.to_member_order(distributed.to_host(state.alive))
        if checkpointer is not None:
            checkpointer.save(epoch, {"state": prog.placement.reorder(state, to_members=True),
                                      "history": history, "seconds": seconds,
                                      **({"fate": fate} if prune else {})},
                              final=epoch == spec.epochs)
        if callbacks:
            info = EpochInfo(
                epochs=spec.epochs, seconds=float(seconds[epoch - 1]), train_seconds=train_seconds,
                images_per_second=n_members * prog.program.n_train / train_seconds,
                compiles=compiles[0], resumed=resumed)
            rates = epoch_learning_rates(prog.members, epoch, prog.program.steps, spec.epochs)
            rows = [{**{f: metrics.finite_or_none(row[k, j])
                        for j, f in enumerate(HISTORY_FIELDS)},
                     "alive": bool(alive[k]), "learning_rate": rates[k]}
                    for k in range(n_members)]
            emit(callbacks, "on_epoch_end", group_index, epoch, rows, info)
    return FitResult(state, history, seconds, resumed, rung_records(fate, prune, n_members))


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
    results = member_results(prog, fitted.state, fitted.history, fitted.seconds, fitted.resumed,
                             splits, fitted.rungs)
    emit(callbacks, "on_group_end", group_index, results)
    return results
