"""``checkpoint=``: a fit of the estimators stopped anywhere, by a signal or a kill, and fitted
again with the same file, ends at the uninterrupted fit's answer.

A real process is stopped at a chosen solver iteration (the pause hook of
:mod:`softmax_regression.stopping`: it waits there for the signal, so that nothing depends on
timing), then the fit is started again here, on the same file. The answer is compared with
the uninterrupted fit's: scikit-learn's objective within 1e-9 (relative, float64), the same
predictions and the same number of iterations (the same steps, not merely the same minimum).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from safetensors import safe_open  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402

from softmax_regression import stopping  # noqa: E402
from softmax_regression.errors import ResumeError  # noqa: E402
from softmax_regression.sklearn import (  # noqa: E402
    LogisticRegression,
    LogisticRegressionCV,
    OneVsRestClassifier,
)

# Each fit as the stopped process makes it (the script below builds the same): the data, the
# estimator's parameters.
CASES = {
    "multinomial": ("multiclass", "LogisticRegression", {"C": 100.0, "tol": 1e-8}),
    "binary": ("binary", "LogisticRegression", {"C": 100.0, "tol": 1e-8}),
    "elastic-net": (
        "multiclass",
        "LogisticRegression",
        {"C": 1.0, "l1_ratio": 0.5, "solver": "saga", "tol": 1e-6},
    ),
    "cv": (
        "multiclass",
        "LogisticRegressionCV",
        {
            "Cs": 4,
            "cv": 3,
            "l1_ratios": (0.0,),
            "scoring": "accuracy",
            "use_legacy_attributes": False,
            "tol": 1e-6,
        },
    ),
}
COMMON = {"device": "cpu", "max_iter": 500}

SCRIPT = """
import sys
import torch
import softmax_regression.sklearn as sk
from softmax_regression.stopping import Terminated
from test_sklearn_checkpoint import data, estimator

case, path, every = sys.argv[1], sys.argv[2], float(sys.argv[3])
sk.CHECKPOINT_SECONDS = every
torch.set_num_threads(1)
X, y = data(case)
try:
    estimator(case, checkpoint=path).fit(X, y)
except Terminated as e:
    sys.exit(e.exit_code)
"""


def data(case: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=200, n_features=10, n_informative=6, n_classes=3, random_state=0
    )
    return (X, (y == 1).astype(int)) if CASES[case][0] == "binary" else (X, y)


def estimator(case: str, **more):
    kind, params = CASES[case][1], CASES[case][2]
    cls = LogisticRegressionCV if kind == "LogisticRegressionCV" else LogisticRegression
    return cls(**COMMON, **params, **more)


def objective(clf, X, y, C: float, l1_ratio: float) -> float:
    """scikit-learn's objective: ``C * sum_i loss_i + l1_ratio * ||W||_1 + (1 - l1_ratio) / 2
    * ||W||^2``."""
    p = clf.predict_proba(X)[np.arange(len(y)), np.searchsorted(clf.classes_, y)]
    w = np.asarray(clf.coef_, np.float64)
    penalty = l1_ratio * np.abs(w).sum() + (1 - l1_ratio) / 2 * (w * w).sum()
    return float(C * -np.log(p).sum() + penalty)


def same_answer(case: str, got, want, X, y) -> None:
    C, l1 = CASES[case][2].get("C"), CASES[case][2].get("l1_ratio", 0.0)
    if case == "cv":
        C, l1 = want.C_, want.l1_ratio_
        assert got.C_ == C
        np.testing.assert_allclose(got.coefs_paths_, want.coefs_paths_, rtol=1e-7, atol=1e-9)
        np.testing.assert_array_equal(got.scores_, want.scores_)
    assert objective(got, X, y, C, l1) == pytest.approx(objective(want, X, y, C, l1), rel=1e-9)
    np.testing.assert_array_equal(got.predict(X), want.predict(X))
    np.testing.assert_array_equal(got.n_iter_, want.n_iter_)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Fits of this size take far longer on several threads of a busy machine; and the stopped
    process computes with one, so the same bits here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def whole(one_thread):
    """The uninterrupted fits."""
    return {case: estimator(case).fit(*data(case)) for case in CASES}


def _stop_at(tmp_path: Path, case: str, pause: int, signum: int, every: float) -> int:
    """Run the fit of ``case`` in a process of its own until its ``pause``-th solver iteration,
    send it ``signum``: its exit status."""
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT, encoding="utf-8")
    marker = tmp_path / "paused"
    env = {**os.environ, stopping.PAUSE_ENV: f"lbfgs:{pause}"}
    env[stopping.PAUSE_MARKER_ENV] = str(marker)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    argv = [sys.executable, str(script), case, str(tmp_path / "fit.ckpt"), str(every)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists():  # waiting for the fit to get there, not deciding anything
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"the fit ended before its pause ({proc.returncode}): {err.decode()}")
        time.sleep(0.02)
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err, err.decode()
    return proc.returncode


def _position(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["position"])


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in ("fit.py", "paused"))


def _offers_at(monkeypatch, tmp_path, case: str, unit: int, phase: int, full=None) -> int:
    """The middle one of the iterations an uninterrupted fit of ``case`` offers its
    checkpoint in the unit of work ``unit`` and the phase ``phase`` (and with the full
    covariance's preconditioner or not, ``full``; None: either), as this process computes
    it (on one thread, as the stopped processes do). Where a phase ends is float rounding's:
    it moves by a few iterations with the CPU's kernels."""
    from softmax_regression.sklearn import _checkpoint

    seen = []
    offer = _checkpoint.Checkpoint._offer

    def record(self, position, snapshot):
        seen.append((position["unit"], position["phase"], position["full"]))
        offer(self, position, snapshot)

    with monkeypatch.context() as m:
        m.setattr(_checkpoint.Checkpoint, "_offer", record)
        estimator(case, checkpoint=tmp_path / "recorded.ckpt").fit(*data(case))
    offers = [
        n for n, (u, p, f) in enumerate(seen, 1) if (u, p) == (unit, phase) and full in (None, f)
    ]
    assert len(offers) >= 3, f"{case}: {len(offers)} iterations in unit {unit}, phase {phase}"
    return offers[len(offers) // 2]


@pytest.mark.parametrize(
    ("case", "unit", "phase"),
    [
        ("multinomial", 0, 0),  # in the float32 phase (a float64 fit's first)
        ("cv", 5, 1),  # in the path over the Cs of the second fold
    ],
)
def test_a_fit_stopped_by_sigterm_goes_on_to_the_uninterrupted_answer(
    tmp_path, monkeypatch, whole, case, unit, phase
) -> None:
    """SIGTERM ends the fit as Ctrl-C does: the state it reached is written as it stops (the
    interval between writes is far longer than the fit), and a fit with the file continues
    from there; the file is removed when it completes."""
    pause = _offers_at(monkeypatch, tmp_path, case, unit, phase)
    code = _stop_at(tmp_path, case, pause, signal.SIGTERM, every=3600.0)
    assert code == 128 + signal.SIGTERM
    path = tmp_path / "fit.ckpt"
    assert _files(tmp_path) == ["fit.ckpt"]  # the state, and nothing half-written
    position = _position(path)
    assert (position["offers"], position["unit"], position["phase"]) == (pause, unit, phase)

    X, y = data(case)
    resumed = estimator(case, checkpoint=path).fit(X, y)
    same_answer(case, resumed, whole[case], X, y)
    assert _files(tmp_path) == []  # completed: nothing left to continue


def test_a_fit_killed_goes_on_from_the_last_state_written(tmp_path, monkeypatch, whole) -> None:
    """SIGKILL leaves no time to write anything: the last state written (here after every
    iteration) is the one continued, in the float64 phase of a float64 fit."""
    at = _offers_at(monkeypatch, tmp_path, "multinomial", 0, 1, full=True)
    code = _stop_at(tmp_path, "multinomial", at, signal.SIGKILL, every=0.0)
    assert code == -signal.SIGKILL
    path = tmp_path / "fit.ckpt"
    assert _files(tmp_path) == ["fit.ckpt"]
    position = _position(path)
    assert (position["offers"], position["phase"], position["full"]) == (at, 1, True)

    X, y = data("multinomial")
    resumed = estimator("multinomial", checkpoint=path).fit(X, y)
    same_answer("multinomial", resumed, whole["multinomial"], X, y)
    assert _files(tmp_path) == []


def _stopped(monkeypatch, make, X, y, at: int) -> None:
    """Fit ``make()`` here until its ``at``-th iteration, stopped there as Ctrl-C stops it."""

    def interrupt(kind: str, n: int) -> None:
        if n == at:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(stopping, "pause_point", interrupt)
        with pytest.raises(KeyboardInterrupt):
            make().fit(X, y)


@pytest.mark.parametrize(
    ("case", "unit", "phase"),
    [
        ("binary", 0, 1),  # in the float64 phase
        ("elastic-net", 0, -1),  # OWL-QN
        ("cv", 12, 0),  # in the refit
    ],
)
def test_a_fit_stopped_by_ctrl_c_goes_on_to_the_uninterrupted_answer(
    tmp_path, monkeypatch, whole, case, unit, phase
) -> None:
    """Ctrl-C (KeyboardInterrupt) here, in this process: the state it reached is written."""
    import softmax_regression.sklearn as sk

    monkeypatch.setattr(sk, "CHECKPOINT_SECONDS", 3600.0)
    X, y = data(case)
    at = _offers_at(monkeypatch, tmp_path, case, unit, phase)
    path = tmp_path / "fit.ckpt"
    _stopped(monkeypatch, lambda: estimator(case, checkpoint=path), X, y, at)
    assert _files(tmp_path) == ["fit.ckpt"]
    position = _position(path)
    assert (position["offers"], position["unit"], position["phase"]) == (at, unit, phase)
    resumed = estimator(case, checkpoint=path).fit(X, y)
    same_answer(case, resumed, whole[case], X, y)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("case", ["liblinear", "one-vs-rest"])
def test_ctrl_c_and_a_fit_again_give_the_same_answer(tmp_path, monkeypatch, case) -> None:
    """The other solver paths: liblinear's L1 model (OWL-QN on its penalised intercept, as
    every fit of it given a checkpoint) and OneVsRestClassifier's binary problems fitted
    together."""
    X, y = data("multinomial")
    path = tmp_path / "fit.ckpt"
    if case == "liblinear":
        y = (y == 1).astype(int)
        params = {"solver": "liblinear", "l1_ratio": 1.0, "tol": 1e-6, **COMMON}

        def make(**more):
            return LogisticRegression(**params, **more)
    else:

        def make(**more):
            return OneVsRestClassifier(LogisticRegression(C=10.0, tol=1e-8, **COMMON, **more))

    # Given a checkpoint, liblinear's L1 model is fitted by OWL-QN (whose state a checkpoint
    # keeps), not by the proximal Newton method of a fit without one: the answer to compare
    # with is an uninterrupted fit given a checkpoint too.
    want = make(checkpoint=tmp_path / "whole.ckpt").fit(X, y)
    assert _files(tmp_path) == []
    _stopped(monkeypatch, lambda: make(checkpoint=path), X, y, at=30)
    assert _files(tmp_path) == ["fit.ckpt"]
    got = make(checkpoint=path).fit(X, y)
    np.testing.assert_array_equal(got.predict(X), want.predict(X))
    np.testing.assert_allclose(got.predict_proba(X), want.predict_proba(X), rtol=1e-9)
    assert _files(tmp_path) == []


def test_a_checkpoint_of_other_data_or_parameters_is_refused(tmp_path, monkeypatch) -> None:
    X, y = data("multinomial")
    path = tmp_path / "fit.ckpt"
    _stopped(monkeypatch, lambda: estimator("multinomial", checkpoint=path), X, y, at=5)
    kept = path.read_bytes()
    other = X.copy()
    other[0, 0] += 1.0
    refusals = [
        (estimator("multinomial", checkpoint=path), other, y, "other data (the same shape"),
        (
            estimator("multinomial", checkpoint=path),
            X[:-1],
            y[:-1],
            "other data (200 rows x 10 features there, 199 x 10 here)",
        ),
        (
            estimator("multinomial", checkpoint=path).set_params(C=1.0),
            X,
            y,
            "other parameters (C=100.0 there, 1.0 here)",
        ),
        (
            estimator("cv", checkpoint=path),
            X,
            y,
            "written by LogisticRegression's fit, not LogisticRegressionCV's",
        ),
    ]
    for clf, X_, y_, differs in refusals:
        with pytest.raises(ResumeError) as e:
            clf.fit(X_, y_)
        message = str(e.value)
        assert message.startswith(f"{path}: the checkpoint of another fit: {differs}")
        assert "\n" not in message
    assert path.read_bytes() == kept  # never used, never changed
    # What does not change the answer may differ (the device, verbose).
    estimator("multinomial", checkpoint=path, verbose=1).fit(X, y)
    assert not path.exists()


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a checkpoint")
    X, y = data("binary")
    with pytest.raises(ResumeError, match=f"^{path}: not a softmax-regression checkpoint"):
        estimator("binary", checkpoint=path).fit(X, y)
    assert path.read_text() == "not a checkpoint"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (3, "checkpoint must be None or a file path (str or os.PathLike), got 3"),
        ("", "checkpoint must be None or a file path (str or os.PathLike), got ''"),
        (".", "checkpoint must be a file path, got the directory '.'"),
    ],
)
def test_checkpoint_is_a_checked_parameter(value, message) -> None:
    X, y = data("binary")
    cv = {"l1_ratios": (0.0,), "scoring": "accuracy", "use_legacy_attributes": False}
    for clf in (
        LogisticRegression(checkpoint=value),
        LogisticRegressionCV(checkpoint=value, **cv),
    ):
        assert clone(clf).get_params()["checkpoint"] == value
        with pytest.raises(ValueError) as e:
            clf.fit(X, y)
        assert str(e.value) == message


def test_one_vs_rest_that_fits_each_problem_apart_refuses_a_checkpoint(tmp_path) -> None:
    X, y = data("binary")  # two classes: scikit-learn's own loop
    clf = OneVsRestClassifier(LogisticRegression(checkpoint=tmp_path / "fit.ckpt"))
    with pytest.raises(ValueError, match="checkpoint= is kept by OneVsRestClassifier only"):
        clf.fit(X, y)
