"""Loggers on the engine's hooks: TensorBoard event files, and the user's own callbacks.

Every run writes tensorboardX events under ``<run>/tensorboard/``, one sub-run per member;
``--callback file.py:factory`` adds the user's own logger (docs/tensorboard.md). No jax.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jaxmnist import importspec, trees
from jaxmnist.checks import is_int
from jaxmnist.engine.hooks import Callback, EpochInfo, GroupStart

TENSORBOARD_DIR = "tensorboard"  # under the run directory
# metrics.jsonl field -> TensorBoard tag
SCALARS = {"train_loss": "loss/train", "train_acc": "accuracy/train", "val_loss": "loss/val",
           "val_acc": "accuracy/val"}
LEARNING_RATE = "learning_rate"
TEST_SCALARS = {"loss": "loss/test", "acc": "accuracy/test"}


def member_run_name(member: Mapping[str, Any]) -> str:
    """A member's TensorBoard sub-run (<= 80 safe characters): ``m003_adam_lr0.01_seed0``."""
    label = re.sub(r"[^A-Za-z0-9.\-]+", "_", str(member.get("label", ""))).strip("_")
    return f"m{int(member['member']):03d}" + (f"_{label[:75]}" if label else "")


class TensorBoardLog(Callback):
    """Writes each member's curves, learning rate and hyperparameters as TensorBoard events.

    ``config`` is the run's ``config.json``.
    """

    def __init__(self, run_dir: str | Path, config: Mapping[str, Any]):
        self.root = Path(run_dir) / TENSORBOARD_DIR
        self.members = {m["member"]: m for m in config["members"]}
        self.groups = {g["group"]: g["members"] for g in config["groups"]}
        self.writers: dict[int, Any] = {}
        self.last_epoch: dict[int, int] = {}

    def _writer(self, k: int) -> Any:
        if k not in self.writers:
            from tensorboardX import SummaryWriter

            self.writers[k] = SummaryWriter(str(self.root / member_run_name(self.members[k])),
                                            flush_secs=30)
        return self.writers[k]

    def on_group_start(self, group_index: int, info: GroupStart) -> None:
        """Opens the group's writers and records each member's hyperparameters."""
        from tensorboardX.summary import hparams

        metrics = [*SCALARS.values(), *TEST_SCALARS.values()]
        for k in self.groups[group_index]:
            # The member config as flat {"optim.learning_rate": 0.01, ...}; lists and per-layer
            # specs are compared as text.
            flat = {key: v if isinstance(v, bool | int | float | str) else json.dumps(v)
                    for key, v in trees.flatten(self.members[k]["config"]).items()
                    if v is not None and v != {}}
            exp, ssi, _ = hparams(flat, dict.fromkeys(metrics))
            writer = self._writer(k)
            writer.file_writer.add_summary(exp)
            writer.file_writer.add_summary(ssi)

    def on_epoch_end(self, group_index: int, epoch: int, member_metrics: list[dict[str, Any]],
                     info: EpochInfo) -> None:
        """One scalar per metric (skipping ``None``: no validation set, or not finite)."""
        for k, metrics in zip(self.groups[group_index], member_metrics, strict=True):
            writer = self._writer(k)
            for field, tag in SCALARS.items():
                if metrics.get(field) is not None:
                    writer.add_scalar(tag, float(metrics[field]), epoch)
            # The rate the optimizer used (schedules included), else the config's number (a
            # schedule's base or peak).
            lr = metrics.get("learning_rate")
            if lr is None:
                lr = self.members[k]["config"].get("optim", {}).get("learning_rate")
                lr = float(lr) if is_int(lr) or isinstance(lr, float) else None
            if lr is not None:
                writer.add_scalar(LEARNING_RATE, lr, epoch)
            writer.flush()
            self.last_epoch[k] = epoch

    def on_group_end(self, group_index: int, results: list[Any]) -> None:
        """Test loss and accuracy at the last epoch; closes the group's writers."""
        from tensorboardX.summary import hparams

        for k, result in zip(self.groups[group_index], results, strict=True):
            writer = self._writer(k)
            step = self.last_epoch.get(k, len(result.history))
            for field, tag in TEST_SCALARS.items():
                value = getattr(result, f"test_{field}")
                if value is not None and math.isfinite(value):
                    writer.add_scalar(tag, float(value), step)
            _, _, sei = hparams({}, {})
            writer.file_writer.add_summary(sei)
            writer.close()
            del self.writers[k]

    def close(self) -> None:
        """Closes writers left open (a group that failed)."""
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


class CallbackError(ValueError):
    """A ``--callback`` spec cannot be imported or called; the message says why."""


def load_callback(spec: str) -> Callable[..., Any]:
    """The factory ``"package.module:factory"`` or ``"path/to/file.py:factory"`` names."""
    module_part, _, attr = spec.rpartition(":")
    if not module_part or not attr:
        raise CallbackError(f"--callback {spec!r}: use 'package.module:factory' or "
                            "'path/to/file.py:factory'")
    try:
        module = importspec.import_module_part(module_part, "jaxmnist_callback")
    except FileNotFoundError as err:
        raise CallbackError(f"callback file {module_part!r} does not exist") from err
    except Exception as err:  # noqa: BLE001 - user code: report it, do not crash the CLI
        raise CallbackError(f"--callback {spec!r}: importing {module_part!r} failed: "
                            f"{type(err).__name__}: {err}") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CallbackError(f"--callback {spec!r}: {module_part!r} has no callable {attr!r}")
    return factory
