"""Orbax checkpoints of a group's grid state (``ckpt/group_<g>/``), to resume a run exactly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class GroupCheckpointer:
    """One group's checkpoints: the latest restored; every ``every`` epochs and the last saved."""

    def __init__(self, directory: str | os.PathLike, *, every: int = 1, keep: int = 2):
        import orbax.checkpoint as ocp

        path = Path(directory).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        self.manager = ocp.CheckpointManager(
            path, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
        self.every = max(int(every), 1)

    def restore(self, like: Any) -> tuple[int, Any] | None:
        """``(epoch, carry)`` of the newest checkpoint shaped like ``like``, or ``None``.

        A NumPy leaf saved shorter along its first axis (the history of a run since grown by
        epochs) comes back at ``like``'s length, the rest of it taken from ``like``.
        """
        import jax
        import numpy as np
        import orbax.checkpoint as ocp

        step = self.manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        saved = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

        def grown(leaf: Any, old: Any) -> Any:
            if isinstance(leaf, np.ndarray) and leaf.ndim and old.shape[1:] == leaf.shape[1:] \
                    and old.shape[0] < leaf.shape[0]:
                return np.concatenate([old, leaf[old.shape[0]:]])
            return old

        return step, jax.tree_util.tree_map(grown, like, saved)

    def save(self, epoch: int, carry: Any, *, final: bool = False) -> None:
        """Saves ``carry`` after ``epoch`` when due (always when ``final``) and waits for disk."""
        import orbax.checkpoint as ocp

        if final or epoch % self.every == 0:
            self.manager.save(epoch, args=ocp.args.StandardSave(carry), force=True)
            self.manager.wait_until_finished()
