"""What the benchmark scripts share: where the reference environment is, and the dataset laid
out where torchvision looks for it."""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def run_process(python: str, script: Path, cwd: Path, env: dict[str, str]) -> dict:
    """Run ``python script`` to completion: wall time, peak RSS of its largest process (MB),
    and its output (stdout and stderr together). Exits naming the script if it fails."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [python, str(script)], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        # wait4, not wait: the rusage of this child alone (ru_maxrss: its largest process).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if code != 0:
        sys.exit(f"{python} {script.name} exited with {code}:\n{text[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "output": text}
