"""scikit-learn's ``LogisticRegressionCV``: the path over ``Cs`` fitted per fold."""

from __future__ import annotations

import contextlib
import inspect
import numbers
import warnings

import numpy as np
from sklearn.metrics import get_scorer, make_scorer
from sklearn.model_selection import check_cv
from sklearn.utils import metadata_routing
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    _raise_for_params,
    _routing_enabled,
    process_routing,
)
from sklearn.utils.validation import _check_method_params, _check_sample_weight

from ..data.streamed import _stat_digest
from ..linear_loss import StreamedRows
from ._checkpoint import Checkpoint, check_path, digest, identity
from ._common import (
    _answer_dtype,
    _check_C,
    _check_checkpoint,
    _check_common,
    _check_liblinear,
    _check_solver,
    _fingerprint,
    _names,
    _penalty,
    _summed,
    _warn_unconverged,
    _weights,
    _world,
)
from ._logistic import LogisticRegression
from ._problem import _Problem
from ._streamed import fit_inputs, is_streamed


def _fold(rows: StreamedRows, index: np.ndarray) -> StreamedRows:
    """A fold's rows (``index`` increasing) of rows read from disk: the same files, every
    block read and only the fold's rows computed on. No copy of the rows is made; a pass of a
    fold reads all the rows (the held-out ones too), so a ``k``-fold path reads
    ``k / (k - 1)`` times what its training rows alone would take."""
    return StreamedRows(rows.source, index, rows.device)


class LogisticRegressionCV(LogisticRegression):
    """scikit-learn 1.9's ``LogisticRegressionCV``, in torch.

    For every fold and every l1 ratio of ``l1_ratios`` the path over ``Cs`` is fitted in
    order, each C warm-started from the previous one, and scored on the held-out rows
    (``scoring``; None: accuracy); the best (C, l1 ratio) (summed over folds) is refitted on
    all rows from the folds' mean, as scikit-learn does (from 0 with liblinear's model or an
    L1 term: then the refit is ``LogisticRegression``'s fit at the best C, to the bit).
    The "warn" defaults of ``l1_ratios``, ``scoring`` and ``use_legacy_attributes`` mean what
    they mean in 1.9 (no elastic-net dimension, accuracy, the legacy attributes), with 1.9's
    FutureWarnings. Metadata routing as scikit-learn's: ``fit``'s extra parameters go to the
    splitter and the scorer. Under a multi-rank ``torchrun`` every rank passes all the rows:
    the folds are spread over the ranks (fold ``f`` on rank ``f % WORLD_SIZE``), their paths
    and scores summed over the ranks, and every rank refits the best C on all rows by itself.

    ``checkpoint``: as :class:`LogisticRegression`'s, for the whole search: the file keeps the
    paths, scores and iterations of the fits finished so far with the state of the one under
    way (a fold's fit at one (C, l1 ratio), or the refit), so that a stopped search goes on
    from that fit. The folds are part of what it is checked against: a splitter that
    shuffles without a fixed ``random_state`` gives other folds, and the file is refused.

    ``X`` may be rows read from disk (a memory-mapped array, a
    :class:`~softmax_regression.data.stream.RowSource` or its path: see
    ``softmax_regression.sklearn._streamed``): each fold is then an index into the same files,
    its training rows and its held-out ones read block by block, never copied.
    """

    # score's sample_weight goes to the scorer, not to the estimator itself (scikit-learn's).
    __metadata_request__score = {"sample_weight": metadata_routing.UNUSED}

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
        dtype=None,
        checkpoint=None,
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
        self.checkpoint = checkpoint

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
        if self.penalty != "deprecated":  # checked (and warned of) by _warn_deprecations
            return "l2" if self.penalty is None else self.penalty
        if l1_ratios_ == [None] or all(r == 0 for r in l1_ratios_):
            return "l2"
        if all(r == 1 for r in l1_ratios_):
            return "l1"
        return "elasticnet"

    def fit(self, X, y, sample_weight=None, **params):
        """Cross-validate ``Cs`` (and ``l1_ratios``), then (``refit``) fit the best on all of
        ``X``. ``params`` go to the splitter and the scorer (with metadata routing enabled,
        as they request)."""
        _raise_for_params(params, self, "fit")
        self._warn_deprecations()
        device, requested = _check_common(self)
        grid, l1_ratios_, keep_l1 = self._grid()
        penalty = self._penalty_of(l1_ratios_)
        if penalty == "elasticnet" and l1_ratios_ == [None]:
            raise ValueError(
                "l1_ratios must be an array-like of numbers between 0 and 1 when "
                f"penalty='elasticnet'; got (l1_ratios={self.l1_ratios!r})"
            )
        _check_solver(self.solver, penalty, self.dual)
        # The L1 share fitted at each l1 ratio of the grid (without one, the penalty's).
        shares = [
            float(r) if r is not None and penalty == "elasticnet" else float(penalty == "l1")
            for r in l1_ratios_
        ]
        liblinear = self.solver == "liblinear"
        scaling = float(self.intercept_scaling) if liblinear else None
        world = _world(self.device)
        _check_checkpoint(self, world)
        if world is not None:
            device = world.device
        scoring = None if isinstance(self.scoring, str) and self.scoring == "warn" else self.scoring
        use_legacy = self.use_legacy_attributes is not False
        source = None
        if is_streamed(X):
            # Rows from disk: every rank reads all of them (the folds are spread over the
            # ranks, not the rows); each fold is an index into the same files.
            data = fit_inputs(X, y, None, None, device)
            source, y, X = data.rows, data.y, data.X  # X: a stand-in, what the checks count
            self._set_n_features(data.n_features)
        else:
            X, y = self._validate(X, y)
        n_features = self.n_features_in_
        dtype = _answer_dtype(requested, X, self.solver)
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
        if _routing_enabled():
            routed = process_routing(self, "fit", sample_weight=sample_weight, **params)
            split_params, score_params = routed.splitter.split, routed.scorer.score
        else:
            split_params = {}
            score_params = dict(params)
            if sample_weight is not None:
                score_params["sample_weight"] = sample_weight
        folds = list(check_cv(self.cv, y, classifier=True).split(X, y, **split_params))
        mine = range(len(folds))
        if world is not None:
            # Every rank holds every row; the folds are spread over the ranks, and rank 0's
            # split is the one used (a shuffling splitter without a seed would differ).
            world.check_same(
                {
                    "rows, features": (len(y), n_features),
                    "data": _fingerprint(X, y_index, sw_all)
                    if source is None
                    else _fingerprint(X, y_index, sw_all) + _stat_digest(source.source),
                    "Cs": [float(c) for c in grid],
                    "l1_ratios": shares,
                    "cv": len(folds),
                    "dtype": self.dtype,
                }
            )
            folds = world.broadcast(folds, "sharing the cross-validation folds")
            mine = range(world.rank, len(folds), world.size)
        scorer = _fold_scorer(scoring, classes)
        tol, max_iter = float(self.tol), int(self.max_iter)
        unconverged = None  # (iterations, objective) of a path fit stopped by max_iter
        rows = 1 if binary else n_classes
        n_dof = n_features + int(self.fit_intercept)
        n_l1 = len(shares)
        paths = np.zeros((len(folds), len(grid), n_l1, rows, n_dof))
        scores = np.zeros((len(folds), len(grid), n_l1))
        n_iter = np.zeros((len(folds), len(grid), n_l1), dtype=np.int32)
        kept = Checkpoint.open(
            check_path(self.checkpoint),
            lambda: identity(
                self,
                _fingerprint(X, y_index, sw_all)
                + ("" if source is None else _stat_digest(source.source)),
                (len(y), n_features),
                classes=_names(classes),
                folds=digest(
                    *(a for fold in folds for a in fold), [len(a) for f in folds for a in f]
                ),
            ),
            device,
        )
        guard = contextlib.nullcontext() if kept is None else kept.guard()
        if kept is not None:
            # The fits finished before it stopped, as they were (units in the order of the
            # loops below: fold, l1 ratio, C; then the refit).
            kept.results = {"paths": paths, "scores": scores, "n_iter": n_iter}
            if kept.resume is not None:
                for name, array in kept.results.items():
                    kept.restore(name, array)
                unconverged = kept.notes.get("unconverged")
        with guard:
            unit = -1
            for f in mine:
                problem = None  # made when the fold has a fit to do
                for j, share in enumerate(shares):
                    init = None  # each l1 ratio's path over Cs, warm-started along the Cs
                    for i, C in enumerate(grid):
                        unit += 1
                        if kept is not None and kept.done(unit):
                            coef = paths[f, i, j, :, :n_features].copy()
                            intercept = np.zeros(rows)
                            if self.fit_intercept:
                                intercept = paths[f, i, j, :, -1].copy()
                            init = (coef, intercept)
                            continue
                        if problem is None:
                            train, test = folds[f]
                            if source is not None:  # rows in increasing order, as stored
                                train, test = np.sort(train), np.sort(test)
                            sw_train = None if sw_all is None else sw_all[train]
                            sw = _weights(self, X[train], y[train], classes, sw_train, class_weight)
                            problem = _Problem(
                                X[train] if source is None else _fold(source, train),
                                y_index[train],
                                sw,
                                n_classes,
                                self.fit_intercept,
                                device,
                                dtype,
                                intercept_scaling=scaling,
                            )
                            fold_params = _check_method_params(X, params=score_params, indices=test)
                            X_test = X[test] if source is None else _fold(source, test)
                        coef, intercept, it, converged, objective = problem.fit(
                            float(C),
                            init,
                            tol,
                            max_iter,
                            l1_ratio=share,
                            checkpoint=None if kept is None else kept.fit(unit),
                        )
                        if not converged and it >= max_iter:
                            unconverged = (it, objective)
                            if kept is not None:
                                kept.notes["unconverged"] = unconverged
                        init = (coef, intercept)
                        n_iter[f, i, j] = it
                        paths[f, i, j, :, :n_features] = coef
                        if self.fit_intercept:
                            paths[f, i, j, :, -1] = intercept
                        est = LogisticRegression()._set_fitted(coef, intercept, classes, n_features)
                        if scorer is None:
                            sw_test = None if sw_all is None else sw_all[test]
                            scores[f, i, j] = est.score(X_test, y[test], sample_weight=sw_test)
                        else:
                            scores[f, i, j] = scorer(est, X_test, y[test], **fold_params)
            if world is not None:  # each fold's numbers from the rank that fitted it
                paths = _summed(world, paths, "gathering the folds' paths")
                scores = _summed(world, scores, "gathering the folds' scores")
                n_iter = _summed(world, n_iter, "gathering the folds' iterations").astype(np.int32)
            refitted = None  # (converged, iterations, objective) of the refit
            if self.refit:
                summed = scores.sum(axis=0)  # (Cs, l1 ratios): the first best, as scikit-learn's
                best, best_l1 = np.unravel_index(int(np.argmax(summed)), summed.shape)
                C_ = float(grid[best])
                l1_best = l1_ratios_[best_l1]
                mean = paths[:, best, best_l1].mean(axis=0)  # (rows, n_dof)
                init = (
                    mean[:, :n_features],
                    mean[:, -1] if self.fit_intercept else np.zeros(rows),
                )
                if self.solver == "liblinear" or shares[best_l1] > 0:
                    # liblinear starts from 0 (scikit-learn's cannot warm-start), and so does
                    # an L1 fit: the folds' mean is a denser start than 0, and started from 0
                    # the refit is LogisticRegression's own fit at C_, to the bit.
                    init = None
                sw = _weights(self, X, y, classes, sw_all, class_weight)
                problem = _Problem(
                    X if source is None else source,
                    y_index,
                    sw,
                    n_classes,
                    self.fit_intercept,
                    device,
                    dtype,
                    intercept_scaling=scaling,
                )
                coef, intercept, it, converged, objective = problem.fit(
                    C_,
                    init,
                    tol,
                    max_iter,
                    l1_ratio=shares[best_l1],
                    checkpoint=None if kept is None else kept.fit(unit + 1),
                )
                if world is not None:  # every rank refitted the same; rank 0's bits for all
                    coef, intercept = world.broadcast(
                        (coef, intercept) if world.is_main else None, "sharing the refit"
                    )
                refitted = (converged, it, objective)
            else:
                flat = scores.reshape(len(folds), -1)
                each = [np.unravel_index(int(i), scores.shape[1:]) for i in np.argmax(flat, axis=1)]
                mean = np.mean([paths[f, i, j] for f, (i, j) in enumerate(each)], axis=0)
                coef = mean[:, :n_features]
                intercept = mean[:, -1] if self.fit_intercept else np.zeros(rows)
                C_ = float(np.mean([grid[i] for i, _ in each]))
                l1_best = float(np.mean([l1_ratios_[j] for _, j in each])) if keep_l1 else None
        if unconverged is not None:  # scikit-learn warns for each such fit; once is enough
            _warn_unconverged(False, unconverged[0], max_iter, self.solver, unconverged[1])
        if refitted is not None:
            _warn_unconverged(refitted[0], refitted[1], max_iter, self.solver, refitted[2])
        self.Cs_ = grid
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

    def _warn_deprecations(self) -> None:
        """scikit-learn 1.9's FutureWarnings for the "warn" defaults and the deprecated
        ``penalty`` and ``l1_ratios=None`` (its texts), and its refusals of ``penalty``."""
        if isinstance(self.l1_ratios, str) and self.l1_ratios == "warn":
            warnings.warn(
                "The default value for l1_ratios will change from None to (0.0,) in version "
                "1.10. From version 1.10 onwards, only array-like with values in [0, 1] will "
                "be allowed, None will be forbidden. To avoid this warning, explicitly set a "
                "value, e.g. l1_ratios=(0,).",
                FutureWarning,
                stacklevel=3,
            )
        if self.penalty == "deprecated":
            if self.l1_ratios is None:
                warnings.warn(
                    "'l1_ratios=None' was deprecated in version 1.8 and will trigger an error "
                    "in 1.10. Use an array-like with values in [0, 1] instead.",
                    FutureWarning,
                    stacklevel=3,
                )
        else:
            warnings.warn(
                "'penalty' was deprecated in version 1.8 and will be removed in 1.10. To "
                "avoid this warning, leave 'penalty' set to its default value and use "
                "'l1_ratios' and 'Cs' instead. Use l1_ratios=(0,) instead of penalty='l2', "
                "l1_ratios=(1,) instead of penalty='l1', l1_ratios set to floats between 0 "
                "and 1 instead of penalty='elasticnet', and Cs=(np.inf,) instead of "
                "penalty=None.",
                FutureWarning,
                stacklevel=3,
            )
            with warnings.catch_warnings():  # the warning just given, in its CV wording
                warnings.simplefilter("ignore", FutureWarning)
                _penalty(self, self.penalty, 0.0 if self.penalty == "l2" else 1.0, 1.0)
            l1 = self.l1_ratios
            if l1 is not None and not (isinstance(l1, str) and l1 == "warn"):
                warnings.warn(
                    "l1_ratios parameter is only used when penalty is 'elasticnet'. Got "
                    f"(penalty={self.penalty})",
                    UserWarning,
                    stacklevel=3,
                )
        if isinstance(self.scoring, str) and self.scoring == "warn":
            warnings.warn(
                "The default value of the parameter 'scoring' will change from None, i.e. "
                "accuracy, to 'neg_log_loss' in version 1.11. To silence this warning, "
                "explicitly set the scoring parameter: scoring='neg_log_loss' for the new, "
                "scoring='accuracy' or scoring=None for the old default.",
                FutureWarning,
                stacklevel=3,
            )
        if isinstance(self.use_legacy_attributes, str) and self.use_legacy_attributes == "warn":
            name = type(self).__name__
            warnings.warn(
                f"The fitted attributes of {name} will be simplified in scikit-learn 1.10 to "
                "remove redundancy. Set`use_legacy_attributes=False` to enable the new "
                "behavior now, or set it to `True` to silence this warning during the "
                "transition period while keeping the deprecated behavior for the time being. "
                "The default value of use_legacy_attributes will change from True to False in "
                f"scikit-learn 1.10. See the docstring of {name} for more details.",
                FutureWarning,
                stacklevel=3,
            )

    def score(self, X, y, *, sample_weight=None, **score_params):
        """``scoring`` on ``X``, ``y`` (None or "warn": accuracy), as scikit-learn's: with
        metadata routing enabled, ``score_params`` go to the scorer as it requests them."""
        _raise_for_params(score_params, self, "score")
        if sample_weight is not None:
            score_params["sample_weight"] = sample_weight
        if _routing_enabled():
            score_params = process_routing(self, "score", **score_params).scorer.score
        elif score_params.get("sample_weight") is not None:
            score_params = {"sample_weight": score_params["sample_weight"]}
        else:
            score_params = {}
        return self._get_scorer()(self, X, y, **score_params)

    def _get_scorer(self):
        """The scorer ``scoring`` names (None or "warn": accuracy); scikit-learn's name, which
        its metadata routing and tests call."""
        scoring = None if isinstance(self.scoring, str) and self.scoring == "warn" else self.scoring
        return get_scorer(scoring or "accuracy")

    def get_metadata_routing(self):
        """scikit-learn's routing: ``fit`` to the splitter's ``split`` and the scorer's
        ``score``, ``score`` to the scorer's ``score``."""
        return (
            MetadataRouter(owner=self)
            .add_self_request(self)
            .add(
                splitter=self.cv,
                method_mapping=MethodMapping().add(caller="fit", callee="split"),
            )
            .add(
                scorer=self._get_scorer(),
                method_mapping=MethodMapping()
                .add(caller="score", callee="score")
                .add(caller="fit", callee="score"),
            )
        )


def _fold_scorer(scoring, classes: np.ndarray):
    """The scorer of the held-out rows (None: the estimator's accuracy). A scoring function
    that takes ``labels`` is given every class (and the positive one for two), since a fold
    may hold only some of them, as scikit-learn's LogisticRegressionCV does."""
    if scoring is None:
        return None
    scorer = get_scorer(scoring)
    func = getattr(scorer, "_score_func", None)
    if func is None or "labels" not in inspect.signature(func).parameters:
        return scorer
    extra = {}
    if len(classes) <= 2 and "pos_label" in inspect.signature(func).parameters:
        extra["pos_label"] = classes[-1]
    return make_scorer(
        func,
        greater_is_better=scorer._sign == 1,
        response_method=scorer._response_method,
        labels=classes,
        **extra,
        **getattr(scorer, "_kwargs", {}),
    )
