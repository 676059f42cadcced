"""scikit-learn's ``OneVsRestClassifier``, with the binary problems of this package's
``LogisticRegression`` fitted at once."""

from __future__ import annotations

import contextlib

import numpy as np
from sklearn import multiclass
from sklearn.base import clone
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metadata_routing import _raise_for_params, process_routing
from sklearn.utils.validation import _check_sample_weight, check_array

from .. import distributed
from ..errors import ConfigError
from ._checkpoint import Checkpoint, check_path, identity
from ._common import (
    _answer_dtype,
    _check_C,
    _check_common,
    _check_solver,
    _fingerprint,
    _names,
    _penalty,
    _warn_unconverged,
)
from ._logistic import LogisticRegression
from ._problem import _Problem


class OneVsRestClassifier(multiclass.OneVsRestClassifier):
    """scikit-learn's ``OneVsRestClassifier``: for this package's ``LogisticRegression`` (any
    solver; ``"liblinear"`` is liblinear's one-vs-rest model, the intercept a penalised
    feature), the ``K`` binary problems of a multiclass ``y`` are one problem, ``K`` rows
    of coefficients solved together in one pass over the data per evaluation, instead of
    ``K`` fits. ``estimators_`` then holds the ``K`` fitted binary estimators, as
    scikit-learn's does. Any other estimator, a multilabel ``y``, or a multi-rank ``torchrun``
    (each binary problem then runs data-parallel in turn) is scikit-learn's own loop.

    The estimator's ``checkpoint`` keeps the one fit of the ``K`` problems (as
    :class:`LogisticRegression`'s keeps its fit); scikit-learn's loop, which would fit every
    binary problem on the one file in turn, refuses it.
    """

    def fit(self, X, y, **fit_params):
        """Fit the ``K`` binary problems ("class k" against "not class k")."""
        _raise_for_params(fit_params, self, "fit")
        routed = process_routing(self, "fit", **fit_params).estimator.fit
        est = self.estimator
        binarizer = LabelBinarizer(sparse_output=True).fit(y)
        together = (
            type(est) is LogisticRegression
            and binarizer.y_type_ == "multiclass"
            and set(routed) <= {"sample_weight"}
            and not distributed.launched()
        )
        if not together:
            if isinstance(est, LogisticRegression) and check_path(est.checkpoint) is not None:
                raise ConfigError(
                    "checkpoint= is kept by OneVsRestClassifier only for a multiclass y in one "
                    "process (one fit of the binary problems together); here each binary fit "
                    "would share the file: fit without it"
                )
            return super().fit(X, y, **fit_params)
        C = _check_C(est.C)
        penalty, l1_share = _penalty(est, est.penalty, est.l1_ratio, C)
        device, requested = _check_common(est)
        _check_solver(est.solver, penalty, est.dual)
        liblinear = est.solver == "liblinear"
        X = check_array(X, accept_sparse="csr", dtype=[np.float64, np.float32], order="C")
        dtype = _answer_dtype(requested, X, est.solver)
        y = np.asarray(y)
        self.label_binarizer_ = binarizer
        self.classes_ = classes = binarizer.classes_
        y_index = np.searchsorted(classes, y)
        sample_weight = routed.get("sample_weight")
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        factors = None
        if est.class_weight is not None:
            # Each binary problem's class weights, as its own fit would compute them.
            factors = np.stack(
                [
                    compute_class_weight(
                        est.class_weight,
                        classes=np.array([0, 1]),
                        y=(y_index == k).astype(int),
                        sample_weight=sw,
                    )
                    for k in range(len(classes))
                ],
                axis=1,
            )
        problem = _Problem(
            X,
            y_index,
            sw,
            len(classes),
            est.fit_intercept,
            device,
            dtype,
            intercept_scaling=float(est.intercept_scaling) if liblinear else None,
            one_vs_rest=True,
            class_factors=factors,
        )
        C_ = np.inf if penalty is None else C
        kept = Checkpoint.open(
            check_path(est.checkpoint),
            lambda: identity(
                est,
                _fingerprint(X, y_index, sw),
                X.shape,
                name=f"{type(self).__name__}({type(est).__name__})",
                classes=_names(classes),
            ),
            device,
        )
        with kept.guard() if kept is not None else contextlib.nullcontext():
            coef, intercept, n_iter, converged, objective = problem.fit(
                C_,
                None,
                float(est.tol),
                int(est.max_iter),
                est.verbose,
                l1_ratio=l1_share,
                checkpoint=None if kept is None else kept.fit(0),
            )
        _warn_unconverged(converged, n_iter, int(est.max_iter), est.solver, objective)
        answer = np.float64 if liblinear and requested is None else X.dtype
        coef, intercept = coef.astype(answer), intercept.astype(answer)
        self.estimators_ = []
        for k in range(len(classes)):
            fitted = clone(est)._set_fitted(
                coef[k : k + 1], intercept[k : k + 1], np.array([0, 1]), X.shape[1]
            )
            fitted.n_iter_ = np.asarray([n_iter], dtype=np.int32)
            self.estimators_.append(fitted)
        self.n_features_in_ = X.shape[1]
        return self
