"""``train --recipe best-linear`` as one data-parallel fit over two ranks (``--nproc 2``, on
the loopback): the single-process answer, written and printed by rank 0 alone.

Small seeded synthetic sets (``.npz``) keep each job to seconds: 8x8 uint8 images (the
standardised copy and its pixel correlations) and float features (standardisation folded
into every evaluation, the correlations from the solver's moments), the features also as a
shard directory, read from disk block by block. Every job is bounded in
time and killed as a process group (``distributed_helpers.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from distributed_helpers import run

CLI = [sys.executable, "-m", "softmax_regression", "train", "--recipe", "best-linear"]
JOB_TIMEOUT = 120
RELATIVE = 1e-6  # the two-rank objective is the single-process one up to float32 rounding
N_TRAIN, N_TEST = 3000, 600


def examples(accuracy: float, n: int) -> int:
    """The number of examples an accuracy over ``n`` counts (exact: accuracies are k / n)."""
    return round(accuracy * n)


def write_set(path: Path, kind: str) -> Path:
    """A seeded 5-class problem that a linear model solves only in part, so that the weight
    decays score differently on validation: 3,000 training and 600 test examples."""
    rng = np.random.default_rng(0)
    k, n_train, n_test = 5, N_TRAIN, N_TEST
    if kind == "images":
        templates = rng.uniform(100, 155, size=(k, 8, 8))

        def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
            y = rng.integers(0, k, m)
            x = templates[y] + rng.normal(0, 70, size=(m, 8, 8))
            return np.clip(x, 0, 255).astype(np.uint8), y

    else:
        means = rng.normal(size=(k, 200)) * 0.3

        def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
            y = rng.integers(0, k, m)
            return (means[y] + 4.0 * rng.normal(size=(m, 200)) + 5).astype(np.float32), y

    x, y = draw(n_train)
    xt, yt = draw(n_test)
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return path


def write_shards(path: Path) -> Path:
    """The features set as a shard directory (read block by block from disk: each rank reads
    its own share of the rows)."""
    arrays = np.load(write_set(path.with_suffix(".npz"), "features"))
    path.mkdir()
    for k, (lo, hi) in enumerate([(0, 1000), (1000, 1700), (1700, N_TRAIN)]):
        np.save(path / f"x_train-{k:05d}.npy", arrays["x_train"][lo:hi])
        np.save(path / f"y_train-{k:05d}.npy", arrays["y_train"][lo:hi])
    np.save(path / "x_test-00000.npy", arrays["x_test"])
    np.save(path / "y_test-00000.npy", arrays["y_test"])
    return path


@pytest.mark.parametrize("kind", ["images", "features", "shards"])
def test_two_ranks_end_at_the_single_process_fit(tmp_path: Path, kind: str) -> None:
    if kind == "shards":
        data = write_shards(tmp_path / "shards")
        kind = "features"
    else:
        data = write_set(tmp_path / f"{kind}.npz", kind)
    args = [*CLI, "--data", str(data), "--device", "cpu", "--no-plots", "--no-report"]
    one, two = tmp_path / "one", tmp_path / "two"
    done = [
        run([*args, "--out", str(one)], JOB_TIMEOUT),
        run([*args, "--out", str(two), "--nproc", "2"], JOB_TIMEOUT),
    ]
    assert [d.returncode for d in done] == [0, 0], done[1].stderr[-3000:]
    a, b = (json.loads((d / "best_linear.json").read_text()) for d in (one, two))
    assert "ranks" not in a and b["ranks"] == 2
    assert b["refit"]["objective"] == pytest.approx(a["refit"]["objective"], rel=RELATIVE, abs=0)
    assert b["selection"]["chosen_weight_decay"] == a["selection"]["chosen_weight_decay"]
    # The two fits are the same minimum up to float32 rounding (sums taken in another order,
    # over ranks and threads), so an example lying on a decision boundary may fall either way:
    # one of the 500 validation and 600 test examples, three of the 3,000 training ones; counted
    # in whole examples, since in floats 0.406 - 0.404 > 1 / 500.
    n_val = a["selection"]["validation_images"]
    for ca, cb in zip(a["selection"]["candidates"], b["selection"]["candidates"], strict=True):
        assert cb["objective"] == pytest.approx(ca["objective"], rel=RELATIVE, abs=0)
        assert abs(examples(cb["val_acc"], n_val) - examples(ca["val_acc"], n_val)) <= 1
    for split, n, most in (("test", N_TEST, 1), ("train", N_TRAIN, 3)):
        assert abs(examples(b[split]["accuracy"], n) - examples(a[split]["accuracy"], n)) <= most
    # Rank 0 alone printed and wrote: one summary, one run directory, no error.
    assert done[1].stdout.count("final (best-linear, seed 0)") == 1
    assert done[1].stdout.count("chosen by validation accuracy") == 1
    assert "error" not in done[1].stderr and "Traceback" not in done[1].stderr, done[1].stderr
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert json.loads((two / "status.json").read_text())["status"] == "completed"
    # How the model was chosen, in the words of its inputs.
    words = ("pixel-correlation", "images") if kind == "images" else ("feature-correlation",)
    words += () if kind == "images" else ("training examples", "penalty per example")
    assert all(w in a["how_chosen"] for w in words), a["how_chosen"]
