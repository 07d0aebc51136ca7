"""A trained group as arrays, one result per member (files: :mod:`jaxmnist.runs.results`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmnist import models, schema
from jaxmnist.engine import distributed
from jaxmnist.engine.program import GroupProgram, TrainState, pad_eval, per_model

GRAD_HIST_IMAGES = 512  # training images of the final gradient histograms
PROBE_IMAGES = 25  # test images whose class probabilities are kept


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
    # Training images of the epochs run (sequential: the member-epochs trained, skipped ones
    # excluded; vmap: every member's every epoch) / train_seconds.
    images_per_second: float | None
    resumed: bool
    epoch_programs: int = 1  # grid sizes compiled (vmap pruning: one more per smaller size)


@dataclass(frozen=True)
class MemberResult:
    """One trained member as arrays: what the engine measured, nothing shaped for a file."""

    member: schema.Member
    alive: bool  # False: a step produced a non-finite loss or values (frozen since)
    diverged_epoch: int | None  # the epoch of that step; None while alive
    epochs_trained: float  # steps taken while alive / steps per epoch (pruned: up to its rung)
    rungs: list[dict[str, Any]]  # pruning rungs that ranked it (jaxmnist.engine.fit.rung_records)
    history: np.ndarray  # [epochs, len(HISTORY_FIELDS)] float32; NaN = not finite / no val split
    epoch_seconds: np.ndarray  # [epochs] wall seconds of the group's epochs
    has_val: bool  # the splits had a validation set (the val columns are meaningful)
    test_loss: float  # NaN when not finite
    test_acc: float
    test_pred: np.ndarray  # [n_test] int32 predicted classes
    test_probs: np.ndarray  # [<= PROBE_IMAGES, 10] class probabilities of the first test images
    params: Any  # final parameters as evaluated (optim.eval_params), NumPy leaves, no grid axis
    model_state: Any  # final non-parameter variables (BatchNorm statistics; {} for the zoo)
    weights: dict[str, np.ndarray]  # {layer path: final weight array}
    grads: dict[str, np.ndarray]  # {layer path: data-loss gradient on GRAD_HIST_IMAGES images}
    param_count: int
    group: GroupStats
    kept_epoch: int | None = None  # restore_best: the epoch it ends with (test_* are that epoch's)
    last_test: tuple[float, float] | None = None  # restore_best: the last epoch's (loss, acc)


@dataclass
class FitResult:
    """The state after the last epoch and what the loop measured."""

    state: TrainState
    history: np.ndarray  # [epochs, padded G, len(HISTORY_FIELDS)] float32, member order
    seconds: np.ndarray  # [epochs] wall seconds per epoch
    resumed: bool
    rungs: list[list[dict[str, Any]]]  # per member, its pruning rungs (rung_records)
    kept_epochs: np.ndarray | None = None  # restore_best: per member its best epoch (0: none)
    kept: Any = None  # restore_best: those epochs' evaluated variables (host, member order)


def member_results(prog: GroupProgram, fitted: FitResult, splits: Any) -> list[MemberResult]:
    """Evaluates every member's final state (and the fit loop's history): one result each.

    With ``restore_best``, the kept epochs' variables are evaluated and exported instead.
    """
    state, seconds, kept = fitted.state, fitted.seconds, fitted.kept
    variables = prog.eval_variables(state) if kept is None else prog.to_grid(kept)
    test_loss, test_acc, test_pred = prog.evaluate(state, prog.test, variables=variables)
    last = prog.evaluate(state, prog.test)[:2] if kept is not None else None
    n_test, n_train = splits.test_x.shape[0], prog.program.n_train
    n_probe, n_grad = min(PROBE_IMAGES, n_test), min(GRAD_HIST_IMAGES, n_train)
    probe_inputs = [distributed.put(a, prog.placement.replicated) for a in (
        splits.test_x[:n_probe], splits.train_x[:n_grad],
        np.asarray(splits.train_y[:n_grad], np.int32))]
    # What is evaluated is what is exported (the kept epoch's with restore_best).
    probs, grads = prog.program.probe_fn(variables, prog.arrays, *probe_inputs)
    # One gather of everything the results need (every process gets the whole grid).
    probs, (params, model_state), grads, alive, diverged, steps = prog.placement.to_member_order(
        distributed.to_host((probs, variables, grads, state.alive, state.diverged_epoch,
                             state.steps)))
    total, n = float(seconds.sum()), len(prog.members)
    stats = GroupStats(
        members=n, padded_members=prog.placement.padded, devices=prog.placement.devices,
        processes=jax.process_count(), strategy=prog.placement.strategy,
        compile_seconds=prog.compile_seconds, train_seconds=total,
        images_per_second=n_train * (n * prog.spec.epochs if prog.placement.strategy == "vmap"
                                     else steps[:n].sum() / prog.program.steps) / total
        if total else None,
        resumed=fitted.resumed, epoch_programs=prog.epoch_programs)
    names = prog.program.model.weight_names
    param_count = models.param_count(jax.tree_util.tree_map(lambda a: a[0], params))

    def layers(tree: Any, k: int) -> dict[str, np.ndarray]:
        return {path.rpartition("/")[0]: np.asarray(leaf[k])
                for path, leaf in models.layer_paths(tree).items()
                if models.is_weight_path(path, names)}

    def member(tree: Any, k: int) -> Any:
        return jax.tree_util.tree_map(lambda a: a[k], tree)

    return [
        MemberResult(
            member=m, alive=bool(alive[k]), diverged_epoch=int(diverged[k]) or None,
            epochs_trained=int(steps[k]) / prog.program.steps, rungs=fitted.rungs[k],
            history=np.asarray(fitted.history[:, k, :]), epoch_seconds=np.asarray(seconds),
            has_val=prog.val is not None, test_loss=float(test_loss[k]),
            test_acc=float(test_acc[k]), test_pred=np.asarray(test_pred[k, :n_test]),
            test_probs=np.asarray(probs[k]), params=member(params, k),
            model_state=member(model_state, k), weights=layers(params, k),
            grads=layers(grads, k), param_count=param_count, group=stats,
            kept_epoch=int(fitted.kept_epochs[k]) if kept is not None else None,
            last_test=(float(last[0][k]), float(last[1][k])) if last is not None else None)
        for k, m in enumerate(prog.members)]


def predict_classes(model_cfg: Mapping[str, Any], params: Any, state: Any,
                    images: np.ndarray) -> np.ndarray:
    """One member's ``[N]`` int32 classes of uint8 ``images`` (eval mode, no grid axis)."""
    predict = per_model(models.build(model_cfg), "predict", lambda m: jax.jit(
        lambda p, s, x: jnp.argmax(m.predict(p, s, x), -1).astype(jnp.int32)))
    x, _, _ = pad_eval(np.asarray(images), np.zeros(len(images), np.int32))
    return np.concatenate([np.asarray(predict(params, state, b)) for b in x])[: len(images)]
