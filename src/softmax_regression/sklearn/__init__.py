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
solver; sparse input is not accepted. Three parameters are extra: ``device`` ("auto", "cpu",
"cuda"), ``dtype`` ("float32", "float64") and ``checkpoint`` (a file path: a fit that can be
stopped and continued, written at most every :data:`CHECKPOINT_SECONDS`).

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
