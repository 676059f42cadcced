"""Bigger than memory, for real: a fit in a process whose memory (page cache included) is
capped below the size of its data file, by a cgroup v1 memory controller.

The cap is the memory a process that has imported torch and the package needs (measured in
the same cgroup), plus less than half the file: a process with the same imports that reads
the file whole is killed under it (checked first, so that the cap is known to bind), and the
streamed fit (two epochs and an evaluation) finishes under it; so does a full-batch
``LogisticRegression`` fit on a memory-mapped file (a few L-BFGS iterations: every one a pass
over the file, read block by block). Needs root and
cgroup v1's memory controller at /sys/fs/cgroup/memory; elsewhere it skips, saying why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
ROWS, WIDTH, CLASSES = 60_000, 1024, 10  # 246 MB of float32 features
HEADROOM = 100 << 20  # the cap: the baseline process plus this, well under the file

FIT = """
import sys
from softmax_regression.config import TrainConfig
from softmax_regression.data.spec import DataSpec
from softmax_regression.evaluation import evaluate
from softmax_regression.train import fit

data = DataSpec.parse(sys.argv[1]).load()
result = fit(TrainConfig(epochs=2, batch_size=512, lr=0.05), data.train, data.test)
ev = evaluate(result.model, data.test)
print(type(data.train).__name__, len(data.train), result.history.last.train_loss, ev.accuracy)
"""
LOGISTIC = """
import sys, time
import numpy as np
from softmax_regression.sklearn import LogisticRegression

x = np.load(sys.argv[1], mmap_mode="r")
y = np.load(sys.argv[2])
start = time.perf_counter()
est = LogisticRegression(device="cpu", max_iter=3).fit(x, y)
print(type(x).__name__, est.coef_.shape[0], est.score(x, y), time.perf_counter() - start)
"""
# Its own high-water mark (VmHWM): getrusage's ru_maxrss would be the parent's when that was
# larger, since a child started by subprocess inherits it across exec.
BASELINE = """
import torch
import softmax_regression.train, softmax_regression.evaluation, softmax_regression.data.streamed
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(int(hwm.split()[1]) * 1024)
"""
LOGISTIC_BASELINE = """
import torch
import softmax_regression.sklearn
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(int(hwm.split()[1]) * 1024)
"""
LOGISTIC_READ_WHOLE = """
import sys
import numpy, torch
import softmax_regression.sklearn
x = numpy.load(sys.argv[1])
print(float(x.sum()))
"""
# The same imports as the fit, then the file read whole: what the cap must not allow.
READ_WHOLE = """
import sys
import numpy, torch
import softmax_regression.train, softmax_regression.evaluation, softmax_regression.data.streamed
x = numpy.load(sys.argv[1])
print(float(x.sum()))
"""


def _usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a cgroup"
    if not (CGROUP_ROOT / "memory.limit_in_bytes").exists():
        return "needs cgroup v1's memory controller at /sys/fs/cgroup/memory"
    return None


@pytest.fixture
def cgroup():
    """A fresh child memory cgroup; ``run(argv, limit)`` runs a command inside it."""
    reason = _usable()
    if reason is not None:
        pytest.skip(reason)
    path = CGROUP_ROOT / f"softmax-regression-test-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
    except OSError as e:
        pytest.skip(f"cannot create a cgroup here ({e.strerror})")

    def run(argv: list[str], limit: int) -> subprocess.CompletedProcess:
        (path / "memory.limit_in_bytes").write_text(str(limit))
        swap = path / "memory.memsw.limit_in_bytes"
        if swap.exists():  # no swapping out of the cap either
            swap.write_text(str(limit))

        def enter() -> None:
            (path / "cgroup.procs").write_text(str(os.getpid()))

        return subprocess.run(
            argv, preexec_fn=enter, capture_output=True, text=True, timeout=300, check=False
        )

    run.path = path  # type: ignore[attr-defined]
    yield run
    for _ in range(50):  # the children are gone; the cgroup goes once its charges drain
        try:
            path.rmdir()
            break
        except OSError:
            with contextlib.suppress(OSError):
                (path / "memory.force_empty").write_text("0")
            time.sleep(0.1)


def _write_uncached(path: Path, array: np.ndarray) -> None:
    """Save ``array`` and drop it from the page cache, so that whoever reads it next pays
    for its pages (the page cache is charged to the cgroup that reads a file in)."""
    np.save(path, array)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_a_fit_capped_below_its_file_size(cgroup, tmp_path):
    data = tmp_path / "shards"
    data.mkdir()
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(CLASSES, WIDTH)).astype(np.float32)
    half = ROWS // 2
    for k in range(2):
        y = rng.integers(0, CLASSES, half)
        x = centers[y] + rng.normal(size=(half, WIDTH)).astype(np.float32) * 3
        _write_uncached(data / f"x_train-{k:05d}.npy", x)
        np.save(data / f"y_train-{k:05d}.npy", y)
        del x
    yt = rng.integers(0, CLASSES, 2000)
    np.save(data / "x_test-00000.npy", centers[yt] + rng.normal(size=(2000, WIDTH)) * 3)
    np.save(data / "y_test-00000.npy", yt)
    file_bytes = sum((data / f"x_train-{k:05d}.npy").stat().st_size for k in range(2))
    whole = tmp_path / "whole.npy"
    _write_uncached(whole, np.zeros((ROWS, WIDTH), np.float32))

    base = cgroup([sys.executable, "-c", BASELINE], 4 << 30)
    assert base.returncode == 0, base.stderr
    limit = int(base.stdout.strip()) + HEADROOM
    assert limit - int(base.stdout.strip()) < file_bytes / 2

    # the cap binds: reading the file whole is killed
    killed = cgroup([sys.executable, "-c", READ_WHOLE, str(whole)], limit)
    assert killed.returncode != 0, "the cap did not stop a process reading the file whole"
    whole.unlink()

    done = cgroup([sys.executable, "-c", FIT, str(data)], limit)
    assert done.returncode == 0, done.stderr[-2000:]
    kind, rows, loss, acc = done.stdout.split()
    assert kind == "StreamedDataset" and int(rows) == ROWS
    assert float(acc) > 0.9  # it learned
    peak = int((cgroup.path / "memory.max_usage_in_bytes").read_text())
    assert peak <= limit


def test_logistic_regression_on_a_memmap_capped_below_its_file_size(cgroup, tmp_path):
    """``LogisticRegression.fit`` on ``np.load(..., mmap_mode="r")`` of a file twice the
    cap's headroom: the rows are read block by block by every pass, never held whole."""
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(CLASSES, WIDTH)).astype(np.float32)
    y = rng.integers(0, CLASSES, ROWS)
    features = tmp_path / "x.npy"
    x = np.empty((ROWS, WIDTH), np.float32)
    for lo in range(0, ROWS, 10_000):
        part = y[lo : lo + 10_000]
        x[lo : lo + 10_000] = centers[part] + rng.normal(size=(len(part), WIDTH)) * 3
    _write_uncached(features, x)
    del x
    np.save(tmp_path / "y.npy", y)
    file_bytes = features.stat().st_size

    # The baseline as the cgroup is charged for it (shared libraries already in the page
    # cache are not charged again): the cap is that plus HEADROOM.
    usage = cgroup.path / "memory.max_usage_in_bytes"
    usage.write_text("0")
    base = cgroup([sys.executable, "-c", LOGISTIC_BASELINE], 4 << 30)
    assert base.returncode == 0, base.stderr
    limit = int(usage.read_text()) + HEADROOM
    assert file_bytes / 2 > HEADROOM
    # the cap binds: the same file read whole is killed
    killed = cgroup([sys.executable, "-c", LOGISTIC_READ_WHOLE, str(features)], limit)
    assert killed.returncode != 0, "the cap did not stop a process reading the file whole"

    usage.write_text("0")
    done = cgroup([sys.executable, "-c", LOGISTIC, str(features), str(tmp_path / "y.npy")], limit)
    assert done.returncode == 0, done.stderr[-2000:]
    kind, rows, accuracy, _ = done.stdout.split()
    assert kind == "memmap" and int(rows) == CLASSES
    assert float(accuracy) > 0.9  # it learned, in a few passes
    peak = int((cgroup.path / "memory.max_usage_in_bytes").read_text())
    assert peak <= limit


def test_the_memory_a_fit_may_copy_into_is_the_cgroups(cgroup):
    """The room a fit measures before keeping a converted copy of its rows (a float64 copy
    of float32 rows for liblinear's model, a float32 copy of float64 ones): inside a memory
    cgroup it is what its limit leaves, not the machine's MemAvailable; so a fit in a
    container copies only what fits in the container."""
    from softmax_regression.linear_loss import _available_memory

    limit = 512 << 20
    code = "from softmax_regression.linear_loss import _available_memory as a; print(a())"
    done = cgroup([sys.executable, "-c", code], limit)
    assert done.returncode == 0, done.stderr
    inside = int(done.stdout.strip())
    assert 0 < inside < limit
    assert _available_memory() > limit  # outside: the machine's (CI machines have GBs)
