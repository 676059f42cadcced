"""L1, elastic net and liblinear's model: ``softmax_regression.sklearn`` beside scikit-learn,
side by side in one run.

(pixels) Fashion-MNIST training pixels, the first ``--rows`` rows, standardised; 10 classes;
(text)   TF-IDF of the Python files of the packages installed beside this one (a file's class
         is its package: the 30 packages with the most files, at most 60 files each), the
         ``--vocabulary`` most frequent terms, as a dense array;
(digits) scikit-learn's 8x8 digits, 10 classes, raw (0..16);
(sparse-text, not by default) ``benchmarks/text_corpus.py``'s corpus at full size, every
         term, as a scipy CSR matrix (liblinear's rows only).

scikit-learn as people run it, default ``tol``: ``saga`` (``max_iter=1000``) for the
multinomial L1 and elastic-net fits (``l1_ratio`` 1 and 0.5), and
``OneVsRestClassifier(LogisticRegression(solver="liblinear"))`` for the one-vs-rest L1 and L2
fits; ``C`` 0.05 on pixels, 10 on text (its rows have unit norm: a smaller C leaves every
coefficient at zero), 0.1 on digits; ours with the same parameters (float32 for saga's
problems, float64 for liblinear's: its model is solved in float64), one-vs-rest through our
``OneVsRestClassifier``, which fits the binary problems at once. Each time is printed
beside the objective's relative gap to scikit-learn's (evaluated in float64 numpy;
negative: ours ends lower) and the share of exact zeros.

    .venv/bin/python benchmarks/bench_sklearn_l1.py [--only pixels,text,digits,sparse-text]
        [--rows 2000] [--vocabulary 2000] [--repeats 3] [--liblinear-only]
        [--liblinear-l1-ratios 1,0]
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn import linear_model, multiclass
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import StandardScaler

from softmax_regression import load_fashion_mnist
from softmax_regression.sklearn import LogisticRegression, OneVsRestClassifier


def multinomial_objective(est, X, y, C, l1_ratio) -> float:
    idx = np.searchsorted(est.classes_, y)
    coef = np.asarray(est.coef_, np.float64)
    z = np.asarray(X, np.float64) @ coef.T + est.intercept_
    top = z.max(axis=1, keepdims=True)
    loss = top[:, 0] + np.log(np.exp(z - top).sum(axis=1)) - z[np.arange(len(y)), idx]
    return C * loss.sum() + l1_ratio * np.abs(coef).sum() + (1 - l1_ratio) / 2 * (coef**2).sum()


def ovr_objective(ovr, X, y, C, l1_ratio, scaling=1.0) -> float:
    """The sum of the binary problems' liblinear objectives (intercept a penalised feature)."""
    total = 0.0
    X = X.astype(np.float64) if hasattr(X, "tocsr") else np.asarray(X, np.float64)
    for k, est in enumerate(ovr.estimators_):
        yk = (y == ovr.classes_[k]).astype(np.float64)
        z = X @ np.asarray(est.coef_, np.float64).ravel() + est.intercept_[0]
        theta = np.append(est.coef_.ravel(), est.intercept_[0] / scaling)
        loss = np.logaddexp(0, z) - z * yk
        total += C * loss.sum() + l1_ratio * np.abs(theta).sum()
        total += (1 - l1_ratio) / 2 * (theta**2).sum()
    return total


def pixels(rows):
    data = load_fashion_mnist("train")
    X = data.flat_inputs()[:rows].numpy().astype(np.float32)
    return StandardScaler().fit_transform(X).astype(np.float32), data.labels[:rows].numpy()


def text(vocabulary, classes=30, per_class=60):
    site = Path(sklearn.__file__).parents[1]
    groups = []
    for package in sorted(p for p in site.iterdir() if p.is_dir() and "." not in p.name):
        files = sorted(package.rglob("*.py"))
        if len(files) >= per_class // 2:
            groups.append((len(files), package.name, files[:per_class]))
    groups = sorted(groups, key=lambda g: (-g[0], g[1]))[:classes]
    docs, labels = [], []
    for k, (_, _, files) in enumerate(groups):
        for f in files:
            docs.append(f.read_text(errors="replace"))
            labels.append(k)
    tfidf = TfidfVectorizer(max_features=vocabulary, token_pattern=r"[A-Za-z_]{2,}")
    X = tfidf.fit_transform(docs).toarray().astype(np.float32)
    return X, np.asarray(labels)


def timed(make, X, y, repeats):
    best, est = np.inf, None
    for _ in range(repeats):
        est = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            est.fit(X, y)
            best = min(best, time.perf_counter() - start)
    return best, est


def report(title, rows):
    print(f"\n{title}")
    ref_s, ref_obj = rows[0][1], rows[0][2]
    for name, seconds, obj, zeros in rows:
        gap = (obj - ref_obj) / abs(ref_obj)
        print(
            f"  {name:34s} {seconds:8.2f} s  x{ref_s / seconds:6.1f}  objective gap {gap:+.1e}"
            f"  zeros {zeros:.1%}"
        )


def saga_side_by_side(title, X, y, repeats, C):
    for l1_ratio in (1.0, 0.5):
        params = {"C": C, "l1_ratio": l1_ratio, "solver": "saga", "max_iter": 1000}
        rows = []
        for name, make, reps in (
            ("scikit-learn saga", lambda p=params: linear_model.LogisticRegression(**p), 1),
            ("ours", lambda p=params: LogisticRegression(**p), repeats),
        ):
            seconds, est = timed(make, X, y, reps)
            obj = multinomial_objective(est, X, y, C, l1_ratio)
            rows.append((name, seconds, obj, float((est.coef_ == 0).mean())))
        report(f"{title}: l1_ratio={l1_ratio}, C={C}", rows)


def liblinear_side_by_side(title, X, y, repeats, C, l1_ratios=(1.0, 0.0)):
    for l1_ratio in l1_ratios:
        params = {"C": C, "l1_ratio": l1_ratio, "solver": "liblinear"}
        rows = []
        for name, make in (
            (
                "scikit-learn OvR(liblinear)",
                lambda p=params: multiclass.OneVsRestClassifier(
                    linear_model.LogisticRegression(**p)
                ),
            ),
            (
                "ours OvR (problems at once)",
                lambda p=params: OneVsRestClassifier(LogisticRegression(dtype="float64", **p)),
            ),
        ):
            seconds, est = timed(make, X, y, repeats)
            obj = ovr_objective(est, X, y, C, l1_ratio)
            zeros = float(np.mean([(e.coef_ == 0).mean() for e in est.estimators_]))
            rows.append((name, seconds, obj, zeros))
        report(f"{title}: liblinear one-vs-rest, l1_ratio={l1_ratio}, C={C}", rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="pixels,text,digits")
    ap.add_argument("--rows", type=int, default=2000, help="Fashion-MNIST rows")
    ap.add_argument("--vocabulary", type=int, default=2000, help="TF-IDF terms")
    ap.add_argument("--repeats", type=int, default=3, help="fits per case, best taken")
    ap.add_argument(
        "--liblinear-only", action="store_true", help="only liblinear's rows (no saga fits)"
    )
    ap.add_argument(
        "--liblinear-l1-ratios",
        default="1,0",
        help="liblinear's penalties to run: 1 (L1), 0 (L2), or both",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    saga = not args.liblinear_only
    ratios = tuple(float(r) for r in args.liblinear_l1_ratios.split(","))
    print(
        f"scikit-learn {sklearn.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {platform.machine()}; saga fitted once, the "
        f"others best of {args.repeats}"
    )
    if "pixels" in only and saga:
        X, y = pixels(args.rows)
        saga_side_by_side(f"Fashion-MNIST pixels {X.shape}", X, y, args.repeats, 0.05)
    if "text" in only:
        X, y = text(args.vocabulary)
        title = f"text TF-IDF {X.shape}, {len(set(y))} classes"
        if saga:
            saga_side_by_side(title, X, y, args.repeats, 10.0)
        liblinear_side_by_side(title, X, y, args.repeats, 10.0, ratios)
    if "digits" in only:
        X, y = load_digits(return_X_y=True)
        liblinear_side_by_side(f"digits {X.shape}", X, y, args.repeats, 0.1, ratios)
    if "sparse-text" in only:
        from text_corpus import tfidf

        X, y, _ = tfidf()
        title = f"sparse text TF-IDF {X.shape} ({X.nnz:,} non-zeros), {len(set(y))} classes"
        liblinear_side_by_side(title, X, y, args.repeats, 10.0, ratios)


if __name__ == "__main__":
    main()
