"""The engine's hook points: how training reports to progress bars, files and loggers (no jax)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# A member's per-epoch numbers: ``on_epoch_end``'s row keys and the history arrays' columns.
HISTORY_FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc")


@dataclass(frozen=True)
class GroupStart:
    """Passed to ``on_group_start`` once the program is built (and a checkpoint restored)."""

    members: int  # real members (padding excluded)
    epochs: int  # epochs the group trains in total
    start_epoch: int  # first epoch this process will run (> 1 when resumed)
    strategy: str  # "vmap" or "sequential"
    devices: int
    compile_seconds: float


@dataclass(frozen=True)
class EpochInfo:
    """Passed to ``on_epoch_end`` with the members' metrics of that epoch."""

    epochs: int
    seconds: float  # wall time of the epoch, validation included
    train_seconds: float  # the training pass alone
    images_per_second: float  # training images of all real members per train second
    compiles: int  # XLA compilations during the epoch (0 after the first: tested)
    resumed: bool  # this group restored a checkpoint before training


class Callback:
    """No-op hooks to subclass (any object with some of the methods works; docs/architecture.md)."""

    def on_group_start(self, group_index: int, info: GroupStart) -> None:
        """Called once per group (``group_index``: its index), before its first epoch runs."""

    def on_epoch_end(self, group_index: int, epoch: int,
                     member_metrics: list[dict[str, Any]], info: EpochInfo) -> None:
        """After every (1-based) epoch; per real member: HISTORY_FIELDS, alive, learning_rate."""

    def on_group_end(self, group_index: int, results: list[Any]) -> None:
        """Called by ``train_grid`` after the evaluation, with the ``MemberResult`` s in order."""


def emit(callbacks: Sequence[Any], hook: str, *args: Any) -> None:
    """Calls ``hook(*args)`` on every callback that defines it, in order."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args)
