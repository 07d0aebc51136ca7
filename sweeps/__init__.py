"""The studies that ship with jaxmnist: ``jaxmnist.sweeps.<name>``, run as ``python -m
jaxmnist.sweep <name>``.

This folder is the top-level ``sweeps/`` of the repository; pyproject.toml maps it to the
package ``jaxmnist.sweeps`` (``package-dir``), so a wheel and an editable install carry it.
Each module defines ``get_config()``; ``python -m jaxmnist.sweep --list`` lists them.
"""
