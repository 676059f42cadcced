"""Data of your own: an image folder's first and cached loads, and a large .npy feature set's
load time and peak memory.

1. Fashion-MNIST exported as a PNG image folder (70,000 files, ``data export --format
   folder``, timed), then loaded through ``DataSpec`` in fresh processes, ``--repeats`` times:
   first load (an empty folder cache: every PNG decoded, in worker processes) and cached load
   (a later process: the listing checked, the cached arrays mapped and SHA-256 verified).
   Checks that the pixels and labels are those of ``load_fashion_mnist``.
2. A ``--rows`` x ``--dim`` float32 ``X.npy`` + ``y.npy`` directory (default 1,000,000 x 512,
   2.05 GB), loaded in a fresh process that then does what training does to it: the chunked
   standardisation pass over every training row, then one epoch of ``fit`` (SGD, batch 256,
   ``--standardize``). Reports the load time, each pass's time and the process's peak RSS
   (its own ``VmHWM``) relative to the array's size; the target is within 1.3x.
   A second process that only imports torch and the package gives the fixed part of the RSS.
   (Not ``wait4``'s ``ru_maxrss``: a child started by vfork, as subprocess does, inherits
   this process's high-water mark, and this process wrote the 2 GB file.)

    .venv/bin/python benchmarks/bench_own_data.py [--repeats 3] [--rows 1000000 --dim 512]
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

import numpy as np

FOLDER = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from softmax_regression.data import DataSpec
t1 = time.perf_counter()
d = DataSpec.parse(sys.argv[1]).load()
t2 = time.perf_counter()
from softmax_regression.data import load_fashion_mnist
ok = True
for got, ref in zip((d.train, d.test), (load_fashion_mnist("train"), load_fashion_mnist("test"))):
    names = [ref.classes[k] for k in ref.labels.tolist()]
    order = sorted(range(len(names)), key=lambda i: (names[i], i))
    ok &= torch.equal(got.inputs, ref.inputs[torch.tensor(order)])
    ok &= [got.classes[k] for k in got.labels.tolist()] == [names[i] for i in order]
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "n": len(d.train) + len(d.test),
                  "equal": bool(ok), "notes": d.notes}))
"""

FEATURES = r"""
import json, sys, time

def peak_rss():  # this process's own high-water mark (kB in /proc/self/status)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

t0 = time.perf_counter()
import torch
from softmax_regression.data import DataSpec
from softmax_regression.preprocessing import standardizer
t1 = time.perf_counter()
if sys.argv[2] == "import-only":
    print(json.dumps({"import_s": t1 - t0, "peak_rss": peak_rss()}))
    sys.exit()
d = DataSpec.parse(sys.argv[1]).load()
t2 = time.perf_counter()
after_load = peak_rss()
pre = standardizer(d.train)
t3 = time.perf_counter()
out = {"peak_after_load": after_load, "peak_after_stats": peak_rss(),
       "import_s": t1 - t0, "load_s": t2 - t1, "stats_s": t3 - t2, "notes": d.notes,
       "train": len(d.train), "test": len(d.test),
       "shares_storage": d.train.inputs.data_ptr() == d.test.inputs.data_ptr()}
try:
    from softmax_regression.config import TrainConfig
    from softmax_regression.train import fit
    config = TrainConfig(epochs=1, standardize=True, device="cpu")
    t4 = time.perf_counter()
    result = fit(config, d.train, d.test)
    out["fit_s"] = time.perf_counter() - t4
    out["fit"] = "1 epoch of fit (SGD, batch 256, standardize)"
except Exception as e:  # the trainer may not take this data yet: the passes above still count
    out["fit"] = f"not run: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
out["peak_rss"] = peak_rss()
print(json.dumps(out))
"""


def run_process(python: str, script: Path, cwd: Path, env: dict[str, str], args: list[str]) -> dict:
    """``python script *args``: wall time, peak RSS of the process (MB) and its output."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [python, str(script), *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{script.name} failed:\n{text[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "output": text}


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def write_features(directory: Path, rows: int, dim: int) -> int:
    """X.npy (float32, written in chunks: never whole in memory) and y.npy (10 classes)."""
    directory.mkdir(parents=True)
    x = np.lib.format.open_memmap(directory / "X.npy", "w+", np.float32, (rows, dim))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, dim)).astype(np.float32)
    y = rng.integers(0, 10, size=rows)
    step = 65536
    for lo in range(0, rows, step):
        hi = min(lo + step, rows)
        x[lo:hi] = centres[y[lo:hi]] + rng.standard_normal((hi - lo, dim), np.float32)
    x.flush()
    del x
    np.save(directory / "y.npy", y)
    return rows * dim * 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--skip-folder", action="store_true")
    parser.add_argument("--skip-features", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-own-data-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOFTMAX_REGRESSION")}
    load_avg = [os.getloadavg()[0]]
    try:
        (work / "folder.py").write_text(FOLDER)
        (work / "features.py").write_text(FEATURES)
        if not args.skip_folder:
            from softmax_regression.data.export import export_fashion_mnist

            t = time.perf_counter()
            folder = export_fashion_mnist(work / "export", "folder")
            export_s = time.perf_counter() - t
            cold, warm = [], []
            for i in range(args.repeats):
                cache = {**env, "XDG_CACHE_HOME": str(work / f"cache-{i}")}
                for rows in (cold, warm):
                    r = run_process(sys.executable, work / "folder.py", work, cache, [str(folder)])
                    rows.append({**last_json(r["output"]), "process_s": r["wall_s"]})
                print(f"folder repeat {i + 1}/{args.repeats} done", file=sys.stderr)
            assert all(r["equal"] for r in cold + warm), "pixels or labels differ"
            print(f"\nImage folder: {cold[0]['n']:,} PNGs, written in {export_s:.1f} s")
            print("| load (train + test) | in-process, median | min-max | process |")
            print("|---|---|---|---|")
            for label, rows in (("first (decode)", cold), ("cached", warm)):
                xs = [r["load_s"] for r in rows]
                print(
                    f"| {label} | {statistics.median(xs):.2f} s | {min(xs):.2f}-{max(xs):.2f} s "
                    f"| {statistics.median(r['process_s'] for r in rows):.2f} s |"
                )
            print("pixels and labels equal to load_fashion_mnist's: yes")
        if not args.skip_features:
            t = time.perf_counter()
            nbytes = write_features(work / "features", args.rows, args.dim)
            print(
                f"\nFeatures: {args.rows:,} x {args.dim} float32 = {nbytes / 1e9:.2f} GB "
                f"(written in {time.perf_counter() - t:.1f} s)"
            )
            base = run_process(
                sys.executable, work / "features.py", work, env, [".", "import-only"]
            )
            r = run_process(
                sys.executable, work / "features.py", work, env, [str(work / "features"), "run"]
            )
            out = last_json(r["output"])
            peak = out["peak_rss"]
            fixed = last_json(base["output"])["peak_rss"]
            print(
                f"load {out['load_s']:.2f} s; standardisation pass {out['stats_s']:.2f} s; "
                f"{out['fit']}" + (f" {out['fit_s']:.1f} s" if "fit_s" in out else "")
            )
            print(
                f"train {out['train']:,} + test {out['test']:,} rows, one storage: "
                f"{out['shares_storage']}; notes: {out['notes']}"
            )
            print(
                f"peak RSS after loading {out['peak_after_load'] / 1e9:.2f} GB, after the "
                f"standardisation pass {out['peak_after_stats'] / 1e9:.2f} GB"
            )
            print(
                f"peak RSS {peak / 1e9:.2f} GB = {peak / nbytes:.2f}x the array "
                f"(imports alone {fixed / 1e6:.0f} MB; without them {(peak - fixed) / nbytes:.2f}x)"
            )
        load_avg.append(os.getloadavg()[0])
        print(
            f"\n{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"load average {load_avg[0]:.1f} at start, {load_avg[-1]:.1f} at end"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
