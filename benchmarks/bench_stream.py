"""Bigger than memory: features streamed from disk, beside ``dd`` and beside memory.

Writes a shard directory of ``--gigabytes`` of float32 features (``--width`` wide,
``--classes`` classes, shards of about 512 MB; a 20,000-row test split), then measures:

- **disk**: each shard dropped from the page cache (``posix_fadvise DONTNEED``), then read by
  ``dd bs=16M`` and by a streamed pass (``RowSource.chunks``), MB/s each;
- **page cache against memory**, on the first ``--warm-gigabytes`` only (they must fit in
  memory): one pass computing the scores ``x @ W.T`` (``--classes`` of them) over an array in
  memory, and the same pass streamed from the page cache; then one epoch of the book recipe
  (batch 1024) on a set of that size held in memory, and streamed from the page cache;
- **the book recipe under a cap**: ``softmax-regression train --data DIR --epochs 1`` in a
  cgroup v1 memory cgroup capped at ``--cap-gigabytes`` (page cache included; needs root),
  its time, rows/s, MB/s, the process tree's peak resident memory and the cgroup's peak.

Every measurement runs in a fresh process. The files are deleted at the end unless
``--keep``.

    .venv/bin/python benchmarks/bench_stream.py --dir /tmp/stream-bench --gigabytes 9 \\
        --cap-gigabytes 2.5
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

SHARD_BYTES = 512 << 20
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")

PASS = r"""
import json, sys, time
import numpy as np
from softmax_regression.data import stream
directory, classes, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
limit = float(sys.argv[4]) if len(sys.argv) > 4 else None
src = stream.open_shards(__import__("pathlib").Path(directory))
if limit is not None:  # the first `limit` GiB only
    src = src.rows(0, min(len(src), int(limit * 2**30) // (4 * src.width)))
w = np.random.default_rng(0).normal(size=(classes, src.width)).astype(np.float32)
t0 = time.perf_counter()
if mode == "memory":
    x = np.concatenate(list(src.chunks()))
    t0 = time.perf_counter()
    total = 0.0
    for lo in range(0, len(x), src.block_rows):
        total += float((x[lo : lo + src.block_rows] @ w.T).sum())
elif mode.startswith("train"):  # one epoch of the book recipe, held or streamed
    import torch
    from softmax_regression.config import TrainConfig
    from softmax_regression.data.spec import DataSpec
    from softmax_regression.data.dataset import Dataset
    from softmax_regression.train import fit
    data = DataSpec.parse(directory).load().train
    if mode == "train-memory":
        x = np.concatenate(list(data.source.chunks()))
        data = Dataset(torch.from_numpy(x), data.labels, classes=data.classes, image_rule=None)
    t0 = time.perf_counter()
    result = fit(TrainConfig(epochs=1, batch_size=1024), data)
    total = result.history.last.train_loss
elif mode == "read":
    total = sum(float(x[:1].sum()) for x in src.chunks(reuse=True))
else:
    total = sum(float((x @ w.T).sum()) for x in src.chunks(reuse=True))
seconds = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"mode": mode, "seconds": seconds, "bytes": src.nbytes, "rows": len(src),
                  "peak_rss": int(hwm) * 1024}))
"""


def _uncache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def write(directory: Path, gigabytes: float, width: int, classes: int) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    rows = int(gigabytes * 2**30) // (4 * width)
    per = max(1, SHARD_BYTES // (4 * width))
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(classes, width)).astype(np.float32)
    t0 = time.perf_counter()
    for k, lo in enumerate(range(0, rows, per)):
        n = min(per, rows - lo)
        y = rng.integers(0, classes, n)
        x = centers[y]
        x += rng.standard_normal(size=x.shape, dtype=np.float32) * 4
        np.save(directory / f"x_train-{k:05d}.npy", x)
        np.save(directory / f"y_train-{k:05d}.npy", y)
        _uncache(directory / f"x_train-{k:05d}.npy")
        del x
    yt = rng.integers(0, classes, 20_000)
    xt = centers[yt] + rng.standard_normal(size=(20_000, width), dtype=np.float32) * 4
    np.save(directory / "x_test-00000.npy", xt)
    np.save(directory / "y_test-00000.npy", yt)
    return {"rows": rows, "width": width, "write_s": time.perf_counter() - t0}


def shards(directory: Path) -> list[Path]:
    return sorted(directory.glob("x_train-*.npy"))


def dd(directory: Path) -> dict:
    files = shards(directory)
    for f in files:
        _uncache(f)
    total = sum(f.stat().st_size for f in files)
    t0 = time.perf_counter()
    for f in files:
        subprocess.run(["dd", f"if={f}", "of=/dev/null", "bs=16M"], check=True, capture_output=True)
    s = time.perf_counter() - t0
    return {"bytes": total, "seconds": s, "MB_s": total / s / 1e6}


def python_pass(directory: Path, classes: int, mode: str, limit: float | None = None) -> dict:
    argv = [sys.executable, "-c", PASS, str(directory), str(classes), mode]
    if limit is not None:
        argv.append(str(limit))
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    r["MB_s"] = r["bytes"] / r["seconds"] / 1e6
    return r


def capped_train(directory: Path, cap: int, runs: Path, nproc: int = 1) -> dict:
    if os.geteuid() != 0 or not (CGROUP_ROOT / "memory.limit_in_bytes").exists():
        return {"skipped": "needs root and cgroup v1's memory controller"}
    group = CGROUP_ROOT / f"bench-stream-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(cap))
        if (group / "memory.memsw.limit_in_bytes").exists():
            (group / "memory.memsw.limit_in_bytes").write_text(str(cap))
        for f in shards(directory):
            _uncache(f)
        exe = Path(sys.executable).parent / "softmax-regression"
        argv = [str(exe), "train", "--data", str(directory), "--epochs", "1"]
        argv += ["--batch-size", "1024", "--out", str(runs / f"capped-{nproc}")]
        if nproc > 1:
            argv += ["--nproc", str(nproc), "--no-plots", "--no-report"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # The processes' own memory (anonymous + mapped pages, not the page cache), polled.
        peak_rss = 0
        while proc.poll() is None:
            stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
            peak_rss = max(peak_rss, int(stat["rss"]) + int(stat["mapped_file"]))
            time.sleep(0.05)
        stdout, stderr = proc.communicate()
        seconds = time.perf_counter() - t0
        peak = int((group / "memory.max_usage_in_bytes").read_text())
    finally:
        for _ in range(100):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    lines = [line for line in stdout.splitlines() if line.startswith("final")]
    return {
        "returncode": proc.returncode,
        "seconds": seconds,
        "cap": cap,
        "cgroup_peak_with_page_cache": peak,
        "peak_rss_and_mapped": peak_rss,
        "final": lines[-1] if lines else stderr[-500:],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--gigabytes", type=float, default=1.0)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--warm-gigabytes", type=float, default=1.0)
    p.add_argument("--cap-gigabytes", type=float, default=0.5)
    p.add_argument("--nproc", type=int, nargs="+", default=[1], help="ranks of capped runs")
    p.add_argument("--only-train", action="store_true", help="only the capped runs")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    out: dict = {}
    try:
        out["data"] = write(args.dir / "shards", args.gigabytes, args.width, args.classes)
        d = args.dir / "shards"
        print(json.dumps(out), flush=True)
        if not args.only_train:
            passes(out, args, d)
        for nproc in args.nproc:
            cap = int(args.cap_gigabytes * 2**30)
            out[f"train_capped_nproc{nproc}"] = capped_train(d, cap, args.dir, nproc)
            print(json.dumps(out), flush=True)
    finally:
        print(json.dumps(out, indent=1))
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


def passes(out: dict, args: argparse.Namespace, d: Path) -> None:
    """dd and the streamed pass from disk; page cache against memory."""
    out["dd_cold"] = dd(d)
    for f in shards(d):
        _uncache(f)
    out["stream_cold_read"] = python_pass(d, args.classes, "read")
    print(json.dumps(out), flush=True)
    warm = args.warm_gigabytes
    out["memory_scores"] = python_pass(d, args.classes, "memory", warm)
    python_pass(d, args.classes, "read", warm)  # into the page cache
    out["cache_scores"] = python_pass(d, args.classes, "scores", warm)
    w = args.dir / "warm"
    write(w, warm, args.width, args.classes)
    python_pass(w, args.classes, "read")  # into the page cache
    out["train_memory"] = python_pass(w, args.classes, "train-memory")
    out["train_cache"] = python_pass(w, args.classes, "train-stream")
    shutil.rmtree(w)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
