"""Checkpoints: orbax save / restore-latest of a grid's state, and one member's final params.

Two kinds of files, two jobs:

* ``ckpt/group_<g>/`` holds orbax checkpoints of a whole group's training state (every member
  stacked on a leading grid axis). They exist to resume an interrupted run exactly.
* ``params/member_<k>.npz`` + ``params/member_<k>.json`` hold one member's final parameters and
  its model config as plain NumPy/JSON, so the web demo and the report can use a trained model
  without orbax (and the report without jax).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# Separator between nested-dict keys when a params tree is flattened into one .npz file.
_KEY_SEP = "/"


class CheckpointError(ValueError):
    """A checkpoint or exported member file is missing or unreadable."""


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}
    for name, value in tree.items():
        if _KEY_SEP in name:
            raise ValueError(f"parameter name {name!r} must not contain {_KEY_SEP!r}")
        path = f"{prefix}{_KEY_SEP}{name}" if prefix else name
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path))
        else:
            flat[path] = np.asarray(value)
    return flat


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split(_KEY_SEP)
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


def member_paths(run_dir: str | os.PathLike, member: int) -> tuple[Path, Path]:
    """Returns the ``(.npz, .json)`` paths of one exported member in a run directory."""
    base = Path(run_dir) / "params" / f"member_{member}"
    return base.with_suffix(".npz"), base.with_suffix(".json")


def export_member(
    run_dir: str | os.PathLike,
    member: int,
    model_cfg: Mapping[str, Any],
    params: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Writes one member's final params and model config under ``run_dir/params/``.

    Args:
        run_dir: The run directory.
        member: Member index within the run.
        model_cfg: The member's model config (JSON-serialisable).
        params: Nested dict of arrays (jax or numpy) for ONE member (no grid axis).
        extra: Optional JSON-serialisable metadata stored beside the config (e.g. test accuracy).

    Returns:
        The path of the written ``.npz`` file.
    """
    npz_path, json_path = member_paths(run_dir, member)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    # Write to temporary names then rename, so an interruption never leaves half a file that
    # a later load would mistake for a finished export.
    tmp_npz = npz_path.with_name(npz_path.stem + ".tmp.npz")
    np.savez(tmp_npz, **_flatten(params))
    os.replace(tmp_npz, npz_path)
    meta = {"member": member, "model": dict(model_cfg), **(dict(extra) if extra else {})}
    tmp_json = json_path.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(meta, indent=2))
    os.replace(tmp_json, json_path)
    return npz_path


def load_member(
    run_dir: str | os.PathLike, member: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads one exported member back.

    Args:
        run_dir: The run directory (the one holding ``params/``).
        member: Member index within the run.

    Returns:
        ``(model_cfg, params)`` with params as a nested dict of NumPy arrays.

    Raises:
        CheckpointError: When the member was never exported or its files are unreadable.
    """
    npz_path, json_path = member_paths(run_dir, member)
    if not npz_path.exists() or not json_path.exists():
        available = sorted(Path(run_dir, "params").glob("member_*.npz"))
        names = ", ".join(p.stem for p in available) or "none"
        raise CheckpointError(
            f"no exported params for member {member} in {Path(run_dir) / 'params'} "
            f"(available: {names}). Train the run to the end with `python -m jaxmnist.sweep`, "
            "or pick one of the available members."
        )
    try:
        meta = json.loads(json_path.read_text())
        with np.load(npz_path) as data:
            flat = {name: data[name] for name in data.files}
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot read exported member {member} from {npz_path}: {err}"
        ) from err
    return meta["model"], _unflatten(flat)


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
