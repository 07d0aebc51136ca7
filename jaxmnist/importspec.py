"""Imports the module half of a user's ``"module:attr"`` spec (models, callbacks).

One loader for both forms a user may write: ``path/to/file.py`` (executed once as a fresh module)
or ``package.module`` (imported, with the working folder on ``sys.path`` because ``python -m``
leaves it out). Standard library only, so jax-free callers (loggers) can use it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


@functools.cache
def _load_file(path: str, prefix: str) -> ModuleType:
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise FileNotFoundError(path)
    module_name = f"{prefix}_{abs(hash(str(file)))}_{file.stem}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)  # a failed import leaves nothing half-made behind
        raise
    return module


def import_module_part(module_part: str, prefix: str) -> ModuleType:
    """Imports ``path/to/file.py`` or ``package.module``.

    Args:
        module_part: The text before the colon of a ``"module:attr"`` spec.
        prefix: Start of the module name a ``.py`` file is registered under in ``sys.modules``.

    Returns:
        The module (a file is executed once per process; later calls return the same module).

    Raises:
        FileNotFoundError: A ``.py`` path that is not a file.
        Exception: Whatever the user's module raises while importing (callers report it).
    """
    if module_part.endswith(".py"):
        return _load_file(module_part, prefix)
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    return importlib.import_module(module_part)
