"""scikit-learn's ``LogisticRegression`` and ``LogisticRegressionCV``, sooner.

The same estimators (parameters, fitted attributes, methods, errors) for the case they share
with this package, multinomial (or binomial, for two classes) logistic regression with an L2
penalty or none, and the same answer: the minimiser of scikit-learn's objective
``C * sum_i s_i * logloss_i + ||coef_||^2 / 2`` (intercept not penalised; ``class_weight``
folded into ``s_i``). Solved by :mod:`softmax_regression.solver`, the package's one
full-batch objective and solver (the best-linear recipe's too), in torch: preconditioned
L-BFGS with the gradient written out, on the CPU or a GPU, and data-parallel under
``torchrun``.

What differs from scikit-learn: the L1 and elastic-net penalties, ``dual`` and the liblinear
solver (one-vs-rest, penalised intercept) are not here and raise a ValueError naming
scikit-learn's class to use; every ``solver`` name that minimises this objective runs this
solver; sparse input is not accepted. Two parameters are extra: ``device`` ("auto", "cpu",
"cuda") and ``dtype`` ("float32", "float64").

Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank calls ``fit`` with its own rows (its shard;
:func:`rank_rows` gives the contiguous share of a dataset that every rank holds whole); the
loss and gradient sums are all-reduced once per evaluation, every rank takes the same steps
and ends with the same ``coef_``.
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised with scikit-learn hidden
    raise ImportError(
        "softmax_regression.sklearn needs scikit-learn: pip install 'softmax-regression[sklearn]'"
    ) from e

import hashlib
import math
import numbers
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import get_scorer
from sklearn.model_selection import check_cv
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.extmath import softmax
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import distributed
from .solver import Preconditioner, SoftmaxLoss, default_block_rows, minimize, moments

__all__ = ["LogisticRegression", "LogisticRegressionCV", "rank_rows"]

# Every scikit-learn solver that minimises this objective; all of them run ours.
SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky", "sag", "saga")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# L-BFGS memory: scikit-learn's L-BFGS-B keeps 10 pairs; 20 took fewer passes here.
HISTORY = 20
# A step that changes the (mean-scaled) objective, or moves a parameter, by less than this
# ends the fit. float32 cannot see below ~1e-10. In float64 the objective stops changing
# (at ~1e-16) while its gradient can still fall by orders of magnitude, which the strong
# Wolfe line search follows: so only a step of no size at all ends a float64 fit (or the
# line search finding no descent), and a tight tol (1e-10) is reached, not cut short.
TOLERANCE_CHANGE = {torch.float64: 1e-20, torch.float32: 1e-10}
# The preconditioner's curvature scale, ``P = (ALPHA cov + weight_decay I)^(-1/2)``: twice
# the bound of the loss's curvature per unit input variance (1/2 for the softmax, Boehning's
# bound; 1/4 for the binomial loss). Against 1/K (the curvature at W = 0): about 2x fewer
# iterations on BENCHMARKS.md's (a) and (b) and on the larger problems of
# tests/test_sklearn.py, the same to one more on its small ones.
ALPHA = 1.0
ALPHA_BINARY = 0.5
# scikit-learn's ``tol`` test (the largest gradient component at most ``tol``) asked of this
# many consecutive iterates: on weakly penalised problems that component swings by 10x
# between iterates, and a single dip would stop the fit early (Fashion-MNIST with C = 1:
# at an objective 3e-4 above scikit-learn's, where two in a row end 2e-3 below it).
TOL_REPEATS = 2
# A float64 fit that L-BFGS leaves above ``tol`` because the objective stopped changing is
# finished by up to this many Newton steps (:meth:`_Problem._polish`) when it has at most this
# many parameters: the Hessian costs two gradient passes per parameter.
POLISH_STEPS = 4
POLISH_MAX_PARAMETERS = 600
_SKLEARN_LR = "sklearn.linear_model.LogisticRegression"


def rank_rows(n_rows: int) -> slice:
    """This process's contiguous share of ``n_rows`` rows under ``torchrun`` (all of them
    otherwise): ``X[rank_rows(len(X))]`` is what a rank passes to ``fit`` when every rank
    holds the whole dataset."""
    if not distributed.launched():
        return slice(0, n_rows)
    import os

    size, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    lo, hi = distributed.share(n_rows, size, rank)
    return slice(lo, hi)


def _world(device: str) -> distributed.World | None:
    if not distributed.launched():
        return None
    world = distributed.init(device)
    return world if world is not None and world.parallel else None


def _penalty(estimator: Any, penalty: Any, l1_ratio: Any, C: float) -> str | None:
    """scikit-learn 1.9's reading of ``penalty`` / ``l1_ratio`` / ``C``: "l2" or None."""
    name = type(estimator).__name__
    if penalty == "deprecated":
        if l1_ratio is None or l1_ratio == 0:
            resolved = "l2"
        elif l1_ratio == 1:
            resolved = "l1"
        else:
            resolved = "elasticnet"
        if np.inf == C and resolved == "l2":
            resolved = None
    else:
        warnings.warn(
            "'penalty' was deprecated in scikit-learn 1.8 and will be removed in 1.10; "
            "use 'l1_ratio' or 'C' instead (C=np.inf instead of penalty=None)",
            FutureWarning,
            stacklevel=3,
        )
        resolved = penalty
    if resolved in ("l1", "elasticnet"):
        raise ValueError(
            f"{name} supports only the 'l2' penalty or none, got {resolved!r}; "
            f"use {_SKLEARN_LR}(solver='saga') for the L1 and elastic-net penalties"
        )
    if resolved not in ("l2", None):
        raise ValueError(f"penalty must be 'l2' or None, got {resolved!r}")
    return resolved


def _check_common(estimator: Any) -> tuple[torch.device, torch.dtype]:
    name = type(estimator).__name__
    if estimator.dual:
        raise ValueError(
            f"{name} solves the primal problem only, got dual=True; "
            f"use {_SKLEARN_LR}(solver='liblinear', dual=True)"
        )
    if estimator.solver == "liblinear":
        raise ValueError(
            f"{name} fits the multinomial model with an unpenalised intercept; the "
            f"'liblinear' solver (one-vs-rest, penalised intercept) is {_SKLEARN_LR}'s"
        )
    if estimator.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {estimator.solver!r}")
    tol = estimator.tol
    if not isinstance(tol, numbers.Real) or isinstance(tol, bool) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    it = estimator.max_iter
    if not isinstance(it, numbers.Integral) or isinstance(it, bool) or it < 0:
        raise ValueError(f"max_iter must be an integer >= 0, got {it!r}")
    if not isinstance(estimator.fit_intercept, bool | np.bool_):
        raise ValueError(f"fit_intercept must be a bool, got {estimator.fit_intercept!r}")
    if estimator.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be one of auto, cpu, cuda, got {estimator.device!r}")
    if estimator.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of float32, float64, got {estimator.dtype!r}")
    if estimator.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif estimator.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is available")
    else:
        device = torch.device(estimator.device)
    return device, DTYPES[estimator.dtype]


def _check_C(C: Any, what: str = "C") -> float:
    if not isinstance(C, numbers.Real) or isinstance(C, bool) or not C > 0:
        raise ValueError(f"{what} must be a positive number (np.inf: no penalty), got {C!r}")
    return float(C)


def _weights(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray,
    sample_weight: Any,
    class_weight: Any,
) -> np.ndarray | None:
    """Sample weights times class weights (scikit-learn's rule), float64, or None."""
    if sample_weight is None and class_weight is None:
        return None
    sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    if class_weight is not None:
        cw = compute_class_weight(class_weight, classes=classes, y=y, sample_weight=sample_weight)
        sw = sw * cw[np.searchsorted(classes, y)]
    return sw


def _tensor(a: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``a`` on ``device`` in ``dtype``: shared with numpy when nothing changes (torch wants a
    writable array for that), else one copy."""
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        return torch.tensor(a, device=device, dtype=dtype)
    return torch.from_numpy(a).to(device=device, dtype=dtype)


class _Problem:
    """One set of rows on the device, ready for fits at several C (a path)."""

    def __init__(
        self,
        X: np.ndarray,
        y_index: np.ndarray,
        sample_weight: np.ndarray | None,
        n_classes: int,
        fit_intercept: bool,
        device: torch.device,
        dtype: torch.dtype,
        world: distributed.World | None = None,
    ) -> None:
        self.binary = n_classes == 2
        self.n_classes = n_classes
        self.dtype = dtype
        x = _tensor(X, device, dtype)
        y = _tensor(np.asarray(y_index, dtype=np.int64), device, torch.int64)
        sw = None if sample_weight is None else _tensor(sample_weight, device, dtype)
        self.loss = SoftmaxLoss(
            x,
            y,
            0.0,
            sample_weight=sw,
            binary=self.binary,
            fit_intercept=fit_intercept,
            block_rows=default_block_rows(device),
            world=world,
            loss_dtype=torch.float64,
        )
        second, mean = moments(self.loss)
        self.total = self.loss.total_weight or float(x.shape[0])
        if fit_intercept:
            # Rows enter centred, the intercept absorbing the mean: the curvature in W no
            # longer mixes with the intercept's. Folded into the parameters, never copied.
            self.mean = mean.to(dtype)
            self.loss.center = self.mean
            self.cov = second - torch.outer(mean, mean)
        else:
            self.mean = None
            self.cov = second
        self.alpha = ALPHA_BINARY if self.binary else ALPHA

    def fit(
        self,
        C: float,
        init: tuple[np.ndarray, np.ndarray] | None,
        tol: float,
        max_iter: int,
        verbose: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, int, bool, float]:
        """(coef, intercept, iterations, converged, objective) at ``C``, in scikit-learn's
        shapes: (K, D) and (K,), or (1, D) and (1,) for two classes."""
        x = self.loss.x
        rows, d = (1 if self.binary else self.n_classes), x.shape[1]
        wd = 0.0 if math.isinf(C) else 1.0 / (C * self.total)
        self.loss.weight_decay = wd
        pre = Preconditioner(self.cov, wd, self.alpha)
        p, p_inv = self._same((pre.p, pre.p_inv), "sharing the preconditioner")
        if init is None:
            w0 = torch.zeros(rows, d, dtype=torch.float64)
            b0 = torch.zeros(rows, dtype=torch.float64)
        else:
            w0 = torch.as_tensor(np.asarray(init[0], dtype=np.float64)).reshape(rows, d)
            b0 = torch.as_tensor(np.asarray(init[1], dtype=np.float64)).reshape(rows)
        w0, b0 = w0.to(x.device), b0.to(x.device)
        if self.mean is not None:
            b0 = b0 + w0 @ self.mean.double()  # the centred parametrisation's intercept
        callback = None
        if verbose:

            def callback(n: int, value: float) -> None:
                print(f"iteration {n}: objective {value:.10g}")

        sol = minimize(
            self.loss,
            (w0.to(self.dtype), b0.to(self.dtype)),
            max_iter,
            tol=tol,
            tol_repeats=TOL_REPEATS,
            preconditioner=(p, p_inv),
            history_size=HISTORY,
            tolerance_grad=0.0,
            tolerance_change=TOLERANCE_CHANGE[self.dtype],
            callback=callback,
        )
        w, b = sol.weight, sol.bias
        iterations, converged, objective = sol.iterations, sol.converged, sol.objective
        n_params = w.numel() + b.numel()
        if (
            self.dtype == torch.float64
            and not converged
            and iterations < max_iter
            and n_params <= POLISH_MAX_PARAMETERS
        ):
            w, b, steps, converged = self._polish(w, b, tol, max_iter - iterations)
            iterations += steps
            objective = float(self.loss.loss_gradient(w, b)[0])
        w, b = w.double(), b.double()
        if self.mean is not None:
            b = b - w @ self.mean.double()
        if not self.loss.fit_intercept:
            b = torch.zeros_like(b)
        elif not self.binary:
            # One constant added to every class's intercept changes no probability and no
            # objective: the one answer is the one whose intercepts sum to 0 (as scikit-learn's
            # fit, started at 0, keeps them), so that decision_function is determined too.
            b = b - b.mean()
        return (w.cpu().numpy(), b.cpu().numpy(), iterations, converged, objective)

    def _same(self, tensors: tuple[torch.Tensor, ...], what: str) -> tuple[torch.Tensor, ...]:
        """Rank 0's ``tensors`` on every rank under torchrun (as they are otherwise): LAPACK's
        eigh and lstsq may differ in the last bits between processes given the same matrix,
        and every rank must take the same steps."""
        if not self.loss.parallel:
            return tensors
        world = self.loss.world
        shared = world.broadcast([t.cpu() for t in tensors] if world.is_main else None, what)
        return tuple(t.to(o.device) for t, o in zip(shared, tensors, strict=True))

    def _polish(
        self, w: torch.Tensor, b: torch.Tensor, tol: float, max_steps: int
    ) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
        """Newton steps after L-BFGS stopped short of ``tol`` because the float64 objective
        no longer changes (it is flat to ~1e-16 while its gradient can fall further): the
        Hessian from central differences of the exact gradient, a step kept only when it
        lowers the gradient's largest component. (weight, bias, steps taken, converged)."""
        loss, (k, d) = self.loss, w.shape

        def gradient(theta: torch.Tensor) -> torch.Tensor:
            _, gw, gb = loss.loss_gradient(theta[: k * d].view(k, d), theta[k * d :])
            return torch.cat([gw.reshape(-1), gb])

        def largest(g: torch.Tensor) -> float:
            return loss.largest_component(g[: k * d].view(k, d), g[k * d :])

        theta = torch.cat([w.reshape(-1), b])
        g = gradient(theta)
        steps = 0
        while largest(g) > tol and steps < min(POLISH_STEPS, max_steps):
            h = 1e-5 * max(1.0, float(theta.abs().max()))
            eye = torch.eye(len(theta), dtype=theta.dtype, device=theta.device) * h
            hessian = torch.stack(
                [(gradient(theta + e) - gradient(theta - e)) / (2 * h) for e in eye]
            )
            hessian = (hessian + hessian.T) / 2
            # Least squares: the intercepts' common shift (and, without a penalty, the
            # weights') is a direction of no curvature at all.
            step = torch.linalg.lstsq(hessian.cpu(), -g.cpu().unsqueeze(1), rcond=1e-7).solution
            (step,) = self._same((step,), "sharing the Newton step")
            new = theta + step.squeeze(1).to(theta.device)
            g_new = gradient(new)
            if not largest(g_new) < largest(g):
                break
            theta, g, steps = new, g_new, steps + 1
        return theta[: k * d].view(k, d).clone(), theta[k * d :].clone(), steps, largest(g) <= tol


class LogisticRegression(ClassifierMixin, BaseEstimator):
    """scikit-learn 1.9's ``LogisticRegression`` (multinomial, L2 or no penalty), in torch.

    Parameters as scikit-learn's (``penalty`` deprecated there too: ``C=np.inf`` means no
    penalty, ``l1_ratio`` must be 0); ``intercept_scaling``, ``random_state`` and ``n_jobs``
    are accepted and have no effect, as with scikit-learn's lbfgs. Extra: ``device``
    ("auto": cuda when available) and ``dtype`` ("float32", or "float64" for scikit-learn's
    precision).
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
        dtype="float32",
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

    # ------------------------------------------------------------------ fitting

    def _validate(self, X, y, reset: bool = True):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], order="C", reset=reset)
        check_classification_targets(y)
        return X, y

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

    def fit(self, X, y, sample_weight=None):
        """Fit the model on ``X`` (n_samples, n_features) and ``y``; under torchrun, this
        rank's rows."""
        C = _check_C(self.C)
        penalty = _penalty(self, self.penalty, self.l1_ratio, C)
        device, dtype = _check_common(self)
        world = _world(self.device)
        X, y = self._validate(X, y)
        if world is not None:
            world.check_same({"n_features": X.shape[1], "C": C, "dtype": self.dtype})
        classes, y_index = self._classes(y, world)
        self.classes_ = classes
        sw = self._sample_weights(X, y, y_index, sample_weight, world)
        init = None
        if self.warm_start and hasattr(self, "coef_"):
            rows = 1 if len(classes) == 2 else len(classes)
            if self.coef_.shape != (rows, X.shape[1]):
                raise ValueError(
                    f"Initialization coef is of shape {self.coef_.shape}, expected shape "
                    f"{(rows, X.shape[1])}"
                )
            init = (self.coef_, self.intercept_)
        problem = _Problem(X, y_index, sw, len(classes), self.fit_intercept, device, dtype, world)
        C_ = np.inf if penalty is None else C
        coef, intercept, n_iter, converged, _ = problem.fit(
            C_, init, float(self.tol), int(self.max_iter), self.verbose
        )
        _warn_unconverged(converged, n_iter, int(self.max_iter))
        self.coef_ = coef.astype(X.dtype, copy=False)
        self.intercept_ = intercept.astype(X.dtype, copy=False)
        self.n_iter_ = np.asarray([n_iter], dtype=np.int32)
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
        """Confidence scores: (n_samples,) for two classes, (n_samples, n_classes) else."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        scores = X @ self.coef_.T + self.intercept_
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
        tags.input_tags.sparse = False
        return tags

    # ------------------------------------------------------------------ the package's model

    def to_model(self):
        """The package's :class:`~softmax_regression.model.SoftmaxRegression` with these
        weights (two classes: a 2-class model with logits ``[0, z]``, the same predictions)."""
        from .model import SoftmaxRegression

        check_is_fitted(self)
        coef = np.asarray(self.coef_, dtype=np.float32)
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
        from .runs.artifacts import MODEL_FILE, save_model

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
        from .runs.artifacts import load_model

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


def _json_params(estimator: Any) -> dict[str, Any]:
    """The estimator's parameters that JSON can hold (the rest by their repr)."""
    out = {}
    for key, value in estimator.get_params(deep=False).items():
        plain = isinstance(value, str | int | bool | type(None)) or (
            isinstance(value, float) and math.isfinite(value)
        )
        out[key] = value if plain else repr(value)
    return out


def _fingerprint(X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for a in (X, y, sample_weight):
        if a is not None:
            digest.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1))
    return digest.hexdigest()


def _summed(world: distributed.World, a: np.ndarray, what: str) -> np.ndarray:
    """``a`` summed over the ranks (each rank filled only its own entries), in float64."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    if world.device.type != "cpu":
        t = t.to(world.device)
    return world.sum_same_(t, what).cpu().numpy()


def _warn_unconverged(converged: bool, n_iter: int, max_iter: int) -> None:
    if not converged and n_iter >= max_iter:
        warnings.warn(
            f"lbfgs failed to converge after {n_iter} iteration(s): the largest gradient "
            "component is still above tol. Increase the number of iterations (max_iter) "
            "or scale the data.",
            ConvergenceWarning,
            stacklevel=3,
        )


class LogisticRegressionCV(LogisticRegression):
    """scikit-learn 1.9's ``LogisticRegressionCV`` (L2 or no penalty), in torch.

    For every fold the path over ``Cs`` is fitted in order, each C warm-started from the
    previous one, and scored on the held-out rows (``scoring``; None: accuracy); the best C
    (summed over folds) is refitted on all rows from the folds' mean, as scikit-learn does.
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
        l1 = list(np.asarray(l1, dtype=np.float64).ravel())
        if not l1 or any(r != 0 for r in l1):
            raise ValueError(
                f"LogisticRegressionCV supports only the 'l2' penalty (l1_ratios of 0), got "
                f"l1_ratios={self.l1_ratios!r}; use sklearn.linear_model.LogisticRegressionCV"
                "(solver='saga') for the L1 and elastic-net penalties"
            )
        return grid, l1, True

    def fit(self, X, y, sample_weight=None, **params):
        """Cross-validate ``Cs``, then (``refit``) fit the best on all of ``X``."""
        if params:
            raise ValueError(f"fit got unexpected parameters {sorted(params)}")
        if self.penalty != "deprecated":
            _penalty(self, self.penalty, 0.0 if self.penalty == "l2" else 1.0, 1.0)
        device, dtype = _check_common(self)
        grid, l1_ratios_, keep_l1 = self._grid()
        world = _world(self.device)
        if world is not None:
            device = world.device
        scoring = None if isinstance(self.scoring, str) and self.scoring == "warn" else self.scoring
        use_legacy = self.use_legacy_attributes is not False
        X, y = self._validate(X, y)
        classes, y_index = self._classes(y, None)
        self.classes_ = classes
        n_classes = len(classes)
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
        paths = np.zeros((len(folds), len(grid), rows, n_dof))
        scores = np.zeros((len(folds), len(grid)))
        n_iter = np.zeros((len(folds), len(grid)), dtype=np.int32)
        for f in mine:
            train, test = folds[f]
            sw_train = None if sw_all is None else sw_all[train]
            sw = _weights(self, X[train], y[train], classes, sw_train, class_weight)
            problem = _Problem(
                X[train], y_index[train], sw, n_classes, self.fit_intercept, device, dtype
            )
            init = None
            for i, C in enumerate(grid):
                coef, intercept, it, _, _ = problem.fit(float(C), init, tol, max_iter)
                init = (coef, intercept)
                n_iter[f, i] = it
                paths[f, i, :, : X.shape[1]] = coef
                if self.fit_intercept:
                    paths[f, i, :, -1] = intercept
                est = LogisticRegression()._set_fitted(coef, intercept, classes, X.shape[1])
                sw_test = None if sw_all is None else sw_all[test]
                if scorer is None:
                    scores[f, i] = est.score(X[test], y[test], sample_weight=sw_test)
                elif sw_test is not None:
                    scores[f, i] = scorer(est, X[test], y[test], sample_weight=sw_test)
                else:
                    scores[f, i] = scorer(est, X[test], y[test])
        if world is not None:  # each fold's numbers from the rank that fitted it
            paths = _summed(world, paths, "gathering the folds' paths")
            scores = _summed(world, scores, "gathering the folds' scores")
            n_iter = _summed(world, n_iter, "gathering the folds' iterations").astype(np.int32)
        self.Cs_ = grid
        if self.refit:
            best = int(np.argmax(scores.sum(axis=0)))
            C_ = float(grid[best])
            mean = paths[:, best].mean(axis=0)  # (rows, n_dof)
            init = (mean[:, : X.shape[1]], mean[:, -1] if self.fit_intercept else np.zeros(rows))
            sw = _weights(self, X, y, classes, sw_all, class_weight)
            problem = _Problem(X, y_index, sw, n_classes, self.fit_intercept, device, dtype)
            coef, intercept, it, converged, _ = problem.fit(C_, init, tol, max_iter)
            if world is not None:  # every rank refitted the same; rank 0's bits for all
                coef, intercept = world.broadcast(
                    (coef, intercept) if world.is_main else None, "sharing the refit"
                )
            _warn_unconverged(converged, it, max_iter)
        else:
            best_each = np.argmax(scores, axis=1)
            mean = np.mean([paths[f, best_each[f]] for f in range(len(folds))], axis=0)
            coef = mean[:, : X.shape[1]]
            intercept = mean[:, -1] if self.fit_intercept else np.zeros(rows)
            C_ = float(np.mean(grid[best_each]))
        self.coef_, self.intercept_ = coef, intercept
        self._cv_attributes(paths, scores, n_iter, C_, l1_ratios_, keep_l1, use_legacy, binary)
        return self

    def _cv_attributes(self, paths, scores, n_iter, C_, l1_ratios_, keep_l1, legacy, binary):
        """scikit-learn 1.9's shapes of ``coefs_paths_``, ``scores_``, ``n_iter_``, ``C_``,
        ``l1_ratio_``, ``l1_ratios_`` (legacy or new, with or without the l1 dimension)."""
        n_folds, n_cs, rows, n_dof = paths.shape
        n_l1 = len(l1_ratios_)
        keys = self.classes_[1:] if binary else self.classes_
        # (rows, folds, cs, l1, dof) / (folds, cs, l1): the l1 fits are one fit repeated.
        p = np.repeat(np.moveaxis(paths, 2, 0)[:, :, :, None, :], n_l1, axis=3)
        s = np.repeat(scores[:, :, None], n_l1, axis=2)
        it = np.repeat(n_iter[:, :, None], n_l1, axis=2)
        self.l1_ratios_ = np.asarray(l1_ratios_)
        l1_value = l1_ratios_[0]
        if legacy:
            if not keep_l1:
                p, s, it = p[:, :, :, 0], s[:, :, 0], it[:, :, 0]
            self.coefs_paths_ = dict(zip(keys, p, strict=True))
            self.scores_ = {k: s.copy() for k in keys}
            self.n_iter_ = it[None, ...]
            self.C_ = np.full(len(keys), C_)
            self.l1_ratio_ = np.asarray([l1_value] * len(keys))
        else:
            self.coefs_paths_ = np.moveaxis(p, (0, 1, 3), (3, 0, 1))
            self.scores_ = np.moveaxis(s, (1, 2), (2, 1))
            self.n_iter_ = np.moveaxis(it, (1, 2), (2, 1))
            self.C_ = C_
            self.l1_ratio_ = 0.0 if l1_value is None else float(l1_value)

    def score(self, X, y, *, sample_weight=None, **score_params):
        """``scoring`` on ``X``, ``y`` (None or "warn": accuracy), as scikit-learn's."""
        scoring = None if isinstance(self.scoring, str) and self.scoring == "warn" else self.scoring
        if scoring is None:
            return super().score(X, y, sample_weight=sample_weight)
        kwargs = dict(score_params)
        if sample_weight is not None:
            kwargs["sample_weight"] = sample_weight
        return get_scorer(scoring)(self, X, y, **kwargs)
