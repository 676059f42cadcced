"""What the estimators share: parameter checks, sample weights, the settings of the solver."""

from __future__ import annotations

import hashlib
import math
import numbers
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import _check_sample_weight

from .. import distributed
from ..errors import ConfigError
from ..linear_loss import is_sparse

# scikit-learn's solvers. Every one that minimises the multinomial objective runs ours; so
# does "liblinear" for its own model (penalised intercept; one-vs-rest under
# :class:`OneVsRestClassifier`).
SOLVERS = ("lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga")
# Newton's method itself where it is cheap (a small dense float64 L2 fit), L-BFGS elsewhere.
NEWTON_SOLVERS = ("newton-cg", "newton-cholesky")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


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


def _penalty(
    estimator: Any, penalty: Any, l1_ratio: Any, C: float, stacklevel: int = 3
) -> tuple[str | None, float]:
    """scikit-learn 1.9's reading of ``penalty`` / ``l1_ratio`` / ``C``: ("l2", "l1",
    "elasticnet" or None; the L1 share of the penalty that is fitted), with its deprecation
    warnings (``penalty``, ``l1_ratio=None``) and their texts, shown at the caller
    ``stacklevel`` frames up (the user's ``fit`` call)."""
    if l1_ratio is not None and (
        not isinstance(l1_ratio, numbers.Real)
        or isinstance(l1_ratio, bool)
        or not 0 <= l1_ratio <= 1
    ):
        raise ValueError(f"l1_ratio must be a number in [0, 1] or None, got {l1_ratio!r}")
    if penalty == "deprecated":
        if l1_ratio is None or l1_ratio == 0:
            resolved = "l2"
            if l1_ratio is None:
                warnings.warn(
                    "'l1_ratio=None' was deprecated in version 1.8 and will trigger an error "
                    "in 1.10. Use 0<=l1_ratio<=1 instead.",
                    FutureWarning,
                    stacklevel=stacklevel,
                )
        elif l1_ratio == 1:
            resolved = "l1"
        else:
            resolved = "elasticnet"
        if np.inf == C and resolved == "l2":
            resolved = None
    else:
        warnings.warn(
            "'penalty' was deprecated in version 1.8 and will be removed in 1.10. To avoid "
            "this warning, leave 'penalty' set to its default value and use 'l1_ratio' or "
            "'C' instead. Use l1_ratio=0 instead of penalty='l2', l1_ratio=1 instead of "
            "penalty='l1', l1_ratio set to a float between 0 and 1 instead of "
            "penalty='elasticnet', and C=np.inf instead of penalty=None.",
            FutureWarning,
            stacklevel=stacklevel,
        )
        resolved = penalty
        if resolved != "elasticnet" and l1_ratio is not None and 0 < l1_ratio < 1:
            warnings.warn(
                "l1_ratio parameter is only used when penalty is 'elasticnet'. Got "
                f"(penalty={resolved})",
                UserWarning,
                stacklevel=stacklevel,
            )
        if (penalty == "l2" and l1_ratio != 0) or (penalty == "l1" and l1_ratio != 1):
            warnings.warn(
                f"Inconsistent values: penalty={penalty} with l1_ratio={l1_ratio}. penalty is "
                "deprecated. Please use l1_ratio only.",
                UserWarning,
                stacklevel=stacklevel,
            )
        if penalty is None and C != 1.0:
            warnings.warn(
                "Setting penalty=None will ignore the C and l1_ratio parameters",
                UserWarning,
                stacklevel=stacklevel,
            )
    if resolved not in ("l2", "l1", "elasticnet", None):
        raise ValueError(f"penalty must be 'l2', 'l1', 'elasticnet' or None, got {resolved!r}")
    if resolved == "elasticnet" and l1_ratio is None:
        raise ValueError("l1_ratio must be specified when penalty is elasticnet.")
    share = {"l1": 1.0, "elasticnet": l1_ratio}.get(resolved, 0.0)
    return resolved, float(share)


def _warn_n_jobs(n_jobs: Any, stacklevel: int = 3) -> None:
    """scikit-learn 1.9's FutureWarning for ``n_jobs``, which has no effect there either."""
    if n_jobs is not None:
        warnings.warn(
            "'n_jobs' has no effect since 1.8 and will be removed in 1.10. "
            f"You provided 'n_jobs={n_jobs}', please leave it unspecified.",
            FutureWarning,
            stacklevel=stacklevel,
        )


def _check_solver(solver: str, penalty: str | None, dual: bool) -> None:
    """scikit-learn's pairings of solver, penalty and dual, with its messages: the L1 and
    elastic-net penalties with 'saga' (and 'l1' with 'liblinear'), dual with liblinear's L2."""
    if solver not in ("liblinear", "saga") and penalty not in ("l2", None):
        raise ValueError(
            f"Solver {solver} supports only 'l2' or None penalties, got {penalty} penalty. "
            "(solver='saga' fits the L1 and elastic-net penalties)"
        )
    if solver != "liblinear" and dual:
        raise ValueError(f"Solver {solver} supports only dual=False, got dual={dual}")
    if penalty == "elasticnet" and solver != "saga":
        raise ValueError(f"Only 'saga' solver supports elasticnet penalty, got solver={solver}.")
    if solver == "liblinear" and penalty is None:
        raise ValueError(
            "C=np.inf as well as penalty=None is not supported for the liblinear solver"
        )
    if solver == "liblinear" and dual and penalty == "l1":
        raise ValueError(
            "Unsupported set of arguments: The combination of penalty='l1' and "
            "loss='logistic_regression' are not supported when dual=True, Parameters: "
            "penalty='l1', loss='logistic_regression', dual=True"
        )


def _check_common(estimator: Any) -> tuple[torch.device, torch.dtype]:
    if estimator.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {estimator.solver!r}")
    if not isinstance(estimator.dual, bool | np.bool_):
        raise ValueError(f"dual must be a bool, got {estimator.dual!r}")
    if estimator.solver == "liblinear":
        scaling = estimator.intercept_scaling
        if not isinstance(scaling, numbers.Real) or isinstance(scaling, bool) or not scaling > 0:
            raise ValueError(f"intercept_scaling must be a positive number, got {scaling!r}")
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
    if estimator.dtype is not None and estimator.dtype not in DTYPES:
        raise ValueError(
            f"dtype must be None (the input's), float32 or float64, got {estimator.dtype!r}"
        )
    if estimator.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif estimator.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is available")
    else:
        device = torch.device(estimator.device)
    return device, DTYPES.get(estimator.dtype)


def _check_checkpoint(estimator: Any, world: distributed.World | None) -> None:
    """``checkpoint``: None or a file path (:func:`._checkpoint.check_path`), and not under a
    multi-rank torchrun (each rank would keep its own file of one shared fit)."""
    from ._checkpoint import check_path

    if check_path(estimator.checkpoint) is not None and world is not None:
        raise ConfigError(
            "checkpoint= is not supported under torchrun with several ranks; fit in one "
            "process to keep a checkpoint"
        )


def _names(classes: np.ndarray) -> list[str]:
    """The classes as a checkpoint's identity names them."""
    return [str(c) for c in classes]


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


def _answer_dtype(requested: torch.dtype | None, X, solver: str | None = None) -> torch.dtype:
    """scikit-learn's rule unless ``dtype`` was given: float32 rows give a float32 fit, float64
    rows (integers are validated into float64) a float64 one; liblinear's model always a
    float64 one (scikit-learn's liblinear computes in float64 whatever the rows)."""
    if requested is not None:
        return requested
    if solver == "liblinear":
        return torch.float64
    return torch.float32 if X.dtype == np.float32 else torch.float64


def _fingerprint(X, y: np.ndarray, sample_weight: np.ndarray | None) -> str:
    digest = hashlib.blake2b(digest_size=16)
    parts = (X.data, X.indices, X.indptr) if is_sparse(X) else (X,)
    for a in (*parts, y, sample_weight):
        if a is not None:
            digest.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1))
    return digest.hexdigest()


def _tensor(a: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``a`` on ``device`` in ``dtype``: shared with numpy when nothing changes (torch wants a
    writable array for that), else one copy."""
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        return torch.tensor(a, device=device, dtype=dtype)
    return torch.from_numpy(a).to(device=device, dtype=dtype)


def _json_params(estimator: Any) -> dict[str, Any]:
    """The estimator's parameters that JSON can hold (the rest by their repr)."""
    out = {}
    for key, value in estimator.get_params(deep=False).items():
        plain = isinstance(value, str | int | bool | type(None)) or (
            isinstance(value, float) and math.isfinite(value)
        )
        out[key] = value if plain else repr(value)
    return out


def _summed(world: distributed.World, a: np.ndarray, what: str) -> np.ndarray:
    """``a`` summed over the ranks (each rank filled only its own entries), in float64."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    if world.device.type != "cpu":
        t = t.to(world.device)
    return world.sum_same_(t, what).cpu().numpy()


def _check_liblinear(X: np.ndarray, n_classes: int) -> None:
    """scikit-learn's limits on its liblinear solver (its messages)."""
    if n_classes > 2:
        raise ValueError(
            "The 'liblinear' solver does not support multiclass classification (n_classes >= "
            "3). Either use another solver or wrap the estimator in a OneVsRestClassifier to "
            "keep applying a one-versus-rest scheme (softmax_regression.sklearn."
            "OneVsRestClassifier fits the binary problems at once)."
        )
    if X.shape[0] * X.shape[1] and X.max() > 1e30:
        raise ValueError(
            "Using the 'liblinear' solver while X contains a maximum value > 1e30 results in "
            "a frozen fit. Please choose another solver or rescale the input X."
        )


# What scikit-learn 1.9 says when each of its solvers stops at ``max_iter`` (its tests match
# these words); every solver name runs this package's solver, which stopped there too.
_UNCONVERGED = {
    "newton-cg": "newton-cg failed to converge at loss = {objective}. Increase the number of "
    "iterations.",
    "newton-cholesky": "Newton solver did not converge after {n_iter} iterations.",
    "sag": "The max_iter was reached which means the coef_ did not converge",
    "saga": "The max_iter was reached which means the coef_ did not converge",
    "liblinear": "Liblinear failed to converge, increase the number of iterations.",
}
_UNCONVERGED_ADVICE = (
    "\n\nIncrease the number of iterations to improve the convergence (max_iter={max_iter})."
    "\nYou might also want to scale the data as shown in:\n"
    "    https://scikit-learn.org/stable/modules/preprocessing.html"
)


def _warn_unconverged(
    converged: bool,
    n_iter: int,
    max_iter: int,
    solver: str = "lbfgs",
    objective: float = np.nan,
    stacklevel: int = 3,
) -> None:
    """scikit-learn's ConvergenceWarning, in the words of the ``solver`` asked for, when a fit
    stopped at ``max_iter`` with the largest gradient component still above ``tol``."""
    if converged or n_iter < max_iter:
        return
    head = _UNCONVERGED.get(
        solver,
        "lbfgs failed to converge after {n_iter} iteration(s): the largest gradient "
        "component is still above tol.",
    )
    text = (head + _UNCONVERGED_ADVICE).format(
        n_iter=n_iter, max_iter=max_iter, objective=objective
    )
    warnings.warn(text, ConvergenceWarning, stacklevel=stacklevel)
