"""How long the command line takes to answer what needs no training, as a whole process.

``--help``, a usage error (``train --lr -1``) and ``data where``, each run as a fresh process
with the same interpreter, once with the package's sources at ``--before`` (a git revision,
exported to a temporary directory) and once with the working tree's, beside ``python -c
pass`` (the floor: starting the interpreter). The four are interleaved round by round, so a
machine that gets busier or quieter affects them alike; the table gives the median and the
fastest of ``--rounds`` runs.

    .venv/bin/python benchmarks/bench_cli.py --before HEAD~3 [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "--help": ["--help"],
    "train --lr -1": ["train", "--lr", "-1"],
    "data where": ["data", "where"],
}


def export_sources(rev: str, into: Path) -> Path:
    """``src/`` of git revision ``rev``, written under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def timed(argv: list[str], src: Path | None) -> float:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    start = time.perf_counter()
    subprocess.run(argv, env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = export_sources(args.before, Path(tmp))
        after = ROOT / "src"
        cli = [sys.executable, "-m", "softmax_regression"]
        cases = {("python -c pass", ""): ([sys.executable, "-c", "pass"], None)}
        for name, argv in COMMANDS.items():
            cases[(name, "before")] = ([*cli, *argv], before)
            cases[(name, "after")] = ([*cli, *argv], after)
        times: dict[tuple[str, str], list[float]] = {k: [] for k in cases}
        for argv, src in cases.values():  # warm the file cache once
            timed(argv, src)
        for _ in range(args.rounds):
            for k, (argv, src) in cases.items():
                times[k].append(timed(argv, src))
    print(f"{args.rounds} rounds; load average {os.getloadavg()[0]:.1f} at the end; seconds")
    print(f"{'command':<16} {'sources':<8} {'median':>8} {'fastest':>8}")
    for (name, which), ts in times.items():
        print(f"{name:<16} {which or '-':<8} {statistics.median(ts):>8.3f} {min(ts):>8.3f}")


if __name__ == "__main__":
    main()
