"""What the benchmark scripts share: where the reference environment is, and the dataset laid
out where torchvision looks for it."""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
from pathlib import Path

from softmax_regression.data import locate
from softmax_regression.data.sources import Found

ROOT = Path(__file__).resolve().parent.parent


def add_refenv_argument(parser: argparse.ArgumentParser) -> None:
    """``--refenv DIR``: the book's environment (d2l 0.17.6 + torchvision) that
    ``benchmarks/reference_env.sh`` makes; default $REFENV, else ``.refenv``."""
    parser.add_argument("--refenv", default=os.environ.get("REFENV", str(ROOT / ".refenv")))


def extract_dataset(raw: Path) -> Found:
    """The four IDX files, decompressed, where torchvision looks for them (no download).

    Returns where they were found."""
    found = locate()
    raw.mkdir(parents=True)
    for stem, path in found.files.items():
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as src, open(raw / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return found
