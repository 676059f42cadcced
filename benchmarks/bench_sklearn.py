"""``softmax_regression.sklearn`` beside scikit-learn, side by side in one run.

(a) 50,000 x 512 float32 synthetic features, 100 classes (Gaussian class means + noise,
    seeded: a linear-probe-like problem);
(w) a well-conditioned problem, where scikit-learn's lbfgs needs a dozen iterations:
    ``make_classification`` 50,000 x 512, 100 classes, standardised, float32;
(b) Fashion-MNIST's 60,000 x 784 training pixels, 10 classes, standardised;
(t) text: TF-IDF rows (scipy CSR, float64) of the installed packages' Python files labelled
    by package, 30 classes (``benchmarks/text_corpus.py``);
(c) LogisticRegressionCV, 10 Cs x 5 folds, on a smaller problem (sklearn's would take far
    too long on (a) or (b)): 10,000 x 128 float32 features, 20 classes.

scikit-learn as people run it: ``LogisticRegression(solver="lbfgs", max_iter=1000)``, default
``tol``; Intel's scikit-learn-intelex (``sklearnex``, the same one-import promise on oneDAL)
when it is installed; ours with the same ``tol`` and ``max_iter`` and the default ``dtype``
(the input's), on the case's rows and, for float32 cases, on the same rows as float64 (a
float64 answer). Every fit is run ``--repeats`` times (scikit-learn's slow ones
``--sklearn-repeats`` times): the table shows the fastest and the range. Each time is printed
beside the objective's relative gap to scikit-learn's lbfgs (``C * sum_i logloss_i +
||W||^2 / 2``, evaluated here in float64 numpy): negative means it ends lower. ``--others``
adds scikit-learn's other solvers where they finish in reasonable time.

    .venv/bin/python benchmarks/bench_sklearn.py [--only a,w,b,t,c] [--others] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import sklearn
import torch
from sklearn import linear_model
from sklearn.exceptions import ConvergenceWarning

from softmax_regression import load_fashion_mnist
from softmax_regression.sklearn import LogisticRegression, LogisticRegressionCV


def objective(est, X, y, C=1.0) -> float:
    idx = np.searchsorted(est.classes_, y)
    coef = np.asarray(est.coef_, np.float64)
    total = 0.0
    for lo in range(0, len(y), 8192):  # in blocks: bounded float64 temporaries
        z = np.asarray(X[lo : lo + 8192].astype(np.float64) @ coef.T) + est.intercept_
        if z.shape[1] == 1:
            z = np.hstack([np.zeros_like(z), z])
        top = z.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
        total += float((lse - z[np.arange(len(z)), idx[lo : lo + 8192]]).sum())
    return C * total + 0.5 * float((coef**2).sum())


def synthetic(n, d, k, seed, noise=12.0):
    """Features of a frozen network as a probe sees them: Gaussian class means plus noise,
    mixed by a random rotation with a decaying spectrum (correlated, unequally scaled
    features), and an offset; seeded."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d))
    y = rng.integers(0, k, n)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    mix = (q * np.logspace(0, -1.5, d)).astype(np.float32)
    z = (means[y] + noise * rng.normal(size=(n, d))).astype(np.float32)
    X = z @ mix + rng.normal(size=d).astype(np.float32)
    return X.astype(np.float32), y


def well_conditioned():
    """make_classification's Gaussian clusters, standardised: a dozen lbfgs iterations."""
    from sklearn.datasets import make_classification
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(
        50_000, 512, n_informative=400, n_classes=100, n_clusters_per_class=1, random_state=0
    )
    return StandardScaler().fit_transform(X).astype(np.float32), y


def fashion():
    train = load_fashion_mnist("train")
    X = train.images.reshape(len(train), -1).numpy().astype(np.float32) / 255
    std = X.std(0)
    X = (X - X.mean(0)) / np.where(std < 1e-6, 1.0, std)
    return X.astype(np.float32), train.labels.numpy()


def timed(make, X, y, repeats):
    """(times of ``repeats`` fits, the last fitted estimator)."""
    times, est = [], None
    for _ in range(repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = make()
            t = time.perf_counter()
            est.fit(X, y)
            times.append(time.perf_counter() - t)
    return times, est


def row(name, times, est, ref_obj, ref_s, X, y, C=1.0):
    obj = objective(est, X, y, C)
    gap = (obj - ref_obj) / abs(ref_obj)
    n_iter = int(np.ravel(est.n_iter_).max())
    best, worst = min(times), max(times)
    spread = f"{best:.2f}-{worst:.2f} s" if len(times) > 1 else "-"
    print(
        f"| {name} | {best:8.2f} s | {spread} | {n_iter:5d} | {obj:.8g} | {gap:+.2e} | "
        f"{ref_s / best:6.1f}x |",
        flush=True,
    )
    return best


def intelex():
    """scikit-learn-intelex's LogisticRegression, or None when it is not installed."""
    try:
        from sklearnex.linear_model import LogisticRegression as IntelLogisticRegression
    except ImportError:
        return None
    return IntelLogisticRegression


def single(title, X, y, repeats, others, sklearn_repeats=1):
    shape = f"{X.shape[0]:,} x {X.shape[1]:,}"
    print(f"\n### {title}: {shape}, {len(np.unique(y))} classes, {X.dtype}")
    print("| fit | fastest | range | iterations | objective | gap to sklearn lbfgs | speed-up |")
    print("|---|---|---|---|---|---|---|")
    times, ref = timed(
        lambda: linear_model.LogisticRegression(max_iter=1000), X, y, sklearn_repeats
    )
    ref_s, ref_obj = min(times), objective(ref, X, y)
    row("scikit-learn lbfgs", times, ref, ref_obj, ref_s, X, y)
    intel = intelex()
    if intel is not None:
        times, est = timed(lambda: intel(max_iter=1000), X, y, sklearn_repeats)
        row("scikit-learn-intelex", times, est, ref_obj, ref_s, X, y)
    times, ours = timed(lambda: LogisticRegression(max_iter=1000), X, y, repeats)
    row(f"ours ({X.dtype} answer)", times, ours, ref_obj, ref_s, X, y)
    if X.dtype == np.float32:
        X64 = X.astype(np.float64)
        times, est = timed(lambda: LogisticRegression(max_iter=1000), X64, y, repeats)
        row("ours, the rows as float64 (float64 answer)", times, est, ref_obj, ref_s, X64, y)
        del X64
    acc = (ours.predict(X) == ref.predict(X)).mean()
    print(f"predictions agreeing with scikit-learn's: {acc:.4f}")
    if others:
        for solver in ("newton-cg", "sag", "saga"):
            s, est = timed(
                lambda solver=solver: linear_model.LogisticRegression(solver=solver, max_iter=1000),
                X,
                y,
                1,
            )
            row(f"scikit-learn {solver}", s, est, ref_obj, ref_s, X, y)


def cv(repeats):
    X, y = synthetic(10_000, 128, 20, 2)
    print(f"\n### LogisticRegressionCV, 10 Cs x 5 folds: {X.shape[0]:,} x {X.shape[1]}, 20 classes")
    print("| fit | time | chosen C | objective at C | gap | speed-up |")
    print("|---|---|---|---|---|---|")
    params = {"Cs": 10, "cv": 5, "max_iter": 1000, "l1_ratios": None, "scoring": None}
    params["use_legacy_attributes"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, FutureWarning))
        t = time.perf_counter()
        ref = linear_model.LogisticRegressionCV(**params).fit(X, y)
        ref_s = time.perf_counter() - t
        times, ours = timed(lambda: LogisticRegressionCV(**params), X, y, repeats)
    ours_s = min(times)
    C = float(ref.C_[0])
    ref_obj = objective(ref, X, y, C)
    for name, s, est in (("scikit-learn", ref_s, ref), ("ours, float32", ours_s, ours)):
        obj = objective(est, X, y, float(est.C_[0]))
        print(
            f"| {name} | {s:8.2f} s | {float(est.C_[0]):.4g} | {obj:.8g} | "
            f"{(obj - ref_obj) / abs(ref_obj):+.2e} | {ref_s / s:6.1f}x |",
            flush=True,
        )
    best = ref.scores_[ref.classes_[0]].mean(0).max(), ours.scores_[ours.classes_[0]].mean(0).max()
    print(f"best mean fold accuracy: scikit-learn {best[0]:.4f}, ours {best[1]:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="a,w,b,t,c")
    ap.add_argument("--others", action="store_true", help="also scikit-learn's other solvers")
    ap.add_argument("--repeats", type=int, default=3, help="fits of ours per case")
    ap.add_argument(
        "--sklearn-repeats", type=int, default=1, help="fits of scikit-learn's per case"
    )
    args = ap.parse_args()
    print(
        f"scikit-learn {sklearn.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {'/'.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    only = set(args.only.split(","))
    reps = (args.repeats, args.others, args.sklearn_repeats)
    if "a" in only:
        X, y = synthetic(50_000, 512, 100, 0)
        single("(a) synthetic features", X, y, *reps)
    if "w" in only:
        X, y = well_conditioned()
        single("(w) well-conditioned, make_classification", X, y, *reps)
    if "b" in only:
        X, y = fashion()
        single("(b) Fashion-MNIST pixels, standardised", X, y, *reps)
    if "t" in only:
        from text_corpus import tfidf

        X, y, _ = tfidf()
        single("(t) text, TF-IDF of Python files by package (CSR)", X, y, *reps)
    if "c" in only:
        cv(args.repeats)
    print(f"load at the end {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
