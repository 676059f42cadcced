"""Passes over the data that an L1 fit needs: OWL-QN (the estimators' solver) against
accelerated proximal gradient (FISTA with backtracking), on one problem.

Counted loss-and-gradient evaluations of the same objective (``SoftmaxLoss`` on the first
``--rows`` standardised Fashion-MNIST training images, 10 classes, ``C``, L1, float64): a
count the machine's load does not change. OWL-QN runs at ``tol`` 1e-4 (saga's rule, as the
estimators) and 1e-10 (the reference optimum); FISTA until it is within 1e-6 of that
optimum, printing when it passes 1e-3, 1e-4, 1e-5 and 1e-6.

    .venv/bin/python benchmarks/bench_l1_solvers.py [--rows 5000] [--C 0.05]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from softmax_regression import load_fashion_mnist
from softmax_regression.sklearn._problem import _Problem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--C", type=float, default=0.05)
    ap.add_argument("--max-evaluations", type=int, default=6000)
    args = ap.parse_args()
    data = load_fashion_mnist("train")
    X = data.flat_inputs()[: args.rows].numpy().astype(np.float64)
    X = StandardScaler().fit_transform(X)
    y = data.labels[: args.rows].numpy()
    problem = _Problem(X, y, None, 10, True, torch.device("cpu"), torch.float64)
    loss = problem.loss
    count = 0
    evaluate = loss.loss_gradient

    def counted(w, b):
        nonlocal count
        count += 1
        return evaluate(w, b)

    loss.loss_gradient = counted
    *_, optimum = problem.fit(args.C, None, 1e-10, 5000, l1_ratio=1.0)
    print(f"OWL-QN, tol 1e-10: {count} evaluations, objective {optimum:.12g}")
    count = 0
    *_, value = problem.fit(args.C, None, 1e-4, 5000, l1_ratio=1.0)
    print(f"OWL-QN, tol 1e-4: {count} evaluations, {(value - optimum) / optimum:.1e} above")

    # FISTA on the same (centred) objective: prox of the L1 term = soft-thresholding.
    lam = 1.0 / (args.C * problem.total)
    loss.weight_decay = 0.0
    w = torch.zeros(10, X.shape[1], dtype=torch.float64)
    b = torch.zeros(10, dtype=torch.float64)
    zw, zb, t, lipschitz = w.clone(), b.clone(), 1.0, 1.0
    count, levels = 0, [1e-3, 1e-4, 1e-5, 1e-6]
    while levels and count < args.max_evaluations:
        f, gw, gb = loss.loss_gradient(zw, zb)
        while True:
            nw = zw - gw / lipschitz
            nw = nw.sign() * (nw.abs() - lam / lipschitz).clamp_min(0)
            nb = zb - gb / lipschitz
            fn = float(loss.loss_gradient(nw, nb)[0])
            dw, db = nw - zw, nb - zb
            linear = float((gw * dw).sum() + (gb * db).sum())
            square = float((dw * dw).sum() + (db * db).sum())
            if fn <= float(f) + linear + lipschitz / 2 * square:
                break
            lipschitz *= 2
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        zw = nw + (t - 1) / t_next * (nw - w)
        zb = nb + (t - 1) / t_next * (nb - b)
        w, b, t = nw, nb, t_next
        gap = (fn + lam * float(w.abs().sum()) - optimum) / optimum
        while levels and gap <= levels[0]:
            print(f"FISTA within {levels.pop(0):.0e}: {count} evaluations")
    if levels:
        print(f"FISTA: {count} evaluations, still {gap:.1e} above")


if __name__ == "__main__":
    main()
