"""The best-linear recipe: accuracy over seeds and the time of each run, in one go.

(a) In-process, data already in memory: :func:`run_best_linear` for each seed (choosing the
    weight decay on the seed's validation split, refitting on all 60,000 training images,
    then one test evaluation), timed from the call to its return. Target: every run under
    30 s; mean test accuracy at least 0.847 (stretch 0.850). Beside it, the same recipe in
    float64 for one seed (what float32 costs or saves).
(b) The whole ``softmax-regression train --recipe best-linear --seeds ...`` process: wall
    time from start to exit, and the per-seed numbers it wrote to its run directory.

    .venv/bin/python benchmarks/bench_best_linear.py [--seeds 0,1,2] [--no-process]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from softmax_regression import load_fashion_mnist
from softmax_regression.best_linear import BestLinearConfig, run_best_linear

ROOT = Path(__file__).resolve().parent.parent


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def in_process(seeds: list[int], float64_seed: int | None) -> list[dict]:
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    rows = []
    runs = [(s, "float32") for s in seeds]
    if float64_seed is not None:
        runs.append((float64_seed, "float64"))
    for seed, dtype in runs:
        before = load()
        t = time.perf_counter()
        r = run_best_linear(train, test, BestLinearConfig(seed=seed, dtype=dtype))
        wall = time.perf_counter() - t
        m = r.model
        rows.append(
            {
                "seed": seed,
                "dtype": dtype,
                "chosen_weight_decay": m.selection.chosen_weight_decay,
                "refit_weight_decay": m.weight_decay,
                "val_acc": r.metrics()["val_acc"],
                "train_acc": m.train_acc,
                "test_acc": r.test_acc,
                "select_s": m.select_seconds,
                "refit_s": m.refit_seconds,
                "total_s": wall,
                "evaluations": m.evaluations,
                "load": f"{before} -> {load()}",
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def whole_process(seeds: list[int]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "-m",
            "softmax_regression",
            "train",
            "--recipe",
            "best-linear",
            "--seeds",
            ",".join(map(str, seeds)),
            "--out",
            str(out),
            "--quiet",
        ]
        before = load()
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"train failed ({proc.returncode}): {proc.stderr.strip()}")
        summary = json.loads((out / "seeds.json").read_text())
        return {
            "command": " ".join(cmd[1:]),
            "wall_s": wall,
            "load": f"{before} -> {load()}",
            "per_seed": summary["per_seed"],
            "summary": summary["summary"],
            "stdout": proc.stdout,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--float64-seed", type=int, default=0, help="-1 to skip the float64 run")
    ap.add_argument("--no-process", action="store_true", help="skip (b), the whole process")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads by default"
    )
    rows = in_process(seeds, None if args.float64_seed < 0 else args.float64_seed)
    f32 = [r for r in rows if r["dtype"] == "float32"]
    print(
        "\n| seed | dtype | chosen wd (val) | refit wd | val acc | test acc | select | refit "
        "| total | passes | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['dtype']} | {r['chosen_weight_decay']:g} | "
            f"{r['refit_weight_decay']:.3g} | {r['val_acc']:.4f} | {r['test_acc']:.4f} | "
            f"{r['select_s']:.1f} s | {r['refit_s']:.1f} s | {r['total_s']:.1f} s | "
            f"{r['evaluations']} | {r['load']} |"
        )
    tests = [r["test_acc"] for r in f32]
    sd = statistics.stdev(tests) if len(tests) > 1 else 0.0
    print(
        f"\nfloat32 over seeds {args.seeds}: test acc {statistics.fmean(tests):.4f} ± {sd:.4f}; "
        f"slowest run {max(r['total_s'] for r in f32):.1f} s"
    )
    if not args.no_process:
        p = whole_process(seeds)
        print(f"\nwhole process: `{p['command']}`: {p['wall_s']:.1f} s (load {p['load']})")
        for row in p["per_seed"]:
            print(f"  seed {row['seed']}: test acc {row['test_acc']:.4f}, {row['seconds']:.1f} s")
        s = p["summary"]["test_acc"]
        print(f"  mean test acc {s['mean']:.4f} ± {s['std']:.4f}")


if __name__ == "__main__":
    main()
