"""``python -m jaxmnist.data check|download [DIR] [--dataset NAME]``: verify or fetch files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from jaxmnist.data import sources


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxmnist.data",
        description="Check a dataset's four IDX files, or download them.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="verify the four IDX files and print label histograms")
    check.add_argument("dir", nargs="?",
                       help="folder with the files (default: the dataset's environment variable, "
                            f"${sources.ENV_DATA_DIR} for MNIST)")
    check.add_argument("--no-checksum", action="store_true", help="check the structure only")
    fetch = sub.add_parser("download", help="download the four official .gz files")
    fetch.add_argument("dir", nargs="?",
                       help="target folder (default: the dataset's environment variable if set, "
                            "else the download cache that source 'auto' reads: "
                            f"${sources.ENV_CACHE_DIR}/NAME, else ~/.cache/jaxmnist/NAME)")
    fetch.add_argument("--base-url", default=None,
                       help="mirror URL (default: the dataset's official location)")
    for p in (check, fetch):
        p.add_argument("--dataset", default="mnist",
                       help=f"one of {', '.join(sources.DATASETS)} (default mnist)")
    args = parser.parse_args(argv)

    try:
        ds = sources.dataset(args.dataset)
        if args.command == "download":
            target = args.dir or os.environ.get(ds.env) or sources.cache_dir(ds.name)
            for path in sources.download(target, base_url=args.base_url, dataset=ds.name):
                print(f"ok  {path}")
            print(f"export {ds.env}={Path(target).expanduser().resolve()}")
            return 0
        directory = args.dir or os.environ.get(ds.env) or next(
            (d for d in ds.system_dirs if Path(d).is_dir()), None)
        if not directory:
            parser.error(f"give a folder or set {ds.env}")
        for split in sources.SPLITS:
            x, y = sources.load_idx(directory, split, verify_checksum=not args.no_checksum,
                                    dataset=ds.name)
            counts = np.bincount(y, minlength=10).tolist()
            print(f"{split:5s} images {x.shape} {x.dtype}, labels {y.shape} {y.dtype}")
            official = list(ds.label_counts[split]) if ds.label_counts else None
            mark = ("" if official is None else " (official)" if counts == official
                    else f" (DIFFERS from official {official})")
            print(f"      label counts 0..9: {counts}{mark}")
    except sources.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0

