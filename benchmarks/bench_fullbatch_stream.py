"""Bigger than memory, full batch: ``LogisticRegression.fit`` on a memory-mapped file against
the same fit on the array read into memory.

Writes one ``.npy`` file of ``--gigabytes`` of float32 features (``--width`` wide,
``--classes`` classes; class means plus noise) and its labels, then, each in a fresh process:

- **memory** (unless ``--no-memory``): ``np.load`` the file whole, then the fit;
- **memmap**: ``np.load(..., mmap_mode="r")``, then the fit, reading the rows block by block;
  with ``--cap-gigabytes`` inside a cgroup v1 memory cgroup capped there (page cache
  included; needs root), so that the page cache cannot hold the file.

Both fits are float32, ``tol=0`` and ``max_iter=--iterations``: the same number of L-BFGS
iterations, stated as such (not a converged fit); with ``--tol T`` (scikit-learn's default
is 1e-4) a fit that stops when converged, ``--iterations`` its ``max_iter``. Reported per
run: the fit's seconds, its passes over the rows (evaluations and statistics), MB/s (passes x
file size / seconds), the process's peak resident memory (VmHWM: mapped file pages count
there too) and, under a cap, the cgroup's peak. The file is deleted at the end unless ``--keep``.

``--folds K`` measures instead how ``LogisticRegressionCV`` should read a fold of a streamed
source: one evaluation of the objective on fold 0's training rows of ``K`` folds, as an index
into the file (what it does) and as the whole file with sample weights zero on the held-out
rows (the alternative), each the median of 5 passes, the file in the page cache.

    .venv/bin/python benchmarks/bench_fullbatch_stream.py --dir /tmp/fb --gigabytes 1
    .venv/bin/python benchmarks/bench_fullbatch_stream.py --dir /tmp/fb --gigabytes 9 \\
        --width 1024 --classes 100 --cap-gigabytes 2.5 --no-memory --iterations 3
    .venv/bin/python benchmarks/bench_fullbatch_stream.py --dir /tmp/fb --gigabytes 9 \\
        --width 1024 --classes 100 --cap-gigabytes 2.5 --no-memory --tol 1e-4 --iterations 100
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")

FIT = r"""
import json, sys, time
import numpy as np
from softmax_regression import linear_loss
from softmax_regression.sklearn import LogisticRegression

path, labels, mode, iterations = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tol = float(sys.argv[5])
passes = [0]
for name in ("iterate",):
    for cls in (linear_loss.DenseRows, linear_loss.StreamedRows):
        original = cls.__dict__[name]
        def counted(self, *a, _original=original, **k):
            passes[0] += 1
            yield from _original(self, *a, **k)
        setattr(cls, name, counted)
t0 = time.perf_counter()
x = np.load(path, mmap_mode="r" if mode == "memmap" else None)
y = np.load(labels)
load = time.perf_counter() - t0
t0 = time.perf_counter()
est = LogisticRegression(device="cpu", tol=tol, max_iter=iterations).fit(x, y)
seconds = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"mode": mode, "load_seconds": load, "seconds": seconds,
                  "passes": passes[0], "iterations": int(est.n_iter_[0]),
                  "converged": int(est.n_iter_[0]) < iterations,
                  "bytes": int(x.nbytes), "peak_rss": int(hwm) * 1024,
                  "coef_sum": float(np.abs(est.coef_).sum())}))
"""


FOLDS = r"""
import json, sys, time
import numpy as np, torch
from softmax_regression.data import stream
from softmax_regression.linear_loss import SoftmaxLoss, StreamedRows

path, labels, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
source = stream.RowSource.from_arrays(np.load(path, mmap_mode="r"), np.load(labels))
y = torch.from_numpy(source.own_labels().astype(np.int64))
n, classes = len(y), int(y.max()) + 1
held = np.zeros(n, bool)
held[: n // k] = True  # fold 0 held out
index = np.flatnonzero(~held)
ways = {
    "index": SoftmaxLoss(StreamedRows(source, index), y[index], 1e-4, block_rows=1024),
    "zero weights": SoftmaxLoss(StreamedRows(source), y, 1e-4, block_rows=1024,
                                sample_weight=torch.from_numpy((~held).astype(np.float32))),
}
w = torch.zeros(classes, source.width)
b = torch.zeros(classes)
out = {}
for name, loss in ways.items():
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        value = float(loss.loss_gradient(w, b)[0])
        times.append(time.perf_counter() - t0)
    out[name] = {"seconds": sorted(times)[2], "objective": value}
print(json.dumps(out))
"""


def write(directory: Path, gigabytes: float, width: int, classes: int) -> tuple[Path, Path]:
    """The features file (written in 256 MB pieces, then dropped from the page cache) and its
    labels."""
    rows = int(gigabytes * 2**30) // (4 * width)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(classes, width)).astype(np.float32)
    y = rng.integers(0, classes, rows)
    path = directory / "x.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, width))
    step = max(1, (256 << 20) // (4 * width))
    for lo in range(0, rows, step):
        part = y[lo : lo + step]
        noise = rng.standard_normal(size=(len(part), width), dtype=np.float32)
        out[lo : lo + len(part)] = centers[part] + 3 * noise
    out.flush()
    del out
    np.save(directory / "y.npy", y)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path, directory / "y.npy"


def run(argv: list[str], cap: int | None) -> dict:
    """One fit in a fresh process, in a fresh memory cgroup capped at ``cap`` bytes if given."""
    group = None
    enter = None
    if cap is not None:
        group = CGROUP_ROOT / f"fullbatch-bench-{uuid.uuid4().hex[:8]}"
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(cap))
        swap = group / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(cap))

        def enter() -> None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    try:
        done = subprocess.run(argv, preexec_fn=enter, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{argv[3]} fit failed ({done.returncode}): {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if group is not None:
            result["cgroup_peak"] = int((group / "memory.max_usage_in_bytes").read_text())
            result["cap"] = cap
        return result
    finally:
        if group is not None:
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--gigabytes", type=float, default=1.0)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--tol", type=float, default=0.0, help="the fit's tol (0: --iterations)")
    p.add_argument("--cap-gigabytes", type=float, default=None)
    p.add_argument("--no-memory", action="store_true", help="skip the in-memory fit")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--folds", type=int, default=None, help="measure a fold's pass (see above)")
    args = p.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    path, labels = write(args.dir, args.gigabytes, args.width, args.classes)
    print(f"wrote {path.stat().st_size / 2**30:.2f} GiB in {time.perf_counter() - t0:.0f} s")
    try:
        if args.folds is not None:
            argv = [sys.executable, "-c", FOLDS, str(path), str(labels), str(args.folds)]
            r = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
            for name, m in r.items():
                print(
                    f"fold 0 of {args.folds} as {name}: {m['seconds']:.3f} s a pass "
                    f"(objective {m['objective']:.8g})"
                )
            return
        cap = None if args.cap_gigabytes is None else int(args.cap_gigabytes * 2**30)
        modes = ["memmap"] if args.no_memory else ["memory", "memmap"]
        for mode in modes:
            fit = [str(path), str(labels), mode, str(args.iterations), str(args.tol)]
            argv = [sys.executable, "-c", FIT, *fit]
            r = run(argv, cap if mode == "memmap" else None)
            mbs = r["passes"] * r["bytes"] / r["seconds"] / 1e6
            extra = ""
            if "cgroup_peak" in r:
                peak, capped = r["cgroup_peak"] / 2**30, r["cap"] / 2**30
                extra = f", cgroup peak {peak:.2f} GiB of a {capped:.2f} GiB cap"
            print(
                f"{mode}: fit {r['seconds']:.1f} s ({r['iterations']} iterations"
                f"{', converged' if r['converged'] and args.tol > 0 else ''}, {r['passes']} "
                f"passes, {mbs:.0f} MB/s), load {r['load_seconds']:.1f} s, peak RSS "
                f"{r['peak_rss'] / 2**30:.2f} GiB{extra}; sum |coef| {r['coef_sum']:.6g}",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
