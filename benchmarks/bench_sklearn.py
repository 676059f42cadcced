"""``softmax_regression.sklearn`` beside scikit-learn, side by side in one run.

(a) 50,000 x 512 float32 synthetic features, 100 classes (Gaussian class means + noise,
    seeded: a linear-probe-like problem);
(b) Fashion-MNIST's 60,000 x 784 training pixels, 10 classes, standardised;
(c) LogisticRegressionCV, 10 Cs x 5 folds, on a smaller problem (sklearn's would take far
    too long on (a) or (b)): 10,000 x 128 float32 features, 20 classes.

scikit-learn as people run it: ``LogisticRegression(solver="lbfgs", max_iter=1000)``, default
``tol``; ours with the same ``tol`` and ``max_iter`` (float32, the default). Each time is
printed beside the objective's relative gap to scikit-learn's lbfgs
(``C * sum_i logloss_i + ||W||^2 / 2``, evaluated here in float64 numpy): negative means ours
ends lower. ``--others`` adds scikit-learn's other solvers where they finish in reasonable time.

    .venv/bin/python benchmarks/bench_sklearn.py [--only a,b,c] [--others] [--repeats 1]
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


def fashion():
    train = load_fashion_mnist("train")
    X = train.images.reshape(len(train), -1).numpy().astype(np.float32) / 255
    std = X.std(0)
    X = (X - X.mean(0)) / np.where(std < 1e-6, 1.0, std)
    return X.astype(np.float32), train.labels.numpy()


def timed(make, X, y, repeats):
    times, est = [], None
    for _ in range(repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = make()
            t = time.perf_counter()
            est.fit(X, y)
            times.append(time.perf_counter() - t)
    return min(times), est


def row(name, seconds, est, ref_obj, ref_s, X, y, C=1.0):
    obj = objective(est, X, y, C)
    gap = (obj - ref_obj) / abs(ref_obj)
    n_iter = int(np.ravel(est.n_iter_).max())
    speed = ref_s / seconds
    print(
        f"| {name} | {seconds:8.2f} s | {n_iter:5d} | {obj:.8g} | {gap:+.2e} | {speed:6.1f}x |",
        flush=True,
    )


def single(title, X, y, repeats, others):
    print(f"\n### {title}: {X.shape[0]:,} x {X.shape[1]}, {len(np.unique(y))} classes")
    print("| fit | time | iterations | objective | gap to sklearn lbfgs | speed-up |")
    print("|---|---|---|---|---|---|")
    ref_s, ref = timed(lambda: linear_model.LogisticRegression(max_iter=1000), X, y, 1)
    ref_obj = objective(ref, X, y)
    row("scikit-learn lbfgs", ref_s, ref, ref_obj, ref_s, X, y)
    ours_s, ours = timed(lambda: LogisticRegression(max_iter=1000), X, y, repeats)
    row("ours, float32", ours_s, ours, ref_obj, ref_s, X, y)
    ours_s, ours = timed(lambda: LogisticRegression(max_iter=1000, dtype="float64"), X, y, 1)
    row("ours, float64", ours_s, ours, ref_obj, ref_s, X, y)
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
        ours_s, ours = timed(lambda: LogisticRegressionCV(**params), X, y, repeats)
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
    ap.add_argument("--only", default="a,b,c")
    ap.add_argument("--others", action="store_true", help="also scikit-learn's other solvers")
    ap.add_argument("--repeats", type=int, default=1, help="fits of ours per case (best taken)")
    args = ap.parse_args()
    print(
        f"scikit-learn {sklearn.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {'/'.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    only = set(args.only.split(","))
    if "a" in only:
        X, y = synthetic(50_000, 512, 100, 0)
        single("(a) synthetic features", X, y, args.repeats, args.others)
    if "b" in only:
        X, y = fashion()
        single("(b) Fashion-MNIST pixels, standardised", X, y, args.repeats, args.others)
    if "c" in only:
        cv(args.repeats)
    print(f"load at the end {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
