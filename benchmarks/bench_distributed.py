"""One process against two ranks (torch.distributed, gloo on the loopback), in one run.

(a) Data-parallel training of the book's recipe: ``softmax-regression train`` in one
    process and under ``torchrun --nproc-per-node 2``; steps per second from the epochs'
    own seconds in history.json (each epoch's 235 steps plus its test accuracy), median
    over the epochs of ``--repeats`` runs of each, alternating.
(b) docs/experiments.md's 12-run sweep (``--lr 0.03,0.1,0.3 --batch-size 64,256 --epochs 10
    --seeds 0,1``), whole process, in one process and with ``--nproc 2`` (its runs spread
    over the ranks), alternating.

    .venv/bin/python benchmarks/bench_distributed.py [--repeats 3] [--epochs 5] [--no-sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS_PER_EPOCH = 235
SWEEP = ["--lr", "0.03,0.1,0.3", "--batch-size", "64,256", "--epochs", "10", "--seeds", "0,1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    return {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}


def train(ranks: int, epochs: int, out: Path) -> list[float]:
    cli = ["-m", "softmax_regression", "train", "--epochs", str(epochs), "--quiet"]
    cli += ["--no-plots", "--out", str(out)]
    if ranks == 1:
        cmd = [sys.executable, *cli]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks)]
        cmd += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", *cli]
    subprocess.run(cmd, check=True, env=env(), capture_output=True, timeout=1800)
    epochs_ = json.loads((out / "history.json").read_text())["epochs"]
    return [STEPS_PER_EPOCH / e["seconds"] for e in epochs_]


def sweep(ranks: int, out: Path) -> float:
    cmd = [sys.executable, "-m", "softmax_regression", "sweep", *SWEEP, "--quiet"]
    cmd += ["--out", str(out)] + (["--nproc", str(ranks)] if ranks > 1 else [])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env(), capture_output=True, timeout=3600)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--no-sweep", action="store_true")
    args = parser.parse_args()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        rates: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.repeats):
            for ranks in (1, 2):
                rates[ranks] += train(ranks, args.epochs, Path(tmp) / f"t{ranks}-{r}")
        for ranks, v in rates.items():
            print(
                f"(a) train, {ranks} rank{'s' if ranks > 1 else ''}: median "
                f"{statistics.median(v):.0f} steps/s (min {min(v):.0f}, max {max(v):.0f}; "
                f"{len(v)} epochs)"
            )
        if not args.no_sweep:
            times: dict[int, list[float]] = {1: [], 2: []}
            for r in range(args.repeats):
                for ranks in (1, 2):
                    times[ranks].append(sweep(ranks, Path(tmp) / f"s{ranks}-{r}"))
            for ranks, v in times.items():
                print(
                    f"(b) 12-run sweep, {ranks} rank{'s' if ranks > 1 else ''}: median "
                    f"{statistics.median(v):.1f} s (runs: {', '.join(f'{t:.1f}' for t in v)})"
                )
            speedup = statistics.median(times[1]) / statistics.median(times[2])
            print(f"    speed-up with 2 ranks: {speedup:.2f}x")
    print(f"load at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
