"""scikit-learn's ``LogisticRegression``: the estimator's front door."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.callback import CallbackSupportMixin, with_callbacks
from sklearn.linear_model._base import LinearClassifierMixin, SparseCoefMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.extmath import safe_sparse_dot, softmax
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ..data.streamed import _stat_digest
from ..linear_loss import StreamedRows
from ._checkpoint import Checkpoint, check_path, identity
from ._common import (
    NEWTON_SOLVERS,
    _answer_dtype,
    _check_C,
    _check_checkpoint,
    _check_common,
    _check_liblinear,
    _check_solver,
    _fingerprint,
    _json_params,
    _names,
    _penalty,
    _warn_n_jobs,
    _warn_unconverged,
    _weights,
    _world,
)
from ._problem import _Problem
from ._streamed import decision, fit_inputs, is_streamed

# The frames between a warning's helper and the user's ``LogisticRegression.fit`` call: the
# helper, ``fit``, and the ``with_callbacks`` wrapper around it.
_WARN_AT_CALLER = 4


class LogisticRegression(
    CallbackSupportMixin, LinearClassifierMixin, SparseCoefMixin, BaseEstimator
):
    """scikit-learn 1.9's ``LogisticRegression``, in torch.

    Parameters as scikit-learn's (``penalty`` deprecated there too: ``C=np.inf`` means no
    penalty, ``l1_ratio`` 1 the L1 penalty, between 0 and 1 the elastic net, with
    ``solver="saga"`` as scikit-learn asks). ``solver="liblinear"`` fits liblinear's model
    (two classes; the intercept a penalised feature of value ``intercept_scaling``; ``dual``
    accepted with the L2 penalty: the same minimiser, solved in the primal).
    ``random_state`` and ``n_jobs`` are accepted and have no effect (``n_jobs`` warns, as
    there). Sparse ``X`` (scipy.sparse; CSR, or converted to it as scikit-learn does) is
    solved as it is, never densified, on the CPU. Extra: ``device`` ("auto": cuda when
    available) and ``dtype``: None (scikit-learn's rule: float32 rows give a float32 fit,
    float64 or integer rows the float64 optimum, reached through float32 iterations finished
    in float64), or "float32" / "float64" to choose. scikit-learn's mixins, as its class has
    them: ``sparsify``/``densify`` (a CSR ``coef_`` for predictions), ``score``, and
    ``set_callbacks`` (scikit-learn 1.9's callbacks: ``setup``, the fit as one task begun
    and ended, ``teardown``; with ``solver="lbfgs"``, as there, each iteration a task of its
    own with the estimator as it stands after it; other solvers warn that their iterations
    are not reported).

    ``checkpoint`` (ours; scikit-learn has no equivalent): None, or a file path that makes a
    long fit resumable. The fit writes its solver's state there at most every
    ``softmax_regression.sklearn.CHECKPOINT_SECONDS`` (3 minutes) and when it is stopped by
    Ctrl-C, SIGTERM or SIGHUP (it then raises KeyboardInterrupt, or
    :class:`softmax_regression.stopping.Terminated` for the signals); ``fit`` called again
    with the same path, data and parameters goes on from there to the answer the
    uninterrupted fit reaches, and removes the file when it completes. A file of another
    fit (other data or parameters) is refused with a
    :class:`~softmax_regression.errors.ResumeError` naming what differs. Every solver path
    keeps its state (L-BFGS in float32 then float64, OWL-QN for L1, the elastic net and
    liblinear's L1 model; Newton's method's few steps are taken again); not under a
    multi-rank ``torchrun``, which refuses it.
    """

    def __init__(
        self,
        penalty="deprecated",
        *,
        C=1.0,
        l1_ratio=0.0,
        dual=False,
        tol=1e-4,
        fit_intercept=True,
        intercept_scaling=1,
        class_weight=None,
        random_state=None,
        solver="lbfgs",
        max_iter=100,
        verbose=0,
        warm_start=False,
        n_jobs=None,
        device="auto",
        dtype=None,
        checkpoint=None,
    ):
        self.penalty = penalty
        self.C = C
        self.l1_ratio = l1_ratio
        self.dual = dual
        self.tol = tol
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.class_weight = class_weight
        self.random_state = random_state
        self.solver = solver
        self.max_iter = max_iter
        self.verbose = verbose
        self.warm_start = warm_start
        self.n_jobs = n_jobs
        self.device = device
        self.dtype = dtype
        self.checkpoint = checkpoint

    # ------------------------------------------------------------------ fitting

    def _validate(self, X, y, reset: bool = True):
        X, y = validate_data(
            self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32], order="C", reset=reset
        )
        check_classification_targets(y)
        return X, y

    def _inputs(self, X, y, sample_weight, world, device):
        """(X, y, the rows the problem takes, sample_weight): validated in memory as
        scikit-learn does, or, for rows read from disk (:mod:`._streamed`), opened without
        reading them; ``X`` is then an ``(n, 0)`` stand-in of the dtype the rows are stored
        in (what the checks and the answer's dtype look at; ``n_features_in_`` is set)."""
        if not is_streamed(X):
            X, y = self._validate(X, y)
            return X, y, X, sample_weight
        data = fit_inputs(X, y, sample_weight, world, device)
        self._set_n_features(data.n_features)
        return data.X, data.y, data.rows, data.sample_weight

    def _set_n_features(self, n_features: int, reset: bool = True) -> None:
        if reset:
            self.n_features_in_ = n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    def _classes(self, y: np.ndarray, world) -> tuple[np.ndarray, np.ndarray]:
        classes = np.unique(y)
        if world is not None:
            classes = np.unique(np.concatenate(world.gather(classes, "gathering the classes")))
        if len(classes) < 2:
            raise ValueError(
                "This solver needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {classes[0]!r}"
            )
        return classes, np.searchsorted(classes, y)

    def set_callbacks(self, *callbacks):
        """Set scikit-learn callbacks (scikit-learn 1.9's ``set_callbacks``); as there, the
        solver's iterations are reported with ``solver="lbfgs"`` alone."""
        if self.solver != "lbfgs":
            warnings.warn(
                f"Callbacks are only supported in {type(self).__name__} for solver='lbfgs'. "
                f"This estimator has solver='{self.solver}', callbacks will be ignored during "
                "the solving of the regression.",
                stacklevel=2,
            )
        return super().set_callbacks(*callbacks)

    @with_callbacks
    def fit(self, X, y, sample_weight=None):
        """Fit the model on ``X`` (n_samples, n_features) and ``y``; under torchrun, this
        rank's rows."""
        C = _check_C(self.C)
        # Warnings are shown at the caller of fit: past it and its callbacks' wrapper.
        penalty, l1_share = _penalty(
            self, self.penalty, self.l1_ratio, C, stacklevel=_WARN_AT_CALLER
        )
        device, requested = _check_common(self)
        _check_solver(self.solver, penalty, self.dual)
        liblinear = self.solver == "liblinear"
        _warn_n_jobs(self.n_jobs, stacklevel=_WARN_AT_CALLER)
        world = _world(self.device)
        _check_checkpoint(self, world)
        given = X
        X, y, rows, sample_weight = self._inputs(X, y, sample_weight, world, device)
        dtype = _answer_dtype(requested, X, self.solver)
        if world is not None:
            world.check_same({"n_features": self.n_features_in_, "C": C, "dtype": self.dtype})
        classes, y_index = self._classes(y, world)
        self.classes_ = classes
        if liblinear:
            _check_liblinear(X, len(classes))
        # The fit is one task; with lbfgs, as scikit-learn's, one subtask per iteration (at
        # least one) and one more, empty, at the end.
        per_iteration = self.solver == "lbfgs"
        callbacks = self._init_callback_context(
            max_subtasks=max(int(self.max_iter), 1) + 1 if per_iteration else 0
        )
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        callbacks.call_on_fit_task_begin(estimator=self, X=given, y=y, metadata=metadata)
        sw = self._sample_weights(X, y, y_index, sample_weight, world)
        init = None
        if self.warm_start and hasattr(self, "coef_"):
            n_rows = 1 if len(classes) == 2 else len(classes)
            if self.coef_.shape != (n_rows, self.n_features_in_):
                raise ValueError(
                    f"Initialization coef is of shape {self.coef_.shape}, expected shape "
                    f"{(n_rows, self.n_features_in_)}"
                )
            init = (_dense(self.coef_), self.intercept_)
        problem = _Problem(
            rows,
            y_index,
            sw,
            len(classes),
            self.fit_intercept,
            device,
            dtype,
            world,
            intercept_scaling=float(self.intercept_scaling) if liblinear else None,
        )
        C_ = np.inf if penalty is None else C
        # the rows' dtype, as scikit-learn's (float64 from its liblinear, whatever the rows)
        answer = np.float64 if liblinear and requested is None else X.dtype
        tasks = None
        if per_iteration and getattr(self, "_skl_callbacks", None):
            tasks = _IterationTasks(
                callbacks, self, given, y, metadata, answer, init, len(classes), self.n_features_in_
            )
        kept = Checkpoint.open(
            check_path(self.checkpoint),
            lambda: identity(
                self,
                _fingerprint(X, y_index, sw)
                + (_stat_digest(rows.source) if isinstance(rows, StreamedRows) else ""),
                (len(y), self.n_features_in_),
                classes=_names(classes),
            ),
            device,
        )
        with kept.guard() if kept is not None else contextlib.nullcontext():
            coef, intercept, n_iter, converged, objective = problem.fit(
                C_,
                init,
                float(self.tol),
                int(self.max_iter),
                self.verbose,
                l1_ratio=l1_share,
                newton=self.solver in NEWTON_SOLVERS,
                on_iterate=None if tasks is None else tasks.iteration,
                checkpoint=None if kept is None else kept.fit(0),
            )
        if tasks is not None:
            tasks.close(n_iter, coef, intercept)
        _warn_unconverged(
            converged, n_iter, int(self.max_iter), self.solver, objective, _WARN_AT_CALLER
        )
        self.coef_ = coef.astype(answer, copy=False)
        self.intercept_ = intercept.astype(answer, copy=False)
        self.n_iter_ = np.asarray([n_iter], dtype=np.int32)
        callbacks.call_on_fit_task_end(
            estimator=self, X=given, y=y, metadata=metadata, reconstruction_attributes={}
        )
        return self

    def _sample_weights(self, X, y, y_index, sample_weight, world) -> np.ndarray | None:
        if world is None:
            return _weights(self, X, y, self.classes_, sample_weight, self.class_weight)
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        if self.class_weight is None:
            return sw
        base = np.ones(len(y)) if sw is None else sw
        if self.class_weight == "balanced":
            counts = torch.from_numpy(np.bincount(y_index, base, len(self.classes_)))
            world.sum_same_(counts, "counting the classes")
            counts = counts.numpy()
            cw = counts.sum() / (len(self.classes_) * np.maximum(counts, 1e-300))
        else:
            cw = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        return base * cw[y_index]

    # ------------------------------------------------------------------ predicting

    def decision_function(self, X):
        """Confidence scores: (n_samples,) for two classes, (n_samples, n_classes) else; with
        ``coef_`` dense or sparse (:meth:`sparsify`)."""
        check_is_fitted(self)
        if is_streamed(X):  # read block by block: only the (n, classes) scores are made
            scores = decision(X, _dense(self.coef_), self.intercept_, self.n_features_in_)
            return scores.ravel() if scores.shape[1] == 1 else scores
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32], reset=False)
        scores = safe_sparse_dot(X, self.coef_.T, dense_output=True) + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X):
        scores = self.decision_function(X)
        index = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[index]

    def predict_proba(self, X):
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-scores))
            return np.vstack([1 - p, p]).T
        return softmax(scores, copy=False)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------ the package's model

    def to_model(self):
        """The package's :class:`~softmax_regression.model.SoftmaxRegression` with these
        weights (two classes: a 2-class model with logits ``[0, z]``, the same predictions)."""
        from ..model import SoftmaxRegression

        check_is_fitted(self)
        coef = np.asarray(_dense(self.coef_), dtype=np.float32)
        intercept = np.asarray(self.intercept_, dtype=np.float32)
        if coef.shape[0] == 1:
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([np.zeros_like(intercept), intercept])
        model = SoftmaxRegression.untouched_rng(coef.shape[1], coef.shape[0])
        with torch.no_grad():
            model.weight.copy_(torch.from_numpy(coef))
            model.bias.copy_(torch.from_numpy(intercept))
        return model.eval()

    def save(self, directory, *, overwrite: bool = False) -> Path:
        """Write the fitted model as the package's model file (``model.safetensors`` and
        ``model.json``) in ``directory``: ``predict DIR --features FILE``,
        ``evaluate DIR --data ...`` and ``report DIR`` read it, and :meth:`from_run` reads it
        back (class names as strings). Refuses a directory that already holds a model unless
        ``overwrite``; returns the model file's path."""
        from ..runs.artifacts import MODEL_FILE, save_model

        check_is_fitted(self)
        directory = Path(directory)
        if (directory / MODEL_FILE).exists() and not overwrite:
            raise FileExistsError(
                f"{directory / MODEL_FILE} already exists; pass overwrite=True to replace it"
            )
        directory.mkdir(parents=True, exist_ok=True)
        model = self.to_model()
        classes = tuple(str(c) for c in self.classes_)
        data = {"name": f"the rows given to {type(self).__name__}.fit"}
        if hasattr(self, "feature_names_in_"):  # fitted on a DataFrame: its column names
            data["feature_names"] = [str(n) for n in self.feature_names_in_]
        return save_model(
            directory,
            model,
            classes=classes,
            input_shape=(model.num_inputs,),
            image_rule=None,
            data=data,
            config={"estimator": type(self).__name__, "params": _json_params(self)},
        )

    @classmethod
    def from_model(cls, model, classes, **params):
        """A fitted estimator holding ``model``'s weights (a ``SoftmaxRegression`` or any
        ``nn.Linear``-like with ``weight`` and ``bias``); ``classes`` names its outputs.
        Its inputs are the model's flattened inputs."""
        w = model.weight.detach().double().cpu().numpy()
        b = model.bias.detach().double().cpu().numpy()
        return cls._fitted(w, b, classes, **params)

    @classmethod
    def from_run(cls, run_dir, **params):
        """The model of a run directory (``train --recipe best-linear`` or the book's) as a
        fitted estimator. Its inputs are the run's flattened inputs as its model file
        describes them before standardisation (pixels in [0, 1] for images unless trained
        with ``--no-normalize``; features as they are): the standardisation, when the run
        recorded one, is folded into ``coef_``."""
        from ..runs.artifacts import load_model

        saved = load_model(Path(run_dir))
        w = saved.model.weight.detach().double()
        b = saved.model.bias.detach().double()
        prep = saved.preprocessing
        if prep.standardized:
            w = w / prep.std.double()
            b = b - w @ prep.mean.double()
        return cls._fitted(w.numpy(), b.numpy(), saved.classes, **params)

    def _set_fitted(self, coef, intercept, classes, n_features):
        self.coef_, self.intercept_ = coef, intercept
        self.classes_ = classes
        self.n_features_in_ = n_features
        self.n_iter_ = np.zeros(1, dtype=np.int32)
        return self

    @classmethod
    def _fitted(cls, w: np.ndarray, b: np.ndarray, classes, **params):
        classes = np.asarray(classes)
        if w.shape[0] != len(classes):
            raise ValueError(f"{w.shape[0]} outputs but {len(classes)} classes")
        if len(classes) == 2:  # scikit-learn's binary model: one row, logit of class 1
            w, b = (w[1] - w[0])[None, :], np.asarray([b[1] - b[0]])
        return cls(**params)._set_fitted(w, b, classes, w.shape[1])


def _dense(coef):
    """``coef_`` as an array, whether :meth:`~LogisticRegression.sparsify` made it CSR or not."""
    return coef.toarray() if sparse.issparse(coef) else coef


class _IterationTasks:
    """scikit-learn 1.9's per-iteration callback tasks of an lbfgs fit: a subtask begun with
    the starting point, ended and the next begun after each iteration (the estimator as it
    would be, had the fit stopped there), and the last, begun after the last iteration, ended
    empty. An iteration that took no step (the solver found no descent) is reported at the
    point where it ended, after the others: one task per iteration counted in ``n_iter_``."""

    def __init__(
        self, context, estimator, X, y, metadata, dtype, init, n_classes, n_features
    ) -> None:
        self.context, self.estimator, self.X, self.y = context, estimator, X, y
        self.metadata, self.dtype = metadata, dtype
        self.reported = 0
        rows = 1 if n_classes == 2 else n_classes
        if init is None:
            coef, intercept = np.zeros((rows, n_features)), np.zeros(rows)
        else:
            coef, intercept = np.asarray(init[0]), np.asarray(init[1])
        self.task = self._begin(coef, intercept)

    def _attributes(self, coef: np.ndarray, intercept: np.ndarray) -> dict:
        return {
            "coef_": np.array(coef, dtype=self.dtype),
            "intercept_": np.array(intercept, dtype=self.dtype),
        }

    def _begin(self, coef: np.ndarray, intercept: np.ndarray):
        task = self.context.subcontext(task_name="lbfgs-iter")
        task.call_on_fit_task_begin(
            estimator=self.estimator,
            X=self.X,
            y=self.y,
            metadata=self.metadata,
            reconstruction_attributes=self._attributes(coef, intercept),
        )
        return task

    def iteration(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.task.call_on_fit_task_end(
            estimator=self.estimator,
            X=self.X,
            y=self.y,
            metadata=self.metadata,
            reconstruction_attributes=self._attributes(coef, intercept),
        )
        self.reported += 1
        self.task = self._begin(coef, intercept)

    def close(self, n_iter: int, coef: np.ndarray, intercept: np.ndarray) -> None:
        while self.reported < max(n_iter, 1):
            self.iteration(coef, intercept)
        self.task.call_on_fit_task_end(estimator=self.estimator)
