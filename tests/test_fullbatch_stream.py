"""The full-batch fits over rows read from disk block by block: LogisticRegression,
LogisticRegressionCV, OneVsRestClassifier and the best-linear recipe on memory-mapped arrays,
.npy files, shard directories, Parquet and row sources reach the in-memory answer (the
objective within 1e-6 relative in float64) in the in-memory answer's dtype, whatever the files
or the block size; under torchrun each rank reads its share; bad files are one line each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from softmax_regression.best_linear import BestLinearConfig, fit_best_linear
from softmax_regression.cli import main
from softmax_regression.data import stream
from softmax_regression.data.spec import DataSpec
from softmax_regression.errors import DataError
from softmax_regression.linear_loss import StreamedRows
from softmax_regression.sklearn import LogisticRegression, LogisticRegressionCV

sys.path.insert(0, str(Path(__file__).parent))
from distributed_helpers import free_port, run, torchrun_args  # noqa: E402

N, D = 1500, 12


def _problem(k: int, seed: int = 0, n: int = N):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, D)) * 1.5
    y = rng.integers(0, k, n)
    x = means[y] + 2.0 * rng.normal(size=(n, D)) * rng.uniform(0.5, 3.0, D) + 1.0
    return x, y, rng.uniform(0.5, 2.0, n)


def objective(est, X, y, C=1.0, sample_weight=None) -> float:
    """scikit-learn's objective at ``est``'s coefficients, divided by ``C sum_i s_i``."""
    idx = np.searchsorted(est.classes_, y)
    s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    coef = np.asarray(est.coef_, np.float64)
    z = np.asarray(X, np.float64) @ coef.T + np.asarray(est.intercept_, np.float64)
    if z.shape[1] == 1:
        z = np.hstack([np.zeros_like(z), z])
    top = z.max(axis=1, keepdims=True)
    loss = top[:, 0] + np.log(np.exp(z - top).sum(axis=1)) - z[np.arange(len(y)), idx]
    return float((s * loss).sum() / s.sum() + 0.5 * (coef**2).sum() / (C * s.sum()))


@pytest.fixture
def passes(monkeypatch):
    """Counts the passes over rows read from disk (each :meth:`StreamedRows.iterate`)."""
    count = [0]
    original = StreamedRows.iterate

    def counted(self, step, dtype):
        count[0] += 1
        yield from original(self, step, dtype)

    monkeypatch.setattr(StreamedRows, "iterate", counted)
    return count


def _est(**kw):
    return LogisticRegression(device="cpu", dtype="float64", tol=1e-8, max_iter=300, **kw)


@pytest.mark.parametrize("k", [2, 4])
def test_a_memmap_fits_as_in_memory(tmp_path, k, passes):
    """A memory-mapped float64 array is read block by block (never copied whole) and reaches
    the in-memory objective; its predictions are the in-memory ones."""
    x, y, w = _problem(k)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    memory = _est().fit(x, y, sample_weight=w)
    assert passes[0] == 0
    disk = _est().fit(mapped, y, sample_weight=w)
    assert passes[0] > 3  # every evaluation one pass over the file
    assert disk.coef_.dtype == np.float64 and disk.n_features_in_ == D
    want = objective(memory, x, y, 1.0, w)
    assert objective(disk, x, y, 1.0, w) == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(disk.coef_, memory.coef_, atol=1e-5)
    before = passes[0]
    for method in ("decision_function", "predict_proba", "predict"):
        got = getattr(disk, method)(mapped)
        np.testing.assert_allclose(got, getattr(disk, method)(x), rtol=1e-12, atol=1e-12)
    assert disk.score(mapped, y) == disk.score(x, y)
    assert passes[0] > before  # the predictions streamed too


def test_files_shards_block_sizes_and_sources_give_one_answer(tmp_path):
    """A .npy file, the same rows cut into shards, a RowSource with tiny blocks and a
    .safetensors file: one objective, to rounding (y None: the source's own labels)."""
    x, y, _ = _problem(3)
    x = x.astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    shards = tmp_path / "shards"
    shards.mkdir()
    for s, (lo, hi) in enumerate([(0, 700), (700, 702), (702, N)]):
        np.save(shards / f"x_train-{s:05d}.npy", x[lo:hi])
        np.save(shards / f"y_train-{s:05d}.npy", y[lo:hi])
    from safetensors.numpy import save_file

    save_file({"x": x, "y": y.astype(np.int64)}, str(tmp_path / "d.safetensors"))
    memory = _est().fit(x, y)
    want = objective(memory, x, y)
    one = stream.open_npy(tmp_path / "x.npy", tmp_path / "y.npy")
    for X in (
        one,
        one.with_block_rows(97),
        shards,
        str(tmp_path / "d.safetensors"),
        stream.open_shards(shards, block_rows=60),
    ):
        got = _est().fit(X, None)
        assert objective(got, x, y) == pytest.approx(want, rel=1e-6), X
    np.testing.assert_allclose(
        got.predict_proba(tmp_path / "x.npy"), memory.predict_proba(x), atol=1e-5
    )


def test_cross_validation_over_a_memmap(tmp_path):
    """LogisticRegressionCV: each fold an index into the file; the in-memory scores, C and
    refit."""
    x, y, w = _problem(3, n=900)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    kw = dict(Cs=3, cv=3, device="cpu", dtype="float64", tol=1e-8, use_legacy_attributes=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        memory = LogisticRegressionCV(**kw, scoring="neg_log_loss").fit(x, y, sample_weight=w)
        disk = LogisticRegressionCV(**kw, scoring="neg_log_loss").fit(mapped, y, sample_weight=w)
    assert disk.C_ == memory.C_
    np.testing.assert_allclose(disk.scores_, memory.scores_, rtol=1e-6)
    want = objective(memory, x, y, memory.C_, w)
    assert objective(disk, x, y, disk.C_, w) == pytest.approx(want, rel=1e-6)


def test_best_linear_streams_to_the_in_memory_objective(tmp_path):
    x, y, _ = _problem(4, n=2000)
    one = tmp_path / "one"
    one.mkdir()
    np.save(one / "x_train.npy", x.astype(np.float32))
    np.save(one / "y_train.npy", y)
    config = BestLinearConfig(
        val_split=400,
        dtype="float64",
        device="cpu",
        weight_decays=(1e-2, 1e-3),
        select_iters=100,
        refit_iters=200,
    )
    memory = DataSpec.parse(one).load().train
    streamed = DataSpec.parse(one, stream="always").load().train
    assert getattr(streamed, "streamed", False)
    a = fit_best_linear(memory, config)
    b = fit_best_linear(streamed, config)
    assert b.selection.chosen_weight_decay == a.selection.chosen_weight_decay
    assert b.objective == pytest.approx(a.objective, rel=1e-6)
    assert b.train_acc == a.train_acc


def test_best_linear_command_on_shards(tmp_path, capsys):
    x, y, _ = _problem(3, n=1200)
    shards = tmp_path / "shards"
    shards.mkdir()
    for s, (lo, hi) in enumerate([(0, 500), (500, 1000)]):
        np.save(shards / f"x_train-{s:05d}.npy", x[lo:hi].astype(np.float32))
        np.save(shards / f"y_train-{s:05d}.npy", y[lo:hi])
    np.save(shards / "x_test-00000.npy", x[1000:].astype(np.float32))
    np.save(shards / "y_test-00000.npy", y[1000:])
    argv = ["train", "--recipe", "best-linear", "--data", str(shards), "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "bl"), "--no-plots", "--no-report"]) in (0, None)
    report = json.loads((tmp_path / "bl" / "best_linear.json").read_text())
    assert report["test"]["accuracy"] > 0.5 and report["refit"]["images"] == 1000


# --------------------------------------------------------------------------- torchrun

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from softmax_regression.sklearn import LogisticRegression, rank_rows

    data = sys.argv[2]
    out = {}
    est = LogisticRegression(device="cpu", dtype="float64", tol=1e-10, max_iter=500)
    est.fit(data + "/shards", None)  # the whole set: each rank reads its own share
    out["shards"] = [est.coef_.tolist(), est.intercept_.tolist()]
    x = np.load(data + "/x.npy", mmap_mode="r")  # a memmap: this rank's rows, a view
    y, w = np.load(data + "/y.npy"), np.load(data + "/w.npy")
    rows = rank_rows(len(x))
    est.fit(x[rows], y[rows], sample_weight=w[rows])
    out["memmap"] = [est.coef_.tolist(), est.intercept_.tolist()]
    with open(f"{sys.argv[1]}-{os.environ.get('RANK', '0')}.json", "w") as f:
        json.dump(out, f)
    from softmax_regression.distributed import shutdown
    shutdown()
    """
)


class _Fitted:
    def __init__(self, coef, intercept, classes):
        self.coef_, self.intercept_, self.classes_ = (
            np.asarray(coef),
            np.asarray(intercept),
            classes,
        )


def test_two_ranks_reach_the_one_process_answer(tmp_path):
    x, y, w = _problem(4)
    data = tmp_path / "data"
    (data / "shards").mkdir(parents=True)
    np.save(data / "x.npy", x)
    np.save(data / "y.npy", y)
    np.save(data / "w.npy", w)
    for s, (lo, hi) in enumerate([(0, 400), (400, 1100), (1100, N)]):
        np.save(data / "shards" / f"x_train-{s:05d}.npy", x[lo:hi])
        np.save(data / "shards" / f"y_train-{s:05d}.npy", y[lo:hi])
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    single = subprocess.run(
        [sys.executable, str(worker), str(tmp_path / "one"), str(data)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    ref = json.loads((tmp_path / "one-0.json").read_text())
    args = torchrun_args(2, free_port()) + [str(worker), str(tmp_path / "two"), str(data)]
    done = run(args, 180)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"two-{r}.json").read_text()) for r in range(2)]
    assert results[0] == results[1]  # every rank the same bits
    classes = np.arange(4)
    for key, weights in (("shards", None), ("memmap", w)):
        want = objective(_Fitted(*ref[key], classes), x, y, 1.0, weights)
        got = objective(_Fitted(*results[0][key], classes), x, y, 1.0, weights)
        assert got == pytest.approx(want, rel=1e-6)


# --------------------------------------------------------------------------- bad files


def _one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text
    return text


def test_bad_files_are_one_line_each(tmp_path, monkeypatch):
    x, y, _ = _problem(3, n=300)
    x = x.astype(np.float32)
    shards = tmp_path / "shards"
    shards.mkdir()
    np.save(shards / "x_train-00000.npy", x[:200])
    np.save(shards / "y_train-00000.npy", y[:200])
    np.save(shards / "x_train-00001.npy", x[200:, :5])  # wrong width
    np.save(shards / "y_train-00001.npy", y[200:])
    with pytest.raises(DataError) as e:
        _est().fit(shards, None)
    assert "5 features per row, the shards before it have 12" in _one_line(e.value)

    np.save(shards / "x_train-00001.npy", x[200:])
    path = shards / "x_train-00001.npy"
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.raises(DataError) as e:
        _est().fit(shards, None)
    assert "truncated" in _one_line(e.value)

    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    source = stream.open_features(tmp_path / "x.npy")
    with pytest.raises(DataError) as e:
        _est().fit(source, y[:-1])  # labels shorter than rows
    assert "fewer labels than rows" in _one_line(e.value)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        _est().fit(mapped, y[:-1])  # scikit-learn's words for an array

    # A file that changes while the fit reads it: the next pass stops, saying which.
    original = stream.RowSource.blocks

    def touching(self, *args, **kw):
        yield from original(self, *args, **kw)
        os.utime(tmp_path / "x.npy", ns=(1, 1))

    monkeypatch.setattr(stream.RowSource, "blocks", touching)
    with pytest.raises(DataError) as e:
        _est().fit(stream.open_npy(tmp_path / "x.npy", tmp_path / "y.npy"), None)
    assert "changed while being read" in _one_line(e.value)
    assert "x.npy" in str(e.value)


# --------------------------------------------------------------------------- one-vs-rest


def ovr_objective(ovr, X, y, C=1.0, liblinear=False) -> float:
    """The sum of the ``K`` binary problems' objectives at ``ovr``'s coefficients, divided by
    ``C n`` (liblinear's: the intercept penalised as a feature of value 1)."""
    X = np.asarray(X, np.float64)
    total = 0.0
    for k, est in enumerate(ovr.estimators_):
        w = np.asarray(est.coef_, np.float64).ravel()
        b = float(np.asarray(est.intercept_, np.float64)[0])
        sign = np.where(y == ovr.classes_[k], 1.0, -1.0)
        loss = np.logaddexp(0.0, -sign * (X @ w + b)).mean()
        squares = (w**2).sum() + (b**2 if liblinear else 0.0)
        total += loss + 0.5 * squares / (C * len(y))
    return total


def _ovr(solver):
    from softmax_regression.sklearn import OneVsRestClassifier

    return OneVsRestClassifier(_est(solver=solver))


@pytest.mark.parametrize("solver", ["lbfgs", "liblinear"])
def test_one_vs_rest_over_a_memmap_fits_as_in_memory(tmp_path, solver, passes):
    """OneVsRestClassifier's ``K`` binary problems fitted together over a memory-mapped
    array: the in-memory coefficients and objective; predictions read the file once."""
    x, y, _ = _problem(4)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    memory = _ovr(solver).fit(x, y)
    assert passes[0] == 0
    disk = _ovr(solver).fit(mapped, y)
    assert passes[0] > 3
    liblinear = solver == "liblinear"
    want = ovr_objective(memory, x, y, liblinear=liblinear)
    assert ovr_objective(disk, x, y, liblinear=liblinear) == pytest.approx(want, rel=1e-6)
    for a, b in zip(disk.estimators_, memory.estimators_, strict=True):
        assert a.coef_.dtype == np.float64
        np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-5)
        np.testing.assert_allclose(a.intercept_, b.intercept_, atol=1e-5)
    assert disk.n_features_in_ == D
    for X in (mapped, tmp_path / "x.npy"):
        before = passes[0]
        for method in ("decision_function", "predict_proba", "predict"):
            got = getattr(disk, method)(X)
            np.testing.assert_allclose(got, getattr(disk, method)(x), rtol=1e-12, atol=1e-12)
        assert passes[0] == before + 3  # one pass each, for all K estimators
    assert disk.score(mapped, y) == disk.score(x, y)


def test_one_vs_rest_holds_a_few_blocks_not_the_rows(tmp_path, monkeypatch):
    """Fitted and predicting over a source of small blocks, OneVsRestClassifier never makes
    anything of size rows x features: numpy's peak (traced) stays under a quarter of it, and
    scikit-learn's validation, which would read X whole, is never called."""
    import tracemalloc

    from softmax_regression.sklearn import OneVsRestClassifier, _ovr

    n, d = 2000, 200
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, d)) + y[:, None] * 0.3
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    del x

    def refused(*args, **kw):
        raise AssertionError("X validated in memory")

    monkeypatch.setattr(_ovr, "check_array", refused)
    source = stream.open_npy(tmp_path / "x.npy", tmp_path / "y.npy").with_block_rows(50)
    est = OneVsRestClassifier(LogisticRegression(device="cpu", dtype="float64", tol=1e-3))
    tracemalloc.start()
    try:
        est.fit(source, None)
        est.predict_proba(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n * d * 8 / 4, peak


def test_one_vs_rest_streams_in_scikit_learns_loop_or_refuses(tmp_path):
    """A multilabel y: scikit-learn's loop, each binary LogisticRegression reading the file,
    a constant label scikit-learn's constant predictor; another estimator refuses rows from
    disk in one line; checkpoint= keeps working."""
    from sklearn.svm import LinearSVC

    from softmax_regression.errors import ConfigError
    from softmax_regression.sklearn import OneVsRestClassifier

    x, y, _ = _problem(4, n=300)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    labels = np.stack([y % 2, (y > 1).astype(int), (y == 3).astype(int)], axis=1)
    memory = OneVsRestClassifier(_est()).fit(x, labels)
    disk = OneVsRestClassifier(_est()).fit(mapped, labels)
    for a, b in zip(disk.estimators_, memory.estimators_, strict=True):
        np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-5)
    assert (disk.predict(mapped) == memory.predict(x)).all()
    np.testing.assert_allclose(disk.predict_proba(mapped), memory.predict_proba(x), atol=1e-12)

    # A label every row has, and one no row has: scikit-learn's constant predictors (and
    # its warnings), over the file and over its path as over the array.
    always = np.concatenate([labels, np.ones((len(y), 1), int), np.zeros((len(y), 1), int)], 1)
    said = [
        "Label 3 is present in all training examples.",
        "Label not 4 is present in all training examples.",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        memory = OneVsRestClassifier(_est()).fit(x, always)
    assert [str(w.message) for w in caught] == said
    for X in (mapped, str(tmp_path / "x.npy")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            disk = OneVsRestClassifier(_est()).fit(X, always)
        assert [str(w.message) for w in caught] == said
        assert (disk.predict(X) == memory.predict(x)).all()
        assert (disk.predict(x) == memory.predict(x)).all()
        np.testing.assert_allclose(disk.predict_proba(X), memory.predict_proba(x), atol=1e-12)
        np.testing.assert_allclose(
            disk.decision_function(X), memory.decision_function(x), atol=1e-12
        )

    with pytest.raises(ConfigError) as e:
        OneVsRestClassifier(LinearSVC()).fit(mapped, y)
    assert "LinearSVC" in _one_line(e.value)

    path = tmp_path / "fit.ckpt"
    kept = OneVsRestClassifier(_est(checkpoint=str(path))).fit(mapped, y)
    plain = OneVsRestClassifier(_est()).fit(mapped, y)
    assert not path.exists()  # removed when the fit completed
    for a, b in zip(kept.estimators_, plain.estimators_, strict=True):
        np.testing.assert_array_equal(a.coef_, b.coef_)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("stored", [np.float64, np.float32])
def test_parquet_keeps_the_dtype_of_its_columns(tmp_path, stored):
    """scikit-learn's rule for rows from Parquet, as for arrays: float64 columns give a
    float64 fit at the in-memory float64 optimum, float32 columns a float32 fit."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    x, y, _ = _problem(3, n=900)
    x = x.astype(stored)
    table = pa.table({**{f"f{j}": x[:, j] for j in range(D)}, "label": y})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=256)
    source = stream.open_parquet(tmp_path / "d.parquet")
    assert source.stored_dtype == stored
    kw = dict(device="cpu", tol=1e-8, max_iter=300)
    disk = LogisticRegression(**kw).fit(tmp_path / "d.parquet", None)
    memory = LogisticRegression(**kw).fit(x, y)
    assert disk.coef_.dtype == memory.coef_.dtype == stored
    rel = 1e-6 if stored == np.float64 else 1e-4
    assert objective(disk, x, y) == pytest.approx(objective(memory, x, y), rel=rel)
    if stored == np.float64:
        np.testing.assert_allclose(
            disk.predict_proba(tmp_path / "d.parquet"), memory.predict_proba(x), atol=1e-8
        )


def test_files_of_integers_give_a_float64_fit(tmp_path):
    """Integer rows, on disk as in memory, give a float64 answer; float32 files float32."""
    x, y, _ = _problem(3, n=600)
    ints = np.round(x * 4).astype(np.int16)
    np.save(tmp_path / "x.npy", ints)
    np.save(tmp_path / "y.npy", y)
    kw = dict(device="cpu", tol=1e-8, max_iter=300)
    memory = LogisticRegression(**kw).fit(ints, y)
    disk = LogisticRegression(**kw).fit(tmp_path, None)
    assert disk.coef_.dtype == memory.coef_.dtype == np.float64
    assert objective(disk, ints, y) == pytest.approx(objective(memory, ints, y), rel=1e-6)
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    assert LogisticRegression(**kw).fit(tmp_path, None).coef_.dtype == np.float32
