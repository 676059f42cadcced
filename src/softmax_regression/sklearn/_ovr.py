"""scikit-learn's ``OneVsRestClassifier``, with the binary problems of this package's
``LogisticRegression`` fitted at once."""

from __future__ import annotations

import array
import contextlib

import numpy as np
from scipy import sparse
from sklearn import multiclass
from sklearn.base import clone
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metadata_routing import _raise_for_params, process_routing
from sklearn.utils.validation import _check_sample_weight, check_array, check_is_fitted

from .. import distributed
from ..data.streamed import _stat_digest
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
from ._logistic import LogisticRegression, _dense
from ._problem import _Problem
from ._streamed import _stored, decision, features_of, fit_inputs, is_streamed, open_streamed


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

    ``X`` may be rows on disk, as :class:`LogisticRegression` takes them (a memory-mapped
    array, a ``RowSource`` or its path; ``y`` None: the source's own labels): the ``K``
    problems fitted together read them block by block, one pass per evaluation, and
    ``predict``, ``predict_proba``, ``decision_function`` and ``score`` read them once for
    all ``K`` binary estimators. In scikit-learn's loop each binary ``LogisticRegression``
    streams them in turn (a label that every row has, or none has, scikit-learn's constant
    predictor, as in memory); another estimator would have to hold them, and refuses them.
    """

    def fit(self, X, y, **fit_params):
        """Fit the ``K`` binary problems ("class k" against "not class k")."""
        _raise_for_params(fit_params, self, "fit")
        routed = process_routing(self, "fit", **fit_params).estimator.fit
        est = self.estimator
        streamed = is_streamed(X)
        if streamed:
            _check_streamable(est)
            if y is None:  # the source's labels, all of them: each binary fit cuts its share
                y = open_streamed(X, None).y
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
            if streamed:
                return self._fit_each(X, y, routed)
            return super().fit(X, y, **fit_params)
        C = _check_C(est.C)
        penalty, l1_share = _penalty(est, est.penalty, est.l1_ratio, C)
        device, requested = _check_common(est)
        _check_solver(est.solver, penalty, est.dual)
        liblinear = est.solver == "liblinear"
        if streamed:  # X: an (n, 0) stand-in for the checks; the rows are read by the fit
            data = fit_inputs(X, y, routed.get("sample_weight"), None, device)
            X, y, rows, n_features = data.X, data.y, data.rows, data.n_features
            digest = _stat_digest(rows.source)
        else:
            X = check_array(X, accept_sparse="csr", dtype=[np.float64, np.float32], order="C")
            y, rows, n_features, digest = np.asarray(y), X, X.shape[1], ""
        dtype = _answer_dtype(requested, X, est.solver)
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
            rows,
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
                _fingerprint(X, y_index, sw) + digest,
                (len(y), n_features),
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
                coef[k : k + 1], intercept[k : k + 1], np.array([0, 1]), n_features
            )
            fitted.n_iter_ = np.asarray([n_iter], dtype=np.int32)
            self.estimators_.append(fitted)
        self.n_features_in_ = n_features
        return self

    def _fit_each(self, X, y, routed: dict) -> OneVsRestClassifier:
        """scikit-learn's loop over rows from disk: each binary ``LogisticRegression`` streams
        ``X`` in turn; a label that every row has, or none has, gets scikit-learn's constant
        predictor (and its warning), fitted on a stand-in of ``X``'s shape that holds no
        rows (zero strides), since it keeps only the constant."""
        rows = features_of(X)
        stand_in = np.broadcast_to(np.zeros((1, 1), dtype=_stored(rows.source)), rows.shape)
        self.label_binarizer_ = LabelBinarizer(sparse_output=True)
        Y = self.label_binarizer_.fit_transform(y).tocsc()
        self.classes_ = classes = self.label_binarizer_.classes_
        self.estimators_ = []
        for i, column in enumerate(col.toarray().ravel() for col in Y.T):
            self.estimators_.append(
                multiclass._fit_binary(
                    self.estimator,
                    stand_in if len(np.unique(column)) == 1 else X,
                    column,
                    fit_params=routed,
                    classes=[f"not {classes[i]}", classes[i]],
                )
            )
        self.n_features_in_ = rows.shape[1]
        return self

    # ------------------------------------------------------------------ predicting

    def _scores(self, X, proba: bool = False) -> np.ndarray:
        """The ``K`` binary estimators' decisions (``proba``: probabilities of their class)
        over rows read from disk, ``(n, K)``: one pass over them for all ``K``. A label that
        every training row had, or none had (scikit-learn's constant predictor, multilabel
        ``y``), scores its constant, 1 or 0, as there."""
        check_is_fitted(self)
        constant = [isinstance(e, multiclass._ConstantPredictor) for e in self.estimators_]
        for e, fixed in zip(self.estimators_, constant, strict=True):
            if not fixed:
                _check_streamable(e)
        coef = np.vstack(
            [
                np.zeros((1, self.n_features_in_)) if fixed else _dense(e.coef_)
                for e, fixed in zip(self.estimators_, constant, strict=True)
            ]
        )
        intercept = np.concatenate(
            [
                np.zeros(1) if fixed else e.intercept_
                for e, fixed in zip(self.estimators_, constant, strict=True)
            ]
        )
        scores = decision(X, coef, intercept, self.n_features_in_)
        if proba:
            scores = 1.0 / (1.0 + np.exp(-scores))
        for k, (e, fixed) in enumerate(zip(self.estimators_, constant, strict=True)):
            if fixed:
                scores[:, k] = float(np.ravel(e.y_)[0])
        return scores

    def decision_function(self, X):
        """scikit-learn's: ``(n_samples, K)`` scores, ``(n_samples,)`` for one estimator."""
        if not is_streamed(X):
            return super().decision_function(X)
        scores = self._scores(X)
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X):
        """scikit-learn's: the class of the highest score (multiclass), or every label whose
        score is positive (multilabel)."""
        if not is_streamed(X):
            return super().predict(X)
        scores = self._scores(X)
        if self.label_binarizer_.y_type_ == "multiclass":
            return self.classes_[scores.argmax(axis=1)]  # the first of equal maxima, as there
        indices, indptr = array.array("i"), array.array("i", [0])
        for k in range(scores.shape[1]):
            indices.extend(np.flatnonzero(scores[:, k] > 0))
            indptr.append(len(indices))
        indicator = sparse.csc_array(
            (np.ones(len(indices), dtype=int), indices, indptr), shape=scores.shape
        )
        return self.label_binarizer_.inverse_transform(indicator)

    def predict_proba(self, X):
        """scikit-learn's: each binary estimator's probability of its class, normalised over
        the classes for a multiclass ``y``."""
        if not is_streamed(X):
            return super().predict_proba(X)
        Y = self._scores(X, proba=True)
        if Y.shape[1] == 1:
            Y = np.concatenate((1 - Y, Y), axis=1)
        if not self.multilabel_:
            row_sums = np.sum(Y, axis=1)[:, np.newaxis]
            np.divide(Y, row_sums, out=Y, where=row_sums != 0)
        return Y


def _check_streamable(est) -> None:
    """Rows from disk go to this package's ``LogisticRegression`` only: any other estimator
    would read them whole into memory."""
    if not isinstance(est, LogisticRegression):
        raise ConfigError(
            f"OneVsRestClassifier reads rows from disk only with "
            f"softmax_regression.sklearn.LogisticRegression, not {type(est).__name__}; pass X "
            "as an array in memory (np.asarray(X) reads it whole)"
        )
