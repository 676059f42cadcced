"""scikit-learn's ``LogisticRegressionCV``: the path over ``Cs`` fitted per fold."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.metrics import get_scorer
from sklearn.model_selection import check_cv
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import _check_sample_weight

from ._common import (
    _check_C,
    _check_common,
    _check_liblinear,
    _check_solver,
    _fingerprint,
    _penalty,
    _summed,
    _warn_unconverged,
    _weights,
    _world,
)
from ._logistic import LogisticRegression
from ._problem import _Problem


class LogisticRegressionCV(LogisticRegression):
    """scikit-learn 1.9's ``LogisticRegressionCV``, in torch.

    For every fold and every l1 ratio of ``l1_ratios`` the path over ``Cs`` is fitted in
    order, each C warm-started from the previous one, and scored on the held-out rows
    (``scoring``; None: accuracy); the best (C, l1 ratio) (summed over folds) is refitted on
    all rows from the folds' mean, as scikit-learn does.
    The "warn" defaults of ``l1_ratios``, ``scoring`` and ``use_legacy_attributes`` mean what
    they mean in 1.9 (no elastic-net dimension, accuracy, the legacy attributes), without
    the warnings. Under a multi-rank ``torchrun`` every rank passes all the rows: the folds
    are spread over the ranks (fold ``f`` on rank ``f % WORLD_SIZE``), their paths and scores
    summed over the ranks, and every rank refits the best C on all rows by itself.
    """

    def __init__(
        self,
        *,
        Cs=10,
        l1_ratios="warn",
        fit_intercept=True,
        cv=None,
        dual=False,
        penalty="deprecated",
        scoring="warn",
        solver="lbfgs",
        tol=1e-4,
        max_iter=100,
        class_weight=None,
        n_jobs=None,
        verbose=0,
        refit=True,
        intercept_scaling=1.0,
        random_state=None,
        use_legacy_attributes="warn",
        device="auto",
        dtype="float32",
    ):
        self.Cs = Cs
        self.l1_ratios = l1_ratios
        self.fit_intercept = fit_intercept
        self.cv = cv
        self.dual = dual
        self.penalty = penalty
        self.scoring = scoring
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.refit = refit
        self.intercept_scaling = intercept_scaling
        self.random_state = random_state
        self.use_legacy_attributes = use_legacy_attributes
        self.device = device
        self.dtype = dtype

    def _grid(self) -> tuple[np.ndarray, list, bool]:
        Cs = self.Cs
        if isinstance(Cs, numbers.Integral) and not isinstance(Cs, bool):
            if Cs < 1:
                raise ValueError(f"Cs must be a positive integer or a list of C, got {Cs!r}")
            grid = np.logspace(-4, 4, int(Cs))
        else:
            grid = np.asarray(Cs, dtype=np.float64).ravel()
            if grid.size == 0:
                raise ValueError("Cs must hold at least one C")
            for c in grid:
                _check_C(float(c), "every C in Cs")
        l1 = self.l1_ratios
        if isinstance(l1, str) and l1 == "warn":
            l1 = None
        if l1 is None:
            return grid, [None], False
        values = np.asarray(l1, dtype=object).ravel()
        if not values.size or any(
            not isinstance(r, numbers.Real) or isinstance(r, bool) or not 0 <= r <= 1
            for r in values
        ):
            raise ValueError(
                f"l1_ratios must be an array-like of numbers between 0 and 1; got "
                f"(l1_ratios={self.l1_ratios!r})"
            )
        return grid, [float(r) for r in values], True

    def _penalty_of(self, l1_ratios_: list) -> str:
        """scikit-learn 1.9's penalty for ``penalty`` and ``l1_ratios`` (all 0 or None: "l2",
        all 1: "l1", else "elasticnet")."""
        if self.penalty != "deprecated":
            share = None if l1_ratios_ == [None] else l1_ratios_[0]
            penalty, _ = _penalty(self, self.penalty, 0.0 if share is None else share, 1.0)
            return "l2" if penalty is None else penalty
        if l1_ratios_ == [None] or all(r == 0 for r in l1_ratios_):
            return "l2"
        if all(r == 1 for r in l1_ratios_):
            return "l1"
        return "elasticnet"

    def fit(self, X, y, sample_weight=None, **params):
        """Cross-validate ``Cs``, then (``refit``) fit the best on all of ``X``."""
        if params:
            raise ValueError(f"fit got unexpected parameters {sorted(params)}")
        device, dtype = _check_common(self)
        grid, l1_ratios_, keep_l1 = self._grid()
        penalty = self._penalty_of(l1_ratios_)
        _check_solver(self.solver, penalty, self.dual)
        # The L1 share fitted at each l1 ratio of the grid (without one, the penalty's).
        shares = [
            float(r) if r is not None and penalty == "elasticnet" else float(penalty == "l1")
            for r in l1_ratios_
        ]
        liblinear = self.solver == "liblinear"
        scaling = float(self.intercept_scaling) if liblinear else None
        world = _world(self.device)
        if world is not None:
            device = world.device
        scoring = None if isinstance(self.scoring, str) and self.scoring == "warn" else self.scoring
        use_legacy = self.use_legacy_attributes is not False
        X, y = self._validate(X, y)
        classes, y_index = self._classes(y, None)
        self.classes_ = classes
        n_classes = len(classes)
        if liblinear:
            _check_liblinear(X, n_classes)
        binary = n_classes == 2
        class_weight = self.class_weight
        if isinstance(class_weight, dict):
            if not set(class_weight) <= set(classes):
                raise ValueError(
                    "The given class_weight dict must have the class labels as keys; "
                    f"classes={classes} but key={class_weight.keys()}"
                )
        elif class_weight == "balanced":
            cw = compute_class_weight("balanced", classes=classes, y=y, sample_weight=sample_weight)
            class_weight = dict(zip(classes, cw, strict=True))
        elif class_weight is not None:
            raise ValueError(
                f"class_weight must be a dict, 'balanced' or None, got {class_weight!r}"
            )
        sw_all = None
        if sample_weight is not None:
            sw_all = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        folds = list(check_cv(self.cv, y, classifier=True).split(X, y))
        mine = range(len(folds))
        if world is not None:
            # Every rank holds every row; the folds are spread over the ranks, and rank 0's
            # split is the one used (a shuffling splitter without a seed would differ).
            world.check_same(
                {
                    "rows, features": X.shape,
                    "data": _fingerprint(X, y_index, sw_all),
                    "Cs": [float(c) for c in grid],
                    "l1_ratios": shares,
                    "cv": len(folds),
                    "dtype": self.dtype,
                }
            )
            folds = world.broadcast(folds, "sharing the cross-validation folds")
            mine = range(world.rank, len(folds), world.size)
        scorer = get_scorer(scoring) if scoring is not None else None
        tol, max_iter = float(self.tol), int(self.max_iter)
        rows = 1 if binary else n_classes
        n_dof = X.shape[1] + int(self.fit_intercept)
        n_l1 = len(shares)
        paths = np.zeros((len(folds), len(grid), n_l1, rows, n_dof))
        scores = np.zeros((len(folds), len(grid), n_l1))
        n_iter = np.zeros((len(folds), len(grid), n_l1), dtype=np.int32)
        for f in mine:
            train, test = folds[f]
            sw_train = None if sw_all is None else sw_all[train]
            sw = _weights(self, X[train], y[train], classes, sw_train, class_weight)
            problem = _Problem(
                X[train],
                y_index[train],
                sw,
                n_classes,
                self.fit_intercept,
                device,
                dtype,
                intercept_scaling=scaling,
            )
            for j, share in enumerate(shares):
                init = None  # each l1 ratio's path over Cs, warm-started along the Cs
                for i, C in enumerate(grid):
                    coef, intercept, it, _, _ = problem.fit(
                        float(C), init, tol, max_iter, l1_ratio=share
                    )
                    init = (coef, intercept)
                    n_iter[f, i, j] = it
                    paths[f, i, j, :, : X.shape[1]] = coef
                    if self.fit_intercept:
                        paths[f, i, j, :, -1] = intercept
                    est = LogisticRegression()._set_fitted(coef, intercept, classes, X.shape[1])
                    sw_test = None if sw_all is None else sw_all[test]
                    if scorer is None:
                        scores[f, i, j] = est.score(X[test], y[test], sample_weight=sw_test)
                    elif sw_test is not None:
                        scores[f, i, j] = scorer(est, X[test], y[test], sample_weight=sw_test)
                    else:
                        scores[f, i, j] = scorer(est, X[test], y[test])
        if world is not None:  # each fold's numbers from the rank that fitted it
            paths = _summed(world, paths, "gathering the folds' paths")
            scores = _summed(world, scores, "gathering the folds' scores")
            n_iter = _summed(world, n_iter, "gathering the folds' iterations").astype(np.int32)
        self.Cs_ = grid
        if self.refit:
            summed = scores.sum(axis=0)  # (Cs, l1 ratios): the first best, as scikit-learn's
            best, best_l1 = np.unravel_index(int(np.argmax(summed)), summed.shape)
            C_ = float(grid[best])
            l1_best = l1_ratios_[best_l1]
            mean = paths[:, best, best_l1].mean(axis=0)  # (rows, n_dof)
            init = (mean[:, : X.shape[1]], mean[:, -1] if self.fit_intercept else np.zeros(rows))
            sw = _weights(self, X, y, classes, sw_all, class_weight)
            problem = _Problem(
                X,
                y_index,
                sw,
                n_classes,
                self.fit_intercept,
                device,
                dtype,
                intercept_scaling=scaling,
            )
            coef, intercept, it, converged, _ = problem.fit(
                C_, init, tol, max_iter, l1_ratio=shares[best_l1]
            )
            if world is not None:  # every rank refitted the same; rank 0's bits for all
                coef, intercept = world.broadcast(
                    (coef, intercept) if world.is_main else None, "sharing the refit"
                )
            _warn_unconverged(converged, it, max_iter, self.solver)
        else:
            flat = scores.reshape(len(folds), -1)
            each = [np.unravel_index(int(i), scores.shape[1:]) for i in np.argmax(flat, axis=1)]
            mean = np.mean([paths[f, i, j] for f, (i, j) in enumerate(each)], axis=0)
            coef = mean[:, : X.shape[1]]
            intercept = mean[:, -1] if self.fit_intercept else np.zeros(rows)
            C_ = float(np.mean([grid[i] for i, _ in each]))
            l1_best = float(np.mean([l1_ratios_[j] for _, j in each])) if keep_l1 else None
        self.coef_, self.intercept_ = coef, intercept
        self._cv_attributes(paths, scores, n_iter, C_, l1_best, l1_ratios_, use_legacy, binary)
        return self

    def _cv_attributes(self, paths, scores, n_iter, C_, l1_best, l1_ratios_, legacy, binary):
        """scikit-learn 1.9's shapes of ``coefs_paths_``, ``scores_``, ``n_iter_``, ``C_``,
        ``l1_ratio_``, ``l1_ratios_`` (legacy or new; without ``l1_ratios``, legacy drops the
        l1 dimension). ``paths`` is (folds, Cs, l1 ratios, rows, dof)."""
        keep_l1 = l1_ratios_ != [None]
        keys = self.classes_[1:] if binary else self.classes_
        p = np.moveaxis(paths, 3, 0)  # (rows, folds, cs, l1, dof)
        s, it = scores, n_iter  # (folds, cs, l1)
        self.l1_ratios_ = np.asarray(l1_ratios_)
        if legacy:
            if not keep_l1:
                p, s, it = p[:, :, :, 0], s[:, :, 0], it[:, :, 0]
            self.coefs_paths_ = dict(zip(keys, p, strict=True))
            self.scores_ = {k: s.copy() for k in keys}
            self.n_iter_ = it[None, ...]
            self.C_ = np.full(len(keys), C_)
            self.l1_ratio_ = np.asarray([l1_best] * len(keys))
        else:
            self.coefs_paths_ = np.moveaxis(p, (0, 1, 3), (3, 0, 1))
            self.scores_ = np.moveaxis(s, (1, 2), (2, 1))
            self.n_iter_ = np.moveaxis(it, (1, 2), (2, 1))
            self.C_ = C_
            self.l1_ratio_ = 0.0 if l1_best is None else float(l1_best)

    def score(self, X, y, *, sample_weight=None, **score_params):
        """``scoring`` on ``X``, ``y`` (None or "warn": accuracy), as scikit-learn's."""
        scoring = None if isinstance(self.scoring, str) and self.scoring == "warn" else self.scoring
        if scoring is None:
            return super().score(X, y, sample_weight=sample_weight)
        kwargs = dict(score_params)
        if sample_weight is not None:
            kwargs["sample_weight"] = sample_weight
        return get_scorer(scoring)(self, X, y, **kwargs)
