"""The L1 and elastic-net penalties and liblinear's model against scikit-learn's own fits.

Each comparison runs both at a tight ``tol`` and asks the objective at our coefficients to be
at most scikit-learn's times (1 + 1e-6), written here in float64 numpy:
``C * sum_i s_i * loss_i + l1_ratio * ||W||_1 + (1 - l1_ratio) / 2 * ||W||^2`` (saga), and for
liblinear the same with the intercept a feature of value ``intercept_scaling``, penalised.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import linear_model, multiclass  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.class_weight import compute_class_weight  # noqa: E402
from sklearn_helpers import assert_cv_attribute_shapes_equal  # noqa: E402

from softmax_regression.sklearn import (  # noqa: E402
    LogisticRegression,
    LogisticRegressionCV,
    OneVsRestClassifier,
)

RELATIVE = 1e-6
OURS_TIGHT = {"tol": 1e-10, "max_iter": 5000, "dtype": "float64"}
SAGA_TIGHT = {"solver": "saga", "tol": 1e-10, "max_iter": 20000}


def blobs(n, d, k, seed, spread=2.0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * 1.5
    y = rng.integers(0, k, n)
    return means[y] + spread * rng.normal(size=(n, d)) + rng.normal(size=d) * 3, y


def weights_of(classes, y, sample_weight, class_weight):
    s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    if class_weight is not None:
        s = (
            s
            * compute_class_weight(class_weight, classes=classes, y=y)[np.searchsorted(classes, y)]
        )
    return s


def objective(coef, intercept, X, y, classes, C, l1_ratio, s, scaling=None):
    """scikit-learn's objective, multinomial (binomial for one row); ``scaling``: liblinear's
    penalised intercept."""
    idx = np.searchsorted(classes, y)
    coef = np.asarray(coef, np.float64)
    z = X @ coef.T + np.asarray(intercept, np.float64)
    if z.shape[1] == 1:
        z = np.hstack([np.zeros_like(z), z])
    top = z.max(axis=1, keepdims=True)
    loss = top[:, 0] + np.log(np.exp(z - top).sum(axis=1)) - z[np.arange(len(y)), idx]
    theta = coef if scaling is None else np.hstack([coef, np.reshape(intercept, (-1, 1)) / scaling])
    penalty = l1_ratio * np.abs(theta).sum() + (1 - l1_ratio) / 2 * (theta**2).sum()
    return float(C * (s * loss).sum() + penalty)


def _fit_both(ours, ref, X, y, sw=None):
    ours.fit(X, y, sample_weight=sw)
    with warnings.catch_warnings():
        # saga and liblinear at tol=1e-10 stop at max_iter; scikit-learn's liblinear path
        # also warns of a penalty it sets itself.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", "Inconsistent values", UserWarning)
        return ours, ref.fit(X, y, sample_weight=sw)


# --------------------------------------------------------------------------- L1, elastic net

CASES = {
    # name: (n, d, k, C, l1_ratio, sample weights, class_weight, fit_intercept)
    "binary-l1": (300, 8, 2, 0.05, 1.0, False, None, True),
    "binary-en": (300, 8, 2, 0.05, 0.5, True, None, True),
    "three-l1": (300, 8, 3, 0.02, 1.0, False, None, True),
    "three-en-weighted": (300, 8, 3, 0.05, 0.5, True, "balanced", True),
    "five-l1-no-intercept": (300, 6, 5, 0.1, 1.0, False, None, False),
    "three-l1-ratio-0": (300, 8, 3, 0.05, 0.0, False, None, True),
}


@pytest.mark.parametrize("name", CASES)
def test_l1_and_elastic_net_reach_sagas_objective(name):
    n, d, k, C, l1_ratio, weighted, cw, fit_intercept = CASES[name]
    X, y = blobs(n, d, k, seed=len(name))
    sw = np.random.default_rng(1).uniform(0.5, 2.0, n) if weighted else None
    params = {"C": C, "l1_ratio": l1_ratio, "class_weight": cw, "fit_intercept": fit_intercept}
    ours, ref = _fit_both(
        LogisticRegression(solver="saga", **params, **OURS_TIGHT),
        linear_model.LogisticRegression(**params, **SAGA_TIGHT),
        X,
        y,
        sw,
    )
    s = weights_of(ref.classes_, y, sw, cw)
    got = objective(ours.coef_, ours.intercept_, X, y, ours.classes_, C, l1_ratio, s)
    want = objective(ref.coef_, ref.intercept_, X, y, ref.classes_, C, l1_ratio, s)
    assert got <= want * (1 + RELATIVE)
    assert ours.coef_.shape == ref.coef_.shape and ours.intercept_.shape == ref.intercept_.shape
    if l1_ratio > 0:
        zeros = ours.coef_ == 0
        assert zeros.any()  # exact zeros, not small numbers
        # The zeros are scikit-learn's (its coefficients below 1e-8 count as its zeros: saga
        # reaches them only as far as its tol).
        np.testing.assert_array_equal(zeros, np.abs(ref.coef_) < 1e-8)


def test_float32_input_gives_a_float32_fit_at_the_same_objective():
    X, y = blobs(300, 8, 3, 21)
    X32 = X.astype(np.float32)
    ours = LogisticRegression(solver="saga", C=0.05, l1_ratio=0.5, tol=1e-7, max_iter=2000)
    ours.fit(X32, y)
    ref = linear_model.LogisticRegression(C=0.05, l1_ratio=0.5, **SAGA_TIGHT).fit(X, y)
    assert ours.coef_.dtype == np.float32
    s = np.ones(len(y))
    got = objective(ours.coef_, ours.intercept_, X, y, ours.classes_, 0.05, 0.5, s)
    want = objective(ref.coef_, ref.intercept_, X, y, ref.classes_, 0.05, 0.5, s)
    assert got <= want * (1 + 1e-5)


def test_stronger_l1_gives_more_zeros_and_warm_start_keeps_the_answer():
    X, y = blobs(300, 8, 3, 22)
    counts = []
    for C in (1.0, 0.1, 0.01):
        est = LogisticRegression(solver="saga", l1_ratio=1.0, C=C, dtype="float64").fit(X, y)
        counts.append(int((est.coef_ == 0).sum()))
    assert counts[0] < counts[1] < counts[2]
    est = LogisticRegression(solver="saga", l1_ratio=1.0, C=0.1, warm_start=True, **OURS_TIGHT)
    first = est.fit(X, y).coef_.copy()
    again = est.fit(X, y)
    np.testing.assert_allclose(again.coef_, first, atol=1e-6)
    assert again.n_iter_[0] <= 3


# --------------------------------------------------------------------------- liblinear


@pytest.mark.parametrize("l1_ratio", [1.0, 0.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_liblinear_reaches_liblinears_objective(l1_ratio, weighted):
    X, y = blobs(300, 8, 2, 23)
    sw = np.random.default_rng(2).uniform(0.5, 2.0, len(y)) if weighted else None
    cw = {0: 2.0, 1: 0.5} if weighted else None
    params = {"l1_ratio": l1_ratio, "C": 0.1, "intercept_scaling": 2.0, "class_weight": cw}
    ours, ref = _fit_both(
        LogisticRegression(solver="liblinear", **params, **OURS_TIGHT),
        linear_model.LogisticRegression(solver="liblinear", tol=1e-10, max_iter=20000, **params),
        X,
        y,
        sw,
    )
    s = weights_of(ref.classes_, y, sw, cw)
    got = objective(ours.coef_, ours.intercept_, X, y, ours.classes_, 0.1, l1_ratio, s, 2.0)
    want = objective(ref.coef_, ref.intercept_, X, y, ref.classes_, 0.1, l1_ratio, s, 2.0)
    assert got <= want * (1 + RELATIVE)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=1e-5)
    if l1_ratio == 1:
        np.testing.assert_array_equal(ours.coef_ == 0, ref.coef_ == 0)
        assert (ours.coef_ == 0).any()


def test_liblinear_dual_is_the_same_minimiser():
    """scikit-learn's dual solver stops short at a tight tol; its primal one is the
    reference (the same minimiser)."""
    X, y = blobs(200, 6, 2, 24)
    primal = LogisticRegression(solver="liblinear", **OURS_TIGHT).fit(X, y)
    dual = LogisticRegression(solver="liblinear", dual=True, **OURS_TIGHT).fit(X, y)
    ref = linear_model.LogisticRegression(solver="liblinear", tol=1e-10, max_iter=20000)
    ref.fit(X, y)
    np.testing.assert_array_equal(primal.coef_, dual.coef_)
    np.testing.assert_allclose(dual.coef_, ref.coef_, atol=1e-5)


@pytest.mark.parametrize(
    "params",
    [
        {"l1_ratio": 1.0, "solver": "liblinear"},
        {"l1_ratio": 0.0, "solver": "liblinear", "class_weight": "balanced"},
        {"l1_ratio": 0.5, "solver": "saga"},
    ],
)
def test_one_vs_rest_fits_the_binary_problems_at_once(params):
    X, y = blobs(300, 6, 4, 25)
    C = 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = OneVsRestClassifier(LogisticRegression(C=C, **params, **OURS_TIGHT)).fit(X, y)
        sk = {"tol": 1e-10, "max_iter": 20000}
        ref = multiclass.OneVsRestClassifier(linear_model.LogisticRegression(C=C, **params, **sk))
        ref.fit(X, y)
    assert len(ours.estimators_) == len(ref.estimators_) == 4
    scaling = 1.0 if params["solver"] == "liblinear" else None
    l1_ratio = params["l1_ratio"]
    for k, (a, b) in enumerate(zip(ours.estimators_, ref.estimators_, strict=True)):
        yk = (y == ours.classes_[k]).astype(int)
        s = weights_of(np.array([0, 1]), yk, None, params.get("class_weight"))
        got = objective(a.coef_, a.intercept_, X, yk, np.array([0, 1]), C, l1_ratio, s, scaling)
        want = objective(b.coef_, b.intercept_, X, yk, np.array([0, 1]), C, l1_ratio, s, scaling)
        assert got <= want * (1 + RELATIVE)
        assert a.coef_.shape == b.coef_.shape == (1, X.shape[1])
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    assert (ours.predict(X) == ref.predict(X)).mean() >= 0.99
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-4)


def _text_like(n=400, d=300, k=5, seed=40):
    """Sparse rows of unit norm, a few informative terms per class (TF-IDF's shape)."""
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = sp.random(n, d, density=0.05, format="lil", random_state=rng)
    for i, c in enumerate(y):
        X[i, rng.integers(0, 10, 3) + 10 * c] = rng.uniform(0.5, 1.5, 3)
    X = X.tocsr()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X, y


def _liblinear_case(case: str):
    """(X, y, C) of a liblinear one-vs-rest case: digits (C = 0.1), or text-like rows
    (C = 10), sparse or, with "dense" in the case's name, dense."""
    if case.startswith("digits"):
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return X, y, 0.1
    X, y = _text_like()
    return (X.toarray() if "dense" in case else X), y, 10.0


@pytest.mark.parametrize(
    "case",
    [
        "digits",
        "digits-weighted",
        "text-sparse",
        "text-sparse-weighted",
        "text-dense-no-intercept",
    ],
)
def test_liblinear_l2_one_vs_rest_at_default_tol_ends_at_or_below_liblinears(case):
    """liblinear's L2 model at scikit-learn's default tol, by Newton's method: scikit-learn's
    objective at our coefficients at most its own at liblinear's (+1e-6 relative), every
    binary problem, in a handful of Newton iterations."""
    X, y, C = _liblinear_case(case)
    weighted = "weighted" in case
    sw = np.random.default_rng(3).uniform(0.2, 3.0, len(y)) if weighted else None
    params = {"C": C, "solver": "liblinear", "class_weight": "balanced" if weighted else None}
    params["fit_intercept"] = "no-intercept" not in case
    params["intercept_scaling"] = 2.0 if weighted else 1.0
    import sklearn

    with sklearn.config_context(enable_metadata_routing=True):
        ours_est = LogisticRegression(dtype="float64", **params)
        ref_est = linear_model.LogisticRegression(**params)
        for est in (ours_est, ref_est):
            est.set_fit_request(sample_weight=True)
        ours, ref = _fit_both(
            OneVsRestClassifier(ours_est),
            multiclass.OneVsRestClassifier(ref_est),
            X,
            y,
            sw,
        )
    dense = X.toarray() if hasattr(X, "toarray") else np.asarray(X, np.float64)
    scaling = params["intercept_scaling"]
    for k, (a, b) in enumerate(zip(ours.estimators_, ref.estimators_, strict=True)):
        yk = (y == ours.classes_[k]).astype(int)
        s = weights_of(np.array([0, 1]), yk, sw, params["class_weight"])
        got = objective(a.coef_, a.intercept_, dense, yk, np.array([0, 1]), C, 0.0, s, scaling)
        want = objective(b.coef_, b.intercept_, dense, yk, np.array([0, 1]), C, 0.0, s, scaling)
        assert got <= want * (1 + RELATIVE), (k, got, want)
    assert ours.estimators_[0].n_iter_[0] <= 15


@pytest.mark.parametrize(
    "case", ["digits", "digits-weighted", "text-dense", "text-dense-no-intercept"]
)
def test_liblinear_l1_one_vs_rest_at_default_tol_ends_at_or_below_liblinears(case, monkeypatch):
    """liblinear's L1 model at scikit-learn's default tol, by the proximal Newton method
    (:func:`softmax_regression.solver.newton_l1`, dense rows here; sparse ones too):
    scikit-learn's objective at our coefficients at most its own at liblinear's (+1e-6
    relative), every binary problem."""
    from softmax_regression.sklearn import _problem

    used = []
    original = _problem.newton_l1
    monkeypatch.setattr(_problem, "newton_l1", lambda *a, **k: used.append(1) or original(*a, **k))
    X, y, C = _liblinear_case(case)
    weighted = "weighted" in case
    sw = np.random.default_rng(4).uniform(0.2, 3.0, len(y)) if weighted else None
    params = {"C": C, "l1_ratio": 1.0, "solver": "liblinear"}
    params["class_weight"] = "balanced" if weighted else None
    params["fit_intercept"] = "no-intercept" not in case
    params["intercept_scaling"] = 2.0 if weighted else 1.0
    import sklearn

    with sklearn.config_context(enable_metadata_routing=True):
        ours_est = LogisticRegression(dtype="float64", **params)
        ref_est = linear_model.LogisticRegression(**params)
        for est in (ours_est, ref_est):
            est.set_fit_request(sample_weight=True)
        ours, ref = _fit_both(
            OneVsRestClassifier(ours_est), multiclass.OneVsRestClassifier(ref_est), X, y, sw
        )
    assert used
    dense = X.toarray() if hasattr(X, "toarray") else np.asarray(X, np.float64)
    scaling = params["intercept_scaling"]
    for k, (a, b) in enumerate(zip(ours.estimators_, ref.estimators_, strict=True)):
        yk = (y == ours.classes_[k]).astype(int)
        s = weights_of(np.array([0, 1]), yk, sw, params["class_weight"])
        got = objective(a.coef_, a.intercept_, dense, yk, np.array([0, 1]), C, 1.0, s, scaling)
        want = objective(b.coef_, b.intercept_, dense, yk, np.array([0, 1]), C, 1.0, s, scaling)
        assert got <= want * (1 + RELATIVE), (k, got, want)
    zeros = np.mean([(a.coef_ == 0).mean() for a in ours.estimators_])
    assert zeros > 0.2


def test_liblinear_l1_on_rows_from_disk_and_sparse_rows_is_the_in_memory_fit(tmp_path):
    """liblinear's L1 model on a memory-mapped .npy (rows read from disk block by block by
    every pass of the proximal Newton method) and on the same rows as a scipy CSR matrix:
    the in-memory dense fit's coefficients, its exact zeros the same ones."""
    sp = pytest.importorskip("scipy.sparse")
    X, y = blobs(400, 12, 3, 31)
    X[:, :3] = 0.0  # inputs that never move from zero
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    params = {"solver": "liblinear", "l1_ratio": 1.0, "C": 0.02, "dtype": "float64", "tol": 1e-8}
    memory = OneVsRestClassifier(LogisticRegression(**params)).fit(X, y)
    zeros = np.concatenate([e.coef_.ravel() == 0 for e in memory.estimators_])
    assert 0.25 < zeros.mean() < 1
    for rows in (mapped, sp.csr_matrix(X)):
        other = OneVsRestClassifier(LogisticRegression(**params)).fit(rows, y)
        for a, b in zip(other.estimators_, memory.estimators_, strict=True):
            np.testing.assert_array_equal(a.coef_ == 0, b.coef_ == 0)
            np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-7)
            np.testing.assert_allclose(a.intercept_, b.intercept_, atol=1e-7)


def test_newton_hessian_products_match_the_gradient():
    """The one-vs-rest objective's Hessian-vector products and Hessian diagonal, which
    liblinear's L2 fit steps by, against central differences of its exact gradient."""
    import torch

    from softmax_regression.linear_loss import SoftmaxLoss

    X, y = blobs(120, 5, 3, 41)
    rng = np.random.default_rng(4)
    x = torch.tensor(X)
    sw = torch.tensor(rng.uniform(0.5, 2.0, len(y)))
    factors = torch.tensor(rng.uniform(0.5, 2.0, (2, 3)))
    loss = SoftmaxLoss(
        x, torch.tensor(y), 0.01, sample_weight=sw, one_vs_rest=True, class_factors=factors
    )
    w, b = torch.tensor(rng.normal(size=(3, 5)) * 0.3), torch.tensor(rng.normal(size=3))
    f, gw, gb, h = loss.problem_terms(w, b, curvature=True)
    total, *_ = loss.loss_gradient(w, b)
    torch.testing.assert_close(f.sum(), total)
    v_w, v_b = torch.tensor(rng.normal(size=(3, 5))), torch.tensor(rng.normal(size=3))
    eps = 1e-6
    _, gw_p, gb_p = loss.loss_gradient(w + eps * v_w, b + eps * v_b)
    _, gw_m, gb_m = loss.loss_gradient(w - eps * v_w, b - eps * v_b)
    hv_w, hv_b = loss.hessian_vector(h, v_w, v_b)
    torch.testing.assert_close(hv_w, (gw_p - gw_m) / (2 * eps), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(hv_b, (gb_p - gb_m) / (2 * eps), rtol=1e-6, atol=1e-8)
    loss.weight_decay = 0.0
    diag_w, diag_b = loss.hessian_diagonal(h)
    for j in range(5):
        e = torch.zeros(3, 5, dtype=torch.float64)
        e[:, j] = 1.0
        hv_w, _ = loss.hessian_vector(h, e, torch.zeros(3, dtype=torch.float64))
        torch.testing.assert_close(diag_w[:, j], hv_w[:, j])
    _, hv_b = loss.hessian_vector(h, torch.zeros(3, 5, dtype=torch.float64), torch.ones(3))
    torch.testing.assert_close(diag_b, hv_b)
    whole = loss.hessians(h)  # (K, D + 1, D + 1), the bias last
    v = torch.cat([v_w, v_b.unsqueeze(1)], 1)
    hv_w, hv_b = loss.hessian_vector(h, v_w, v_b)
    product = (whole @ v.unsqueeze(2)).squeeze(2)
    torch.testing.assert_close(product, torch.cat([hv_w, hv_b.unsqueeze(1)], 1))


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_working_set_hessians_are_the_whole_hessians_rows_and_columns(fit_intercept):
    """Each problem's Hessian on its own working set (liblinear's L1 model by proximal
    Newton), from dense rows and from sparse ones, weighted: the whole Hessian's rows and
    columns at that set, in its order, and zero past the set's size."""
    import torch

    sp = pytest.importorskip("scipy.sparse")
    from softmax_regression.linear_loss import SoftmaxLoss

    X, y = blobs(150, 6, 3, 43)
    X[np.abs(X) < 1.0] = 0.0  # sparse rows with explicit structure
    rng = np.random.default_rng(5)
    sw = torch.tensor(rng.uniform(0.5, 2.0, len(y)))
    factors = torch.tensor(rng.uniform(0.5, 2.0, (2, 3)))
    common = {"sample_weight": sw, "one_vs_rest": True, "class_factors": factors}
    common["fit_intercept"] = fit_intercept
    dense = SoftmaxLoss(torch.tensor(X), torch.tensor(y), **common)
    w, b = torch.tensor(rng.normal(size=(3, 6)) * 0.3), torch.tensor(rng.normal(size=3))
    *_, h = dense.problem_terms(w, b, curvature=True)
    whole = dense.hessians(h)
    bias = 6 if fit_intercept else 0
    columns = torch.tensor([[0, 3, bias, 0], [5, 1, 0, 0], [bias, 2, 4, 5]])
    counts = torch.tensor([3, 2, 4])
    sparse = SoftmaxLoss(sp.csr_matrix(X), torch.tensor(y), **common)
    for loss in (dense, sparse):
        got = loss.working_set_hessians(h, columns, counts, dtype=torch.float64)
        assert got.shape == (3, 4, 4)
        for p, size in enumerate(counts.tolist()):
            at = columns[p, :size]
            torch.testing.assert_close(got[p, :size, :size], whole[p][at][:, at])
            assert not got[p, size:].any() and not got[p, :, size:].any()


def _quadratic_models(seed, problems=5, size=7):
    import torch

    rng = np.random.default_rng(seed)
    a = rng.normal(size=(problems, 20, size))
    hess = torch.tensor(a.transpose(0, 2, 1) @ a / 20)
    grad = torch.tensor(rng.normal(size=(problems, size)))
    theta = torch.tensor(rng.normal(size=(problems, size)) * (rng.random((problems, size)) < 0.5))
    lam = torch.full((problems, size), 0.6, dtype=torch.float64)
    return hess, grad, theta, lam


def _model(hess, grad, theta, lam, u):
    v = u - theta
    return (
        (grad * v).sum(1)
        + 0.5 * (v * (hess @ v.unsqueeze(2)).squeeze(2)).sum(1)
        + (lam * u.abs()).sum(1)
    )


def test_l1_inner_solver_reaches_the_models_minimiser_and_never_rises():
    """Proximal Newton's inner solver (coordinate descent, then an orthant step) on random
    quadratic models plus an L1 term: run long, at the minimiser (the subgradient
    conditions hold, its zeros exact); run as the fits run it, the model lower than at the
    start and the L1 term's zeros exact."""
    from softmax_regression.solver import _l1_quadratic

    hess, grad, theta, lam = _quadratic_models(6)
    u = _l1_quadratic(hess, grad, theta, lam, sweeps=300, steps=2)
    smooth = grad + (hess @ (u - theta).unsqueeze(2)).squeeze(2)
    at = u != 0
    assert 0 < at.float().mean() < 1
    np.testing.assert_allclose((smooth + lam * u.sign())[at], 0.0, atol=1e-7)
    assert bool((smooth[~at].abs() <= lam[~at] + 1e-7).all())
    quick = _l1_quadratic(hess, grad, theta, lam)
    start = _model(hess, grad, theta, lam, theta)
    assert bool((_model(hess, grad, theta, lam, quick) < start).all())
    assert bool((quick == 0).any())
    best = _model(hess, grad, theta, lam, u)
    assert bool((best <= _model(hess, grad, theta, lam, quick) + 1e-12).all())


def test_l1_inner_solver_bounds_a_move_along_a_flat_coordinate():
    """A coordinate with almost no curvature (its rows all fitted) whose gradient passes
    the L1 weight: the model's minimiser along it is 1e9 away; the inner solver moves it at
    most liblinear's bound (10), so that the line search can find a decrease."""
    from softmax_regression.solver import MAX_MOVE, _l1_quadratic

    hess, grad, theta, lam = _quadratic_models(7, problems=2, size=4)
    hess[:, 2, :] = 0.0
    hess[:, :, 2] = 0.0
    hess[:, 2, 2] = 1e-12
    grad[:, 2] = 2e-3
    lam[:, 2] = 1e-3
    theta[:, 2] = 0.0
    u = _l1_quadratic(hess, grad, theta, lam)
    assert bool(((u - theta).abs() <= MAX_MOVE).all())
    np.testing.assert_allclose(u[:, 2], -MAX_MOVE)


# --------------------------------------------------------------------------- the CV


def test_cv_over_l1_ratios_matches_sklearns():
    X, y = blobs(240, 5, 3, 26, spread=3.0)
    params = {"Cs": [0.01, 0.1, 1.0], "cv": 3, "l1_ratios": (0.0, 0.5, 1.0), "solver": "saga"}
    params |= {"scoring": "neg_log_loss", "use_legacy_attributes": False}
    ours = LogisticRegressionCV(tol=1e-9, max_iter=2000, dtype="float64", **params).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = linear_model.LogisticRegressionCV(tol=1e-8, max_iter=5000, **params).fit(X, y)
    for name in ("coefs_paths_", "scores_", "n_iter_", "l1_ratios_"):
        assert np.shape(getattr(ours, name)) == np.shape(getattr(ref, name)), name
    np.testing.assert_allclose(ours.scores_, ref.scores_, atol=1e-4)
    assert ours.C_ == ref.C_ and ours.l1_ratio_ == ref.l1_ratio_
    s = np.ones(len(y))
    got = objective(ours.coef_, ours.intercept_, X, y, ours.classes_, ours.C_, ours.l1_ratio_, s)
    want = objective(ref.coef_, ref.intercept_, X, y, ref.classes_, ref.C_, ref.l1_ratio_, s)
    assert got <= want * (1 + RELATIVE)


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("k", [2, 3])
def test_cv_attribute_shapes_with_l1_ratios_are_sklearns(legacy, k):
    X, y = blobs(120, 4, k, 27)
    params = {"Cs": 3, "cv": 2, "l1_ratios": (0.2, 1.0), "use_legacy_attributes": legacy}
    params |= {"scoring": "accuracy", "max_iter": 50, "solver": "saga"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, ConvergenceWarning))
        ours = LogisticRegressionCV(**params).fit(X, y)
        ref = linear_model.LogisticRegressionCV(**params).fit(X, y)
    assert_cv_attribute_shapes_equal(ours, ref)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "params, k, message",
    [
        ({"l1_ratio": 1.0}, 3, "Solver lbfgs supports only 'l2' or None penalties"),
        ({"l1_ratio": 0.5, "solver": "liblinear"}, 2, "Only 'saga' solver supports elasticnet"),
        ({"solver": "liblinear"}, 3, "does not support multiclass"),
        ({"solver": "liblinear", "C": np.inf}, 2, "not supported for the liblinear solver"),
        ({"solver": "liblinear", "l1_ratio": 1.0, "dual": True}, 2, "dual=True"),
        ({"dual": True}, 2, "Solver lbfgs supports only dual=False"),
        ({"l1_ratio": 1.5, "solver": "saga"}, 2, "l1_ratio must be a number in"),
        ({"solver": "liblinear", "intercept_scaling": 0}, 2, "intercept_scaling must be"),
    ],
)
def test_unsupported_pairings_raise_sklearns_valueerror(params, k, message):
    X, y = blobs(60, 3, k, 28)
    with pytest.raises(ValueError, match=message):
        LogisticRegression(**params).fit(X, y)


def test_cv_l1_ratios_need_saga_and_numbers_in_range():
    X, y = blobs(60, 3, 3, 29)
    quiet = {"scoring": "accuracy", "use_legacy_attributes": False}
    with pytest.raises(ValueError, match="Solver lbfgs supports only 'l2' or None penalties"):
        LogisticRegressionCV(l1_ratios=(0.5,), **quiet).fit(X, y)
    with pytest.raises(ValueError, match="Only 'saga' solver supports elasticnet"):
        LogisticRegressionCV(l1_ratios=(0.5,), solver="liblinear", **quiet).fit(X, y)
    with pytest.raises(ValueError, match="l1_ratios must be an array-like"):
        LogisticRegressionCV(l1_ratios=(2.0,), solver="saga", **quiet).fit(X, y)


# --------------------------------------------------------------------------- sparse rows


@pytest.mark.parametrize("k", [2, 4])
def test_sparse_rows_reach_sagas_and_liblinears_objective(k):
    """scipy CSR rows, never densified: the same objective as scikit-learn's on them."""
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(30 + k)
    X = sp.random(300, 40, density=0.1, format="csr", random_state=rng) * 3.0
    y = (np.asarray(X[:, :k].sum(axis=1)).ravel() * 2 + rng.normal(size=300)).round().clip(0, k - 1)
    y = y.astype(int)
    dense = X.toarray()
    s = np.ones(len(y))
    ours, ref = _fit_both(
        LogisticRegression(solver="saga", C=1.0, l1_ratio=1.0, **OURS_TIGHT),
        linear_model.LogisticRegression(C=1.0, l1_ratio=1.0, **SAGA_TIGHT),
        X,
        y,
    )
    got = objective(ours.coef_, ours.intercept_, dense, y, ours.classes_, 1.0, 1.0, s)
    want = objective(ref.coef_, ref.intercept_, dense, y, ref.classes_, 1.0, 1.0, s)
    assert got <= want * (1 + RELATIVE)
    assert (ours.coef_ == 0).any()
    if k == 2:
        ours, ref = _fit_both(
            LogisticRegression(solver="liblinear", C=1.0, l1_ratio=1.0, **OURS_TIGHT),
            linear_model.LogisticRegression(
                solver="liblinear", C=1.0, l1_ratio=1.0, tol=1e-10, max_iter=20000
            ),
            X,
            y,
        )
        got = objective(ours.coef_, ours.intercept_, dense, y, ours.classes_, 1.0, 1.0, s, 1.0)
        want = objective(ref.coef_, ref.intercept_, dense, y, ref.classes_, 1.0, 1.0, s, 1.0)
        assert got <= want * (1 + RELATIVE)
