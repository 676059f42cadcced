"""scikit-learn's ``LogisticRegression`` and ``LogisticRegressionCV``, sooner.

The same estimators (parameters, fitted attributes, methods, errors, warnings, callbacks) and
the same answer: the minimiser of scikit-learn's objective ``C * sum_i s_i * logloss_i +
l1_ratio * ||coef_||_1 + (1 - l1_ratio) / 2 * ||coef_||^2`` (intercept not penalised;
``class_weight`` folded into ``s_i``), multinomial or binomial, on dense or sparse rows; and
liblinear's one-vs-rest model (penalised intercept). Solved over one objective
(``softmax_regression.linear_loss``) by the package's solvers
(:mod:`softmax_regression.solver`: preconditioned L-BFGS, float32 iterations finished in
float64 for a float64 answer; OWL-QN for an L1 term; Newton's method for liblinear's L2
model and small Newton fits), in torch, on the CPU or a GPU, and data-parallel under
``torchrun``. Rows may also come from disk, never held whole (a memory-mapped array, shards,
safetensors, Parquet).

What differs from scikit-learn: every ``solver`` name runs this package's solvers for the
objective it names; ``dual=True`` is solved in the primal. Three parameters are extra:
``device`` ("auto", "cpu", "cuda"), ``dtype`` (None: the rows', as scikit-learn's; "float32",
"float64") and ``checkpoint`` (a file path: a fit that can be stopped and continued, written
at most every :data:`CHECKPOINT_SECONDS`). docs/sklearn.md lists the rest, with scikit-learn's
own tests that differ and why.

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

from ._common import rank_rows
from ._cv import LogisticRegressionCV
from ._logistic import LogisticRegression
from ._ovr import OneVsRestClassifier

__all__ = ["LogisticRegression", "LogisticRegressionCV", "OneVsRestClassifier", "rank_rows"]

# How often a fit given ``checkpoint=`` writes its state, at most (seconds): every few
# minutes, so that writing it costs nothing next to the fit (a fit stopped by a kill loses
# at most this; Ctrl-C, SIGTERM and SIGHUP lose nothing). Read when a fit starts.
CHECKPOINT_SECONDS = 180.0
