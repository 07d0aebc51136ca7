"""Checkpoints: orbax save / restore-latest of a group's grid state.

``ckpt/group_<g>/`` holds orbax checkpoints of a whole group's training state (every member
stacked on a leading grid axis). They exist to resume an interrupted run exactly. A member's
final parameters for the web demo and the report are plain NumPy files owned by
:mod:`jaxmnist.runs.rundir` (``export_member`` / ``load_member``).

Multi-process runs (``jaxmnist.engine.distributed``): the state holds global arrays sharded over
every process's devices, and orbax saves and restores them in its multi-process mode with no other
setting: every process calls :func:`make_manager`, :func:`save` and :func:`restore_latest` at the
same points (they synchronise), and each writes its own shards (``ocdbt.process_<i>/``) into the one
directory, which must therefore be one that every host shares.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------
# orbax: the grid state of one group, saved every N epochs, restored from the latest.
# --------------------------------------------------------------------------------------------


def make_manager(directory: str | os.PathLike, *, keep: int = 2):
    """Builds an orbax ``CheckpointManager`` over an absolute directory.

    Args:
        directory: Where the checkpoints of one group live; made absolute (orbax needs that).
        keep: How many of the latest checkpoints to keep on disk.

    Returns:
        An ``orbax.checkpoint.CheckpointManager``.
    """
    import orbax.checkpoint as ocp

    path = Path(directory).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(path, options=options)


def save(manager, step: int, state: Any) -> None:
    """Saves ``state`` (a pytree of arrays) as checkpoint ``step`` and waits until it is on disk.

    Waiting keeps the guarantee simple: once an epoch is reported, its checkpoint is complete,
    so killing the process afterwards never loses it.
    """
    import orbax.checkpoint as ocp

    manager.save(step, args=ocp.args.StandardSave(state), force=True)
    manager.wait_until_finished()


def restore_latest(manager, like: Any) -> tuple[int, Any] | None:
    """Restores the newest checkpoint, shaped like ``like``; ``None`` when there is none.

    Args:
        manager: The group's ``CheckpointManager``.
        like: A pytree with the target structure, shapes, dtypes and shardings.

    Returns:
        ``(step, state)`` or ``None``.
    """
    import jax
    import orbax.checkpoint as ocp

    step = manager.latest_step()
    if step is None:
        return None
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return step, state


class GroupCheckpointer:
    """The fit loop's checkpoints of one group: restore the latest, save every N epochs.

    Args:
        directory: The group's checkpoint folder (``ckpt/group_<g>`` in a run directory).
        every: Save after every this many epochs; the final epoch is always saved.
        keep: How many of the latest checkpoints to keep on disk.
    """

    def __init__(self, directory: str | os.PathLike, *, every: int = 1, keep: int = 2):
        self.manager = make_manager(directory, keep=keep)
        self.every = max(int(every), 1)

    def restore(self, like: Any) -> tuple[int, Any] | None:
        """``(epoch, carry)`` of the newest checkpoint shaped like ``like``, or ``None``."""
        return restore_latest(self.manager, like)

    def save(self, epoch: int, carry: Any, *, final: bool = False) -> None:
        """Saves ``carry`` after ``epoch`` when it is due (and always when ``final``)."""
        if final or epoch % self.every == 0:
            save(self.manager, epoch, carry)
