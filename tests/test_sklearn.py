"""The scikit-learn estimators: scikit-learn's own checks, scikit-learn's answer, the
ecosystem (clone, Pipeline, GridSearchCV, pickle), errors, the package's model, torchrun.

The objective every comparison uses is written here in float64 numpy, independent of the
solver: ``C * sum_i s_i * logloss_i + ||coef_||^2 / 2``.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from distributed_helpers import free_port, run, torchrun_args  # noqa: E402
from sklearn import linear_model  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from softmax_regression.runs import artifacts  # noqa: E402
from softmax_regression.sklearn import LogisticRegression, LogisticRegressionCV  # noqa: E402

# The tight settings of the comparisons: both solvers run to (near) their optimum.
TIGHT = {"tol": 1e-10, "max_iter": 5000}
RELATIVE = 1e-6  # ours <= scikit-learn's objective * (1 + RELATIVE)


def objective(est, X, y, C, sample_weight=None, class_weight=None) -> float:
    """scikit-learn's objective at ``est``'s coefficients, in float64 numpy."""
    classes = est.classes_
    idx = np.searchsorted(classes, y)
    s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    if class_weight is not None:
        if class_weight == "balanced":
            counts = np.bincount(idx, weights=s, minlength=len(classes))
            cw = counts.sum() / (len(classes) * counts)
        else:
            cw = np.asarray([class_weight.get(c, 1.0) for c in classes])
        s = s * cw[idx]
    coef = np.asarray(est.coef_, np.float64)
    z = np.asarray(X, np.float64) @ coef.T + np.asarray(est.intercept_, np.float64)
    if z.shape[1] == 1:  # binomial: logits [0, z]
        z = np.hstack([np.zeros_like(z), z])
    top = z.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    loss = lse - z[np.arange(len(y)), idx]
    penalty = 0.5 * (coef**2).sum()
    return float((s * loss).sum() * C + penalty) if np.isfinite(C) else float((s * loss).sum())


def blobs(n, d, k, seed, spread=2.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * 1.5
    y = rng.integers(0, k, n)
    X = means[y] + spread * rng.normal(size=(n, d)) + rng.normal(size=d) * 3
    return X.astype(dtype), y


# --------------------------------------------------------------------------- scikit-learn's checks

DEFAULT_XFAIL = {
    "check_sample_weight_equivalence_on_dense_data": (
        "float32 and tol=1e-4 (the defaults) stop short of the 1e-7 agreement this check asks "
        "for; the float64, tol=1e-10 instance below passes it"
    ),
}
CV_XFAIL = {
    "check_sample_weight_equivalence_on_dense_data": (
        "cross-validation splits repeated rows differently from weighted ones, so the chosen "
        "C and the fits differ (scikit-learn's LogisticRegressionCV has the same limitation)"
    ),
}


def _expected_failed(est):
    if isinstance(est, LogisticRegressionCV):
        return CV_XFAIL
    return DEFAULT_XFAIL if est.dtype == "float32" else {}


# check_array_api_input is skipped by scikit-learn itself (SkipTest) unless SCIPY_ARRAY_API
# is set; the estimators take numpy input only (no array API support is claimed).
@parametrize_with_checks(
    [
        LogisticRegression(),
        LogisticRegression(dtype="float64", tol=1e-10, max_iter=1000),
        # 3 Cs x 3 folds: scikit-learn's checks fit many times; the grid size is no part of
        # what they check.
        LogisticRegressionCV(Cs=3, cv=3),
    ],
    expected_failed_checks=_expected_failed,
)
def test_sklearn_checks(estimator, check):
    with warnings.catch_warnings():
        # Some checks fit a handful of iterations on purpose.
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# --------------------------------------------------------------------------- the same answer


def _problem(name):
    if name == "binary":
        X, y = blobs(400, 8, 2, 0)
        return X, y, {}, None
    if name == "many-classes":
        X, y = blobs(600, 12, 15, 1)
        return X, y, {}, None
    if name == "class-weight":
        X, y = blobs(400, 6, 4, 2)
        return X, y, {"class_weight": {0: 3.0, 2: 0.5}}, None
    if name == "balanced":
        X, y = blobs(400, 6, 3, 3)
        keep = (y != 2) | (np.arange(len(y)) % 4 == 0)  # class 2 rare
        return X[keep], y[keep], {"class_weight": "balanced"}, None
    if name == "sample-weight":
        X, y = blobs(400, 6, 4, 4)
        w = np.random.default_rng(4).uniform(0.1, 3.0, len(y))
        return X, y, {}, w
    if name == "one-example-class":
        X, y = blobs(300, 5, 3, 5)
        y = y.copy()
        y[y == 2] = 1
        y[7] = 2  # a class with a single example
        return X, y, {}, None
    if name == "constant-features":
        X, y = blobs(300, 6, 3, 6)
        X[:, 1] = 4.0
        X[:, 4] = 0.0
        return X, y, {}, None
    if name == "float32-input":
        X, y = blobs(400, 8, 5, 7, dtype=np.float32)
        return X, y, {}, None
    if name == "string-labels":
        X, y = blobs(300, 5, 3, 8)
        return X, np.array(["cat", "dog", "emu"])[y], {}, None
    if name == "no-intercept":
        X, y = blobs(300, 5, 3, 9)
        return X, y, {"fit_intercept": False}, None
    if name == "small-C":
        X, y = blobs(400, 6, 4, 10)
        return X, y, {"C": 1e-3}, None
    if name == "no-penalty":
        # Overlapping classes: the unpenalised problem has a finite minimum.
        X, y = blobs(500, 4, 3, 11, spread=4.0)
        return X, y, {"C": np.inf}, None
    raise KeyError(name)


PROBLEMS = [
    "binary",
    "many-classes",
    "class-weight",
    "balanced",
    "sample-weight",
    "one-example-class",
    "constant-features",
    "float32-input",
    "string-labels",
    "no-intercept",
    "small-C",
    "no-penalty",
]


@pytest.mark.parametrize("name", PROBLEMS)
def test_reaches_sklearns_objective(name):
    X, y, params, sw = _problem(name)
    C = params.get("C", 1.0)
    ours = LogisticRegression(dtype="float64", **params, **TIGHT).fit(X, y, sample_weight=sw)
    ref = linear_model.LogisticRegression(**params, **TIGHT).fit(X, y, sample_weight=sw)
    cw = params.get("class_weight")
    got = objective(ours, X, y, C, sw, cw)
    want = objective(ref, X, y, C, sw, cw)
    assert got <= want * (1 + RELATIVE)
    assert ours.coef_.shape == ref.coef_.shape and ours.intercept_.shape == ref.intercept_.shape
    assert ours.coef_.dtype == ref.coef_.dtype
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    assert (ours.predict(X) == ref.predict(X)).mean() >= 0.99
    if np.isfinite(C):  # a strictly convex problem: one answer
        # (scikit-learn solves float32 input in float32: its answer is only that close)
        atol = 1e-4 if X.dtype == np.float64 else 5e-3
        np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=atol)


@pytest.mark.parametrize("name", ["many-classes", "binary", "sample-weight"])
def test_float32_reaches_the_same_objective(name):
    X, y, params, sw = _problem(name)
    ours = LogisticRegression(**params, tol=1e-7, max_iter=2000).fit(X, y, sample_weight=sw)
    ref = linear_model.LogisticRegression(**params, **TIGHT).fit(X, y, sample_weight=sw)
    got, want = objective(ours, X, y, 1.0, sw), objective(ref, X, y, 1.0, sw)
    assert got <= want * (1 + 1e-5)
    assert (ours.predict(X) == ref.predict(X)).mean() >= 0.99


def test_default_tol_ends_no_worse_than_sklearns_default():
    X, y = blobs(2000, 30, 8, 12)
    ours = LogisticRegression(max_iter=1000).fit(X, y)
    ref = linear_model.LogisticRegression(max_iter=1000).fit(X, y)
    assert objective(ours, X, y, 1.0) <= objective(ref, X, y, 1.0) * (1 + RELATIVE)
    assert ours.n_iter_.shape == (1,) and ours.n_iter_.dtype == np.int32


def test_warm_start_and_convergence_warning():
    X, y = blobs(500, 10, 4, 13)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        est = LogisticRegression(max_iter=1, tol=1e-12, warm_start=True).fit(X, y)
    first = est.coef_.copy()
    est.set_params(max_iter=200, tol=1e-4).fit(X, y)
    assert not np.array_equal(first, est.coef_)
    again = est.fit(X, y)
    assert again.n_iter_[0] <= 3  # starts at the answer


def test_cv_matches_sklearns_cv():
    X, y = blobs(500, 6, 3, 14, spread=3.0)
    params = {"Cs": 5, "cv": 3, "tol": 1e-8, "max_iter": 2000, "l1_ratios": None}
    params |= {"scoring": None, "use_legacy_attributes": True}
    ours = LogisticRegressionCV(dtype="float64", **params).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = linear_model.LogisticRegressionCV(**params).fit(X, y)
    np.testing.assert_allclose(ours.Cs_, ref.Cs_)
    np.testing.assert_array_equal(ours.C_, ref.C_)
    for key in ref.scores_:
        np.testing.assert_allclose(ours.scores_[key], ref.scores_[key], atol=1e-2)
        assert ours.coefs_paths_[key].shape == ref.coefs_paths_[key].shape
    assert ours.n_iter_.shape == ref.n_iter_.shape
    assert (ours.predict(X) == ref.predict(X)).mean() >= 0.99
    C = float(ours.C_[0])
    assert objective(ours, X, y, C) <= objective(ref, X, y, C) * (1 + RELATIVE)


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("l1_ratios", ["warn", (0.0,)])
@pytest.mark.parametrize("k", [2, 3])
def test_cv_attribute_shapes_are_sklearns(legacy, l1_ratios, k):
    X, y = blobs(120, 4, k, 15)
    params = {"Cs": 3, "cv": 2, "l1_ratios": l1_ratios, "use_legacy_attributes": legacy}
    params |= {"scoring": "accuracy", "max_iter": 50}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, ConvergenceWarning))
        ours = LogisticRegressionCV(**params).fit(X, y)
        ref = linear_model.LogisticRegressionCV(**params).fit(X, y)
    for name in ("coefs_paths_", "scores_", "n_iter_", "C_", "l1_ratio_", "l1_ratios_"):
        a, b = getattr(ours, name), getattr(ref, name)
        if isinstance(b, dict):
            assert list(a) == list(b)
            assert [np.shape(v) for v in a.values()] == [np.shape(v) for v in b.values()]
        else:
            assert np.shape(a) == np.shape(b), name


# --------------------------------------------------------------------------- the ecosystem


def test_clone_pipeline_grid_search_cross_val_score_pickle():
    X, y = blobs(300, 5, 3, 16)
    est = LogisticRegression(C=0.5, dtype="float64")
    assert clone(est).get_params() == est.get_params()
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    assert pipe.score(X, y) > 0.7
    grid = GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0]}, cv=3).fit(X, y)
    assert grid.best_params_["C"] in (0.01, 1.0)
    scores = cross_val_score(LogisticRegression(), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.7
    fitted = est.fit(X, y)
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.predict_proba(X), fitted.predict_proba(X))


def test_predictions_are_consistent():
    X, y = blobs(200, 4, 3, 17)
    est = LogisticRegression().fit(X, y)
    p = est.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(est.predict_log_proba(X)), p, rtol=1e-12)
    np.testing.assert_array_equal(est.predict(X), est.classes_[p.argmax(axis=1)])
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)])
    named = LogisticRegression().fit(frame, y)
    assert list(named.feature_names_in_) == list(frame.columns)


# --------------------------------------------------------------------------- what is not here


@pytest.mark.parametrize(
    "params, message",
    [
        ({"l1_ratio": 1.0}, "saga"),
        ({"l1_ratio": 0.5}, "saga"),
        ({"dual": True}, "supports only dual=False"),
        ({"solver": "newton"}, "solver must be one of"),
        ({"C": -1.0}, "C must be a positive number"),
        ({"tol": -1.0}, "tol must be"),
        ({"max_iter": -1}, "max_iter must be"),
        ({"device": "tpu"}, "device must be one of"),
        ({"dtype": "float16"}, "dtype must be one of"),
    ],
)
def test_unsupported_options_raise_valueerror(params, message):
    X, y = blobs(60, 3, 3, 18)
    with pytest.raises(ValueError, match=message):
        LogisticRegression(**params).fit(X, y)


def test_deprecated_penalty_warns_and_l1_names_saga():
    X, y = blobs(60, 3, 3, 19)
    with pytest.warns(FutureWarning, match="deprecated"):
        LogisticRegression(penalty="l2").fit(X, y)
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="saga"):
        LogisticRegression(penalty="l1", l1_ratio=1.0).fit(X, y)
    with pytest.raises(ValueError, match="saga"):
        LogisticRegressionCV(l1_ratios=(0.5,)).fit(X, y)


def test_import_error_names_the_extra(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # as if scikit-learn were not installed
        import softmax_regression
        assert "sklearn" not in [m.split(".")[0] for m in sys.modules if sys.modules[m]]
        try:
            import softmax_regression.sklearn
        except ImportError as e:
            print(e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'softmax-regression[sklearn]'" in out.stdout


# --------------------------------------------------------------------------- the package's model


@pytest.mark.parametrize("k", [2, 4])
def test_to_model_and_back(k):
    X, y = blobs(200, 6, k, 20)
    est = LogisticRegression(dtype="float64").fit(X, y)
    model = est.to_model()
    assert (model.num_inputs, model.num_classes) == (6, k)
    with torch.no_grad():
        logits = model(torch.from_numpy(X).float()).numpy()
    np.testing.assert_array_equal(est.classes_[logits.argmax(1)], est.predict(X))
    back = LogisticRegression.from_model(model, est.classes_)
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    np.testing.assert_allclose(back.predict_proba(X), est.predict_proba(X), atol=1e-5)


def test_save_serves_predict_evaluate_and_report(tmp_path, capsys):
    """A fitted estimator saved as the package's model file: the commands read it and give
    the estimator's own predictions and accuracy; from_run reads it back."""
    from softmax_regression.cli import main

    X, y = blobs(300, 6, 3, 13, dtype=np.float32)
    labels = np.array(["ant", "bee", "cat"])[y]
    est = LogisticRegression().fit(X, labels)
    out = tmp_path / "clf"
    assert est.save(out) == out / "model.safetensors"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        est.save(out)
    np.savetxt(tmp_path / "rows.csv", X[:20], delimiter=",")
    assert main(["predict", str(out), "--features", str(tmp_path / "rows.csv"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert [r["top"][0]["class"] for r in rows] == est.predict(X[:20]).tolist()
    np.savez(tmp_path / "data.npz", x=X, y=labels)
    data = str(tmp_path / "data.npz")
    assert main(["evaluate", str(out), "--data", data, "--test-data", data, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["accuracy"] == pytest.approx(est.score(X, labels))
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()  # no Fashion-MNIST test split tried on it
    assert "trained on the rows given to LogisticRegression.fit; no config.json" in page
    back = LogisticRegression.from_run(out)
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    # Fitted on a DataFrame: its column names name the features of the model file.
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"col{i}" for i in range(X.shape[1])])
    LogisticRegression().fit(frame, labels).save(tmp_path / "frame")
    names = artifacts.load_model(tmp_path / "frame").data["feature_names"]
    assert names == list(frame.columns)


def test_from_run_reads_a_saved_model(tmp_path):
    from softmax_regression.preprocessing import Preprocessing

    X, y = blobs(200, 5, 3, 21)
    est = LogisticRegression(dtype="float64").fit(X, y)
    mean, std = X.mean(0), X.std(0)
    # A run that standardises its inputs: the model acts on (x - mean) / std.
    model = est.to_model()
    with torch.no_grad():
        model.weight.mul_(torch.from_numpy(std).float())
        model.bias.add_(torch.from_numpy(est.coef_ @ mean).float())
    prep = Preprocessing(True, torch.from_numpy(mean).float(), torch.from_numpy(std).float())
    artifacts.save_model(
        tmp_path, model, classes=("a", "b", "c"), input_shape=(5,), preprocessing=prep
    )
    loaded = LogisticRegression.from_run(tmp_path)
    np.testing.assert_array_equal(loaded.classes_, ["a", "b", "c"])
    np.testing.assert_array_equal(loaded.predict(X), np.array(["a", "b", "c"])[est.predict(X)])


# --------------------------------------------------------------------------- torchrun

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from softmax_regression.sklearn import LogisticRegression, LogisticRegressionCV, rank_rows

    def data(k):
        rng = np.random.default_rng(k)
        means = rng.normal(size=(k, 10)) * 1.5
        y = rng.integers(0, k, 1001)
        X = means[y] + 2.0 * rng.normal(size=(1001, 10))
        return X, y, rng.uniform(0.5, 2.0, 1001)

    out = {}
    for k in (2, 5):  # binary (one coefficient row) and multinomial: each rank its rows
        X, y, w = data(k)
        rows = rank_rows(len(X))
        est = LogisticRegression(dtype="float64", tol=1e-10, max_iter=500, device="cpu",
                                 class_weight="balanced")
        est.fit(X[rows], y[rows], sample_weight=w[rows])
        out[k] = {"coef": est.coef_.tolist(), "intercept": est.intercept_.tolist(),
                  "classes": est.classes_.tolist()}
        for l1_ratio in (1.0, 0.5):  # the L1 and elastic-net solver, its sums over ranks
            est = LogisticRegression(solver="saga", l1_ratio=l1_ratio, C=0.05, dtype="float64",
                                     tol=1e-10, max_iter=500, device="cpu")
            est.fit(X[rows], y[rows], sample_weight=w[rows])
            out[f"{k}-{l1_ratio}"] = {"coef": est.coef_.tolist(),
                                      "intercept": est.intercept_.tolist(),
                                      "classes": est.classes_.tolist()}
    X, y, w = data(5)  # the CV: every rank all rows, the folds spread over the ranks
    cv = LogisticRegressionCV(Cs=4, cv=3, dtype="float64", tol=1e-8, max_iter=500,
                              device="cpu").fit(X, y, sample_weight=w)
    out["cv"] = {"coef": cv.coef_.tolist(), "C": float(cv.C_[0]),
                 "scores": cv.scores_[0].tolist(), "paths": cv.coefs_paths_[0].tolist()}
    with open(f"{sys.argv[1]}-{os.environ.get('RANK', '0')}.json", "w") as f:
        json.dump(out, f)
    from softmax_regression.distributed import shutdown
    shutdown()  # leave the process group before exiting (gloo aborts otherwise)
    """
)


def _worker_data(k):
    rng = np.random.default_rng(k)
    means = rng.normal(size=(k, 10)) * 1.5
    y = rng.integers(0, k, 1001)
    return means[y] + 2.0 * rng.normal(size=(1001, 10)), y, rng.uniform(0.5, 2.0, 1001)


def _l1_objective(est, X, y, C, l1_ratio, sample_weight):
    """scikit-learn's elastic-net objective: the L2 one with ``C`` folded into the weights,
    its ``||coef_||^2 / 2`` taken out, plus the penalty."""
    coef = np.asarray(est.coef_)
    data = objective(est, X, y, 1.0, sample_weight) - 0.5 * (coef**2).sum()
    penalty = l1_ratio * np.abs(coef).sum() + (1 - l1_ratio) / 2 * (coef**2).sum()
    return C * data + penalty


class _Fitted:
    def __init__(self, r):
        self.coef_ = np.asarray(r["coef"])
        self.intercept_ = np.asarray(r["intercept"])
        self.classes_ = np.asarray(r["classes"])


def test_torchrun_ranks_reach_the_single_process_answer(tmp_path):
    """LogisticRegression (binary and multinomial, L2, L1 and elastic net, each rank its rows)
    and LogisticRegressionCV (the folds spread over the ranks) on 2 and 3 ranks: the
    single-process answer, the same on every rank."""
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    single = subprocess.run(
        [sys.executable, str(worker), str(tmp_path / "one")], capture_output=True, text=True
    )
    assert single.returncode == 0, single.stderr[-2000:]
    ref = json.loads((tmp_path / "one-0.json").read_text())
    for nproc in (2, 3):
        args = torchrun_args(nproc, free_port()) + [str(worker), str(tmp_path / f"r{nproc}")]
        done = run(args, 180)
        assert done.returncode == 0, done.stderr[-3000:]
        results = [json.loads((tmp_path / f"r{nproc}-{r}.json").read_text()) for r in range(nproc)]
        assert all(r == results[0] for r in results)  # every rank the same, to the bit
        got = results[0]
        for k in ("2", "5"):
            X, y, w = _worker_data(int(k))
            want = objective(_Fitted(ref[k]), X, y, 1.0, w, "balanced")
            assert objective(_Fitted(got[k]), X, y, 1.0, w, "balanced") == pytest.approx(
                want, rel=1e-6
            )
            assert got[k]["classes"] == ref[k]["classes"]
            for l1_ratio in (1.0, 0.5):
                key = f"{k}-{l1_ratio}"
                want = _l1_objective(_Fitted(ref[key]), X, y, 0.05, l1_ratio, w)
                got_l1 = _l1_objective(_Fitted(got[key]), X, y, 0.05, l1_ratio, w)
                assert got_l1 == pytest.approx(want, rel=1e-6)
                zeros = np.asarray(got[key]["coef"]) == 0
                np.testing.assert_array_equal(zeros, np.asarray(ref[key]["coef"]) == 0)
        assert got["cv"]["C"] == ref["cv"]["C"]
        np.testing.assert_allclose(got["cv"]["scores"], ref["cv"]["scores"], atol=1e-9)
        np.testing.assert_allclose(got["cv"]["paths"], ref["cv"]["paths"], atol=1e-6)
        np.testing.assert_allclose(got["cv"]["coef"], ref["cv"]["coef"], atol=1e-6)
