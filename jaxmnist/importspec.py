"""Imports the module half of a user's ``"module:attr"`` spec (models, callbacks).

``package.module`` is imported with the working folder on ``sys.path`` (``python -m`` omits it).
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
    """Imports ``path/to/file.py`` (once per process, as ``<prefix>_...``) or ``package.module``.

    Raises ``FileNotFoundError`` for a missing ``.py``, and whatever the user's module raises.
    """
    if module_part.endswith(".py"):
        return _load_file(module_part, prefix)
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    return importlib.import_module(module_part)


def studies_folder() -> Path | None:
    """The folder of the shipped studies and their published numbers, or None if not installed.

    A checkout run in place reads its own ``sweeps/`` first, whichever checkout is installed; a
    wheel maps the package ``jaxmnist.sweeps`` to ``jaxmnist/sweeps/``.
    """
    import jaxmnist

    root = Path(jaxmnist.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "sweeps" / "__init__.py").is_file():
        return root / "sweeps"
    spec = importlib.util.find_spec("jaxmnist.sweeps")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
