"""Data loading: this package beside the book's torchvision FashionMNIST + DataLoader path.

Measures, each side in fresh processes, alternating the two sides, ``--repeats`` times:

- loading both splits into memory: ours cold (from the .gz files, decompressed and SHA-256
  verified, empty user cache), ours cached (a later process: the verified, decompressed copy),
  ours from the extracted IDX files, and torchvision's ``FashionMNIST(..., transform=ToTensor())``
  on those same extracted files;
- one full epoch of training batches (256, shuffled, float32 (B, 1, 28, 28) in [0, 1]): ours
  against ``DataLoader(batch_size=256, shuffle=True, num_workers=4)`` as d2l 0.17.6 builds it
  (its workers start afresh every epoch, as they do in the book).

The reference side runs with the interpreter of the reference environment (``--refenv``, made
by benchmarks/reference_env.sh), never imported here. Reports medians; the target is one epoch
of batches at least 100x faster than the reference.

    .venv/bin/python benchmarks/bench_data.py [--repeats 5] [--refenv DIR]   # $REFENV, else .refenv
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import add_refenv_argument, extract_dataset

OURS = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from softmax_regression import load_fashion_mnist
t1 = time.perf_counter()
data_dir, epochs = sys.argv[1], int(sys.argv[2])
train = load_fashion_mnist("train", data_dir, download=False)
test = load_fashion_mnist("test", data_dir, download=False)
t2 = time.perf_counter()
times = []
for e in range(epochs):
    n = 0
    t = time.perf_counter()
    for X, y in train.batches(256, shuffle=True, seed=e):
        n += X.shape[0]
    times.append(time.perf_counter() - t)
    assert n == 60000 and X.dtype == torch.float32 and X.shape[1:] == (1, 28, 28)
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "epoch_s": times,
                  "torch": torch.__version__, "threads": torch.get_num_threads()}))
"""

REFERENCE = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, torchvision
from torch.utils import data
from torchvision import transforms
t1 = time.perf_counter()
root, epochs = sys.argv[1], int(sys.argv[2])
trans = transforms.ToTensor()
train = torchvision.datasets.FashionMNIST(root=root, train=True, transform=trans, download=False)
test = torchvision.datasets.FashionMNIST(root=root, train=False, transform=trans, download=False)
t2 = time.perf_counter()
loader = data.DataLoader(train, 256, shuffle=True, num_workers=4)
times = []
for e in range(epochs):
    n = 0
    t = time.perf_counter()
    for X, y in loader:
        n += X.shape[0]
    times.append(time.perf_counter() - t)
    assert n == 60000 and X.dtype == torch.float32 and X.shape[1:] == (1, 28, 28)
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "epoch_s": times,
                  "torch": torch.__version__, "torchvision": torchvision.__version__}))
"""


def run(python: str, script: Path, args: list[str], env: dict[str, str], cwd: Path) -> dict:
    t = time.perf_counter()
    r = subprocess.run(
        [python, str(script), *args], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{python} {script.name} failed:\n{r.stderr}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt(s: float) -> str:
    return f"{s * 1e3:.0f} ms" if s < 10 else f"{s:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="our epochs per process")
    parser.add_argument("--ref-epochs", type=int, default=1, help="reference epochs per process")
    add_refenv_argument(parser)
    parser.add_argument("--json", help="also write the raw measurements here")
    args = parser.parse_args()

    ref_python = str(Path(args.refenv) / "bin" / "python")
    if not Path(ref_python).exists():
        sys.exit(f"no reference interpreter at {ref_python}; run benchmarks/reference_env.sh")

    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        raw = work / "root" / "FashionMNIST" / "raw"
        found = extract_dataset(raw)  # torchvision reads the extracted files
        (work / "ours.py").write_text(OURS)
        (work / "reference.py").write_text(REFERENCE)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("SOFTMAX_REGRESSION")}
        warm_cache = work / "cache-warm"
        env_warm = {**base_env, "XDG_CACHE_HOME": str(warm_cache)}
        gz_dir, epochs = str(found.directory), str(args.epochs)

        def ours(data_dir: str, n_epochs: str, env: dict[str, str]) -> dict:
            return run(sys.executable, work / "ours.py", [data_dir, n_epochs], env, work)

        def reference() -> dict:
            argv = [str(raw.parent.parent), str(args.ref_epochs)]
            return run(ref_python, work / "reference.py", argv, base_env, work)

        def fresh_cache(name: str) -> dict[str, str]:
            return {**base_env, "XDG_CACHE_HOME": str(work / name)}

        ours(gz_dir, "1", env_warm)  # fills the warm cache
        rows: dict[str, list[dict]] = {"cold": [], "cached": [], "raw": [], "ref": []}
        load_avg = [os.getloadavg()[0]]
        for i in range(args.repeats):
            rows["cold"].append(ours(gz_dir, "1", fresh_cache(f"cache-cold-{i}")))
            rows["ref"].append(reference())
            rows["cached"].append(ours(gz_dir, epochs, env_warm))
            rows["raw"].append(ours(str(raw), "1", fresh_cache(f"cache-raw-{i}")))
            print(f"repeat {i + 1}/{args.repeats} done", file=sys.stderr)
        load_avg.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(side: str, key: str) -> float:
        return median([r[key] for r in rows[side]])

    ours_epochs = [t for r in rows["cached"] for t in r["epoch_s"]]
    ref_epochs = [t for r in rows["ref"] for t in r["epoch_s"]]
    ours_epoch, ref_epoch = median(ours_epochs), median(ref_epochs)
    ratio = ref_epoch / ours_epoch
    print(
        f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; ours torch {rows['cached'][0]['torch']} "
        f"({rows['cached'][0]['threads']} threads), reference torch {rows['ref'][0]['torch']} + "
        f"torchvision {rows['ref'][0]['torchvision']}; load average {load_avg[0]:.1f} at start, "
        f"{load_avg[1]:.1f} at end. Medians of {args.repeats} repeats, sides alternated.\n"
    )
    print("| Load both splits (train + test) | in-process | process start to data ready |")
    print("|---|---|---|")
    for side, label in (
        ("cold", "ours, cold: Debian .gz, decompress + SHA-256, empty cache"),
        ("cached", "ours, cached: a later process (verified decompressed copy)"),
        ("raw", "ours, extracted IDX files + SHA-256, empty cache"),
        ("ref", "torchvision FashionMNIST + ToTensor, extracted IDX files"),
    ):
        ready = median([r["import_s"] + r["load_s"] for r in rows[side]])
        print(f"| {label} | {fmt(med(side, 'load_s'))} | {fmt(ready)} |")
    print("\n| One training epoch, 235 batches of 256, shuffled, float32 | median | samples |")
    print("|---|---|---|")
    print(f"| ours: `FashionMNIST.batches(256)` | {fmt(ours_epoch)} | {len(ours_epochs)} |")
    print(
        f"| torchvision: `DataLoader(batch_size=256, shuffle=True, num_workers=4)` | "
        f"{fmt(ref_epoch)} | {len(ref_epochs)} |"
    )
    verdict = "meets" if ratio >= 100 else "MISSES"
    print(f"\nEpoch of batches: {ratio:.0f}x faster than the reference ({verdict} the 100x goal).")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "load_avg": load_avg}, indent=2))


if __name__ == "__main__":
    main()
