"""``python -m jaxmnist.report RUN_DIR``: regenerates a run's tables and figures (no jax)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from jaxmnist.runs.runview import ReportError
from jaxmnist.runs.tables import generate


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxmnist.report",
        description="Regenerate a run directory's tables and figures from its files "
        "(no training, no jax).")
    parser.add_argument("run_dir", help="a run directory written by python -m jaxmnist.sweep")
    args = parser.parse_args(argv)
    # Warnings (a damaged metrics line, an unreadable env.json) as one line each.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        written = generate(args.run_dir)
    except ReportError as err:
        print(f"jaxmnist.report: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        print(f"jaxmnist.report: cannot write{where}: {err.strerror or err}; the run's own "
              "files are untouched. Fix the cause (free space, permissions) and run the report "
              "again.", file=sys.stderr)
        return 1
    tables = sum(1 for p in written if p.parent.name == "tables")
    print(f"wrote {tables} table files to {Path(args.run_dir) / 'tables'} and "
          f"{len(written) - tables} figures to {Path(args.run_dir) / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
