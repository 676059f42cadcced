"""One set of rows on the device, fitted at one C or along a path of C."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import distributed
from ..linear_loss import (
    SoftmaxLoss,
    SparseRows,
    StreamedRows,
    default_block_rows,
    is_sparse,
    moments,
)
from ..solver import Counted, Preconditioner, minimize, minimize_l1, newton, newton_l1
from ..train import cpu_threads
from ._common import _tensor

if TYPE_CHECKING:
    from ._checkpoint import _FitCheckpoint

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
# many parameters: the Hessian costs two gradient passes per parameter. Where that costs
# little (rows x parameters^2, a measure of its arithmetic, at most POLISH_BUDGET: well under
# a second), every float64 fit is finished so, to the optimum itself.
POLISH_STEPS = 4
POLISH_MAX_PARAMETERS = 600
POLISH_BUDGET = 1e8
# ``solver="newton-cg"`` or ``"newton-cholesky"`` on a dense float64 L2 (or unpenalised) fit
# of at most POLISH_MAX_PARAMETERS parameters: Newton's method itself from the start, each
# iteration one Newton step with a backtracking line search (Armijo's rule, this constant),
# a step that depends on the current point alone, as scikit-learn's Newton solvers' do.
ARMIJO = 1e-4
# ... to a gradient no larger than this: the optimum to float64's precision (a step or two of
# Newton's from tol; a fit started there takes none).
POLISHED = 1e-12
# The evaluations L-BFGS may spend, per iteration it may take (its line search's own limit):
# not torch's 5/4, which cuts the line searches of a fit of few iterations short, so that a
# fit stopped by ``max_iter`` at i iterations ends where a longer one was after i (the
# estimator scikit-learn's callbacks report after each iteration).
EVALUATIONS_PER_ITERATION = 25
# A float64 fit's float32 phase stops at ``tol`` or at this, whichever is larger: float32's
# gradients are good to far better than this, and the float64 phase finishes the rest.
FLOAT32_TOL = 1e-6
# Iterations on the diagonal's scaling before a fit that has not converged switches to the
# full covariance's (dense rows of at most FULL_MAX_FEATURES features): an easy problem is
# done by then (scikit-learn's lbfgs takes 10-20 iterations on one), a hard one has spent
# little of its time. Past FULL_MAX_FEATURES the D x D matrix (512 MB in float64 at 8192)
# and its eigendecomposition cost more than they save.
SWITCH_AFTER = 30
FULL_MAX_FEATURES = 8192
# liblinear's model on at most this many stored values (dense entries, or a sparse matrix's
# non-zeros) is solved on one CPU thread (:meth:`_Problem._liblinear_threads`).
SMALL_ROWS = 2**24
# liblinear's L2 model stops where liblinear's own rule would with ``tol`` times this: the
# rule on the same gradient norms, a little tighter, so that the answer ends at or below
# liblinear's objective rather than about at it (liblinear's last trust-region step lands
# further past the rule than a line-search step: on 2-class blobs with no intercept,
# C = 100, 1.1e-6 above it at 1, 5.6e-7 below at 0.3; one more Newton iteration on digits
# and on text, none on most). liblinear's L1 model by proximal Newton (:func:`newton_l1`)
# stops at the same margin, for the same reason.
NEWTON_MARGIN = 0.3


def _first_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a fit whose answer is in ``dtype`` computes in first: float32."""
    return torch.float32 if dtype == torch.float64 else dtype


def _block_rows(x, device: torch.device, n_classes: int) -> int | None:
    """Rows per evaluation block: the dense default; for sparse rows, blocks whose logits
    (rows x classes) stay near 4M values, so that the per-block gradient (features x
    classes) is added up a few times per pass, not once per thousand rows."""
    if getattr(x, "sparse", False):
        return max(1024, 2**22 // max(n_classes, 1))
    return default_block_rows(device)


class _Problem:
    """One set of rows on the device, ready for fits at several C (a path).

    ``dtype`` is the answer's: a float32 fit computes in float32; a float64 fit runs its
    first iterations in float32 (half the memory traffic, twice the arithmetic rate) until
    float32 has done what it can (``tol``, or ``FLOAT32_TOL`` when ``tol`` asks for more),
    then goes on from there in float64 to ``tol``: the float64 optimum at close to a float32
    fit's cost. Dense rows stay as given (a float64 array is read in float32 block by block,
    not copied whole); rows on disk (:class:`~softmax_regression.linear_loss.StreamedRows`)
    are read block by block by every pass (the statistics, each evaluation, each Newton
    step's gradients), so nothing of size rows x features is ever made; sparse rows
    (scipy.sparse, CSR) are never densified and are solved on the CPU, with the
    covariance's diagonal as the preconditioner (a ``D x D`` matrix would dwarf a sparse
    matrix of a large vocabulary).

    ``intercept_scaling`` (liblinear's model): the intercept is the weight of a constant
    feature of that value, penalised as the others are, and the rows are not centred.
    ``one_vs_rest``: ``n_classes`` binary problems, class ``k`` against the rest, solved as
    one (``class_factors`` ``(2, K)``: each problem's weights of the rest and of class ``k``).
    """

    def __init__(
        self,
        X,
        y_index: np.ndarray,
        sample_weight: np.ndarray | None,
        n_classes: int,
        fit_intercept: bool,
        device: torch.device,
        dtype: torch.dtype,
        world: distributed.World | None = None,
        *,
        intercept_scaling: float | None = None,
        one_vs_rest: bool = False,
        class_factors: np.ndarray | None = None,
    ) -> None:
        self.binary = n_classes == 2 and not one_vs_rest
        self.n_classes = n_classes
        self.dtype = dtype
        self.intercept_scaling = intercept_scaling
        if is_sparse(X):
            x = SparseRows(X)
            device = x.device
        elif isinstance(X, StreamedRows):
            x = X  # read from disk block by block by every pass, never held whole
            x.device = device
        else:
            # On a GPU the rows are copied anyway: in the dtype computed in first.
            given = torch.float64 if X.dtype == np.float64 else torch.float32
            x = _tensor(X, device, given if device.type == "cpu" else _first_dtype(dtype))
        y = _tensor(np.asarray(y_index, dtype=np.int64), device, torch.int64)
        sw = None if sample_weight is None else _tensor(sample_weight, device, dtype)
        self.loss = SoftmaxLoss(
            x,
            y,
            0.0,
            sample_weight=sw,
            binary=self.binary,
            fit_intercept=fit_intercept,
            block_rows=_block_rows(x, device, n_classes),
            world=world,
            loss_dtype=torch.float64,
            dtype=_first_dtype(dtype),
            one_vs_rest=one_vs_rest,
            class_factors=None if class_factors is None else _tensor(class_factors, device, dtype),
        )
        # The diagonal first (one cheap pass): the full covariance only for a fit that
        # turns out slow (:meth:`_preconditioner`).
        with cpu_threads(self._liblinear_threads() if intercept_scaling is not None else None):
            second, mean = moments(self.loss, diagonal=True)
        self.total = self.loss.total_weight or float(self.loss.rows.shape[0])
        self.mean = None
        self.raw_mean = mean
        centred = fit_intercept and intercept_scaling is None
        if centred:
            # Rows enter centred, the intercept absorbing the mean: the curvature in W no
            # longer mixes with the intercept's. Folded into the parameters, never copied.
            self.mean = mean.to(dtype)
            self.loss.center = self.mean
        self.variance = second - mean * mean if centred else second
        self.cov = None  # the full covariance, once a fit asked for it (:meth:`_covariance`)
        self.cov_dtype: torch.dtype | None = None  # the dtype it was computed in
        self.full = False  # a fit of this problem needed the full covariance
        self.alpha = ALPHA_BINARY if self.binary or one_vs_rest else ALPHA

    def fit(
        self,
        C: float,
        init: tuple[np.ndarray, np.ndarray] | None,
        tol: float,
        max_iter: int,
        verbose: int = 0,
        l1_ratio: float = 0.0,
        newton: bool = False,
        on_iterate: Callable[[np.ndarray, np.ndarray], None] | None = None,
        checkpoint: _FitCheckpoint | None = None,
    ) -> tuple[np.ndarray, np.ndarray, int, bool, float]:
        """(coef, intercept, iterations, converged, objective) at ``C`` and ``l1_ratio`` (the
        elastic-net mix; liblinear's model: 1 for its L1 penalty, 0 for L2), in
        scikit-learn's shapes: (K, D) and (K,), or (1, D) and (1,) for two classes.
        ``newton``: Newton's method where it is cheap (see ``ARMIJO``), L-BFGS elsewhere.
        ``on_iterate(coef, intercept)``: after each iteration of L-BFGS or Newton's method,
        the iterate as the answer would be (scikit-learn's per-iteration callbacks).

        ``checkpoint`` (:meth:`softmax_regression.sklearn._checkpoint.Checkpoint.fit`) is
        offered the solver's state after each iteration, with where the fit stands (the
        phase, whether the full covariance's preconditioner is in use, the iterations before
        the phase's solver started); when it holds the state of a fit that was stopped, the
        fit goes on from there, through the steps the uninterrupted fit takes. (The Newton
        polish is not kept: a fit stopped in it takes its few steps again; nor are Newton's
        method's few steps, for newton-cg/newton-cholesky or liblinear's L2 model.)"""
        loss = self.loss
        rows, d = (1 if self.binary else self.n_classes), loss.rows.shape[1]
        device = loss.rows.device
        wd = 0.0 if math.isinf(C) else 1.0 / (C * self.total)
        loss.weight_decay = wd
        if init is None:
            w0 = torch.zeros(rows, d, dtype=torch.float64)
            b0 = torch.zeros(rows, dtype=torch.float64)
        else:
            w0 = torch.as_tensor(np.asarray(init[0], dtype=np.float64)).reshape(rows, d)
            b0 = torch.as_tensor(np.asarray(init[1], dtype=np.float64)).reshape(rows)
        w, b = w0.to(device), b0.to(device)
        if self.mean is not None:
            b = b + w @ self.mean.double()  # the centred parametrisation's intercept
        callback = None
        step = None
        if on_iterate is not None:

            def step(w_: torch.Tensor, b_: torch.Tensor) -> None:
                on_iterate(*self._answer(w_, b_, l1_ratio))

        if verbose:

            def callback(n: int, value: float) -> None:
                print(f"iteration {n}: objective {value:.10g}")

        iterations, converged, objective = 0, False, math.nan
        first = _first_dtype(self.dtype)
        phases = [first, self.dtype] if first != self.dtype else [self.dtype]
        resume = None if checkpoint is None else checkpoint.resume
        if resume is not None:  # where the stopped fit was: its phase, preconditioner, count
            self.full, iterations = resume.full, resume.iterations
            if resume.cov is not None and self.cov is None:
                self._covariance(getattr(torch, resume.cov))  # the same bits as it had
        if l1_ratio > 0 or self.intercept_scaling is not None:
            phases = []  # OWL-QN, in the answer's dtype
            w, b, iterations, converged, objective = self._fit_l1(
                C,
                l1_ratio,
                (w, b),
                tol,
                max_iter,
                callback,
                checkpoint,
            )
        elif newton and self._newton_is_cheap(w, b):
            phases = []
            loss.dtype = self.dtype
            # on to the optimum itself, as every cheap float64 fit (POLISHED)
            w, b, iterations, converged = self._newton(
                w.to(self.dtype),
                b.to(self.dtype),
                tol,
                min(tol, POLISHED),
                max_iter,
                callback,
                step,
            )
            objective = float(loss.loss_gradient(w, b)[0])
        for phase, dtype in enumerate(phases):
            if resume is not None and phase < resume.phase:
                continue  # done before it stopped: its answer is in the kept state
            last = dtype == self.dtype
            loss.dtype = dtype
            while True:
                # A fit on the diagonal's scaling that has not converged after SWITCH_AFTER
                # iterations goes on with the full covariance's (and so does every later fit
                # of this problem, along a path of C).
                trial = not self.full and self._can_go_full()
                budget = max_iter - iterations
                pre = self._preconditioner(wd)
                kept = None
                if checkpoint is not None:
                    kept = checkpoint.stage(phase, self.full, iterations, self._cov_name())
                sol = minimize(
                    loss,
                    (w.to(dtype), b.to(dtype)),
                    min(budget, SWITCH_AFTER) if trial else budget,
                    tol=tol if last else max(tol, FLOAT32_TOL),
                    tol_repeats=TOL_REPEATS,
                    preconditioner=pre,
                    history_size=HISTORY,
                    tolerance_grad=0.0,
                    tolerance_change=TOLERANCE_CHANGE[dtype],
                    callback=callback,
                    on_iterate=step,
                    max_eval=EVALUATIONS_PER_ITERATION * max(budget, 1),
                    checkpoint=kept,
                )
                w, b = sol.weight, sol.bias
                iterations += sol.iterations
                converged, objective = sol.converged, sol.objective
                slow = trial and not converged and sol.iterations >= SWITCH_AFTER
                if slow and iterations < max_iter:
                    self.full = True
                    continue
                break
            if iterations >= max_iter:
                break
        if self.dtype == torch.float64 and iterations < max_iter and phases:
            n_params = w.numel() + b.numel()
            cheap = loss.rows.shape[0] * n_params**2 <= POLISH_BUDGET
            if n_params <= POLISH_MAX_PARAMETERS and (cheap or not converged):
                # Cheap: on to the float64 optimum itself (POLISHED), past tol; else to tol.
                w, b, steps, converged = self._polish(
                    w, b, tol, min(tol, POLISHED) if cheap else tol, max_iter - iterations, step
                )
                iterations += steps
                objective = float(loss.loss_gradient(w, b)[0])
        coef, intercept = self._answer(w, b, l1_ratio)
        return (coef, intercept, iterations, converged, objective)

    def _answer(
        self, w: torch.Tensor, b: torch.Tensor, l1_ratio: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(coef, intercept), float64 numpy, of the solver's ``(w, b)``: the inputs' mean
        taken back out of the intercept, and of the directions that change no probability,
        the one scikit-learn's fit ends at."""
        loss = self.loss
        w, b = w.double(), b.double()
        if self.mean is not None:
            b = b - w @ self.mean.double()
        if not self.binary and not loss.one_vs_rest and l1_ratio == 0:
            # Likewise one vector added to every class's weights: without a penalty the
            # answer is the one whose class weights sum to 0 (scikit-learn's, whose gradient
            # steps from 0 keep that sum; here a float32 phase leaves rounding in it), and
            # with the L2 penalty the optimum is that one already.
            w = w - w.mean(0, keepdim=True)
        if not loss.fit_intercept:
            b = torch.zeros_like(b)
        elif not self.binary and not loss.one_vs_rest:
            # One constant added to every class's intercept changes no probability and no
            # objective: the one answer is the one whose intercepts sum to 0 (as scikit-learn's
            # fit, started at 0, keeps them), so that decision_function is determined too.
            b = b - b.mean()
        return w.cpu().numpy(), b.cpu().numpy()

    def _fit_l1(self, C, l1_ratio, init, tol, max_iter, callback, checkpoint=None):
        """OWL-QN (:func:`minimize_l1`) for an L1 term, or for liblinear's penalised intercept;
        liblinear's L2 model (no L1 term) by Newton's method (:func:`newton`), and its L1
        model by proximal Newton (:func:`newton_l1`, newGLMNET's method: dense rows in memory
        and rows from disk), as liblinear (one process: the curvature is not summed over
        torchrun's ranks). liblinear's L1 model with a ``checkpoint`` stays with OWL-QN,
        whose state a checkpoint keeps. On sparse rows too proximal Newton: on the full sparse
        text corpus (6,203 x 95,987, 30 classes, C = 10) it ends 7e-5 below liblinear's
        objective (OWL-QN reached max_iter 2.6e-3 above it), and on small ones it ends where
        the same rows dense do (to 1e-15).

        The covariance preconditioner of the L2 path, as a change of variables, would mix
        the coordinates that the L1 term treats one by one; here it is the quasi-Newton
        method's initial inverse Hessian instead (``(alpha cov + l2 I)^-1`` on each row of
        ``W``; with liblinear's intercept, on ``W`` and the intercept's feature together).
        With an L1 term only its diagonal: a dense one moves every coordinate at once, and
        the orthant rule then cuts most of its direction away (Fashion-MNIST, 10,000 rows,
        C = 0.01: 1,000 iterations not enough with the dense one, 332 with the diagonal).
        ``checkpoint``: :meth:`fit`'s, for OWL-QN (phase -1), with saga's stopping test's
        count.
        """
        strength = 1.0 / (C * self.total)  # the divided objective's: C sum_i s_i = 1
        l1_w, l2_w = strength * l1_ratio, strength * (1.0 - l1_ratio)
        l1_b = l2_b = 0.0
        a = self.intercept_scaling
        rows = self.loss.rows
        d = rows.shape[1]
        augmented = a is not None and self.loss.fit_intercept
        if a is not None:  # the intercept, b = a w_a, the weight of a feature of value a
            l1_b, l2_b = l1_w / a, l2_w / a**2
        # liblinear's own methods, one process: its L2 model by Newton's method, its L1 model
        # by proximal Newton (newGLMNET; with a checkpoint OWL-QN, below).
        liblinears = a is not None and not self.loss.parallel
        if liblinears and (l1_ratio == 0 or (l1_ratio == 1 and checkpoint is None)):
            self.loss.dtype = self.dtype
            self.loss.weight_decay = 0.0
            start = (init[0].to(self.dtype), init[1].to(self.dtype))
            with cpu_threads(self._liblinear_threads()):
                converged = self._liblinear_test(
                    tol * NEWTON_MARGIN,
                    (l1_w, l1_b),
                    a if self.loss.fit_intercept else 0.0,
                    per_problem=l1_ratio == 1,
                )
                method, penalty = (
                    (newton_l1, {"l1": (l1_w, l1_b)})
                    if l1_ratio == 1
                    else (newton, {"l2": (l2_w, l2_b)})
                )
                sol = method(
                    self.loss, start, max_iter, converged=converged, callback=callback, **penalty
                )
            return sol.weight, sol.bias, sol.iterations, sol.converged, sol.objective
        # The diagonal's on sparse rows too, so that a sparse fit takes a dense one's steps.
        if l1_ratio == 0 and self._can_go_full():
            m = self._covariance()  # liblinear's rows are not centred
            if augmented:
                m = torch.zeros(d + 1, d + 1, dtype=torch.float64, device=m.device)
                m[:d, :d] = self.cov
                m[:d, d] = m[d, :d] = a * self.raw_mean
                m[d, d] = a * a
            (h0,) = self._same((_inverse(m, l2_w, self.alpha),), "sharing the preconditioner")
        else:
            diagonal = self.variance
            if augmented:
                diagonal = torch.cat([diagonal, diagonal.new_tensor([a * a])])
            h0 = _diagonal_inverse(diagonal, l2_w, self.alpha)
        h0 = h0.to(self.dtype)

        def apply(v: torch.Tensor) -> torch.Tensor:
            return v * h0 if h0.dim() == 1 else v @ h0

        def precondition(v_w: torch.Tensor, v_b: torch.Tensor):
            if not augmented:  # the intercept apart: its curvature about alpha
                return apply(v_w), v_b / self.alpha
            r = apply(torch.cat([v_w, (a * v_b).unsqueeze(1)], 1))
            return r[:, :d], a * r[:, d]

        self.loss.dtype = self.dtype
        self.loss.weight_decay = 0.0
        if a is not None:
            converged = self._liblinear_test(
                tol, (l1_w, l1_b), (a if self.loss.fit_intercept else 0.0)
            )
        else:
            converged = _SagaTest(tol)
        if checkpoint is not None:
            checkpoint = checkpoint.stage(-1, self.full, 0, self._cov_name())
            if isinstance(converged, _SagaTest):  # its run of small steps kept with the state
                checkpoint = Counted(checkpoint, lambda: {"saga": converged.passed})
                converged.passed = checkpoint.resumed.get("saga", 0)
        with cpu_threads(self._liblinear_threads() if a is not None else None):
            sol = minimize_l1(
                self.loss,
                (init[0].to(self.dtype), init[1].to(self.dtype)),
                max_iter,
                l1=(l1_w, l1_b),
                l2=(l2_w, l2_b),
                tol=tol,
                tol_repeats=TOL_REPEATS,
                history_size=HISTORY,
                tolerance_change=TOLERANCE_CHANGE[self.dtype],
                independent_rows=self.loss.one_vs_rest,
                converged=converged,
                precondition=precondition,
                callback=callback,
                checkpoint=checkpoint,
            )
        return sol.weight, sol.bias, sol.iterations, sol.converged, sol.objective

    def _liblinear_threads(self) -> int | None:
        """One intra-op thread for a fit of liblinear's model on rows of at most SMALL_ROWS
        stored values on a CPU (None, torch's setting, otherwise): each of its many small products
        split over threads waits for the slowest thread, and on a shared 2-core machine that
        wait made the digits and text fits 3 to 10 times slower than on one thread."""
        rows = self.loss.rows
        size = rows.csr.nnz if rows.sparse else rows.shape[0] * rows.shape[1]
        return 1 if rows.device.type == "cpu" and size <= SMALL_ROWS else None

    def _liblinear_test(
        self, tol: float, l1: tuple[float, float], a: float, per_problem: bool = False
    ):
        """liblinear's stopping rule, so that ``tol`` means what it means there: each binary
        problem stops when the norm of its (pseudo-)gradient, in the coordinates where the
        intercept is a feature of value ``a``, is at most ``tol * max(min(n+, n-), 1) / n``
        (sample-weighted counts) times its norm at zero (the 2-norm with the L2 penalty, the
        1-norm with L1). One extra evaluation, at zero. The test returned says whether every
        problem passed, or with ``per_problem`` which did (a ``(K,)`` bool tensor, on the
        CPU)."""
        loss = self.loss
        k, d = (1 if self.binary else self.n_classes), loss.rows.shape[1]
        zero_w = torch.zeros(k, d, dtype=self.dtype, device=loss.rows.device)
        zero_b = torch.zeros(k, dtype=self.dtype, device=loss.rows.device)
        _, g_w, g_b = loss.loss_gradient(zero_w, zero_b)
        l1_w, l1_b = l1
        order = 1 if l1_w > 0 else 2

        def norms(pg_w: torch.Tensor, pg_b: torch.Tensor) -> torch.Tensor:
            rows = torch.cat([pg_w, (a * pg_b).unsqueeze(1)], 1)
            return torch.linalg.vector_norm(rows.double(), ord=order, dim=1)

        # At zero the pseudo-gradient is the gradient soft-thresholded by the L1 weights.
        start = norms((g_w.abs() - l1_w).clamp_min(0), (g_b.abs() - l1_b).clamp_min(0))
        # The counts weighted by the sample weights: a row of weight 0 changes nothing.
        y, sw = loss.y, loss.sample_weight
        counts = torch.bincount(y, None if sw is None else sw.double(), self.n_classes).double()
        positives = (counts[1:2] if self.binary else counts).cpu()
        n = self.total
        if loss.parallel:
            summed = loss.world.sum_same_(positives.to(loss.world.device), "counting the classes")
            positives = summed.cpu()
        share = torch.minimum(positives, n - positives).clamp_min(1.0) / n
        bound = (tol * share.to(start.device) * start).to(torch.float64)

        def converged(pg_w: torch.Tensor, pg_b: torch.Tensor, *_) -> bool | torch.Tensor:
            passed = norms(pg_w, pg_b) <= bound
            return passed.cpu() if per_problem else bool(passed.all())

        return converged

    def _can_go_full(self) -> bool:
        """Dense rows of at most FULL_MAX_FEATURES features (sparse rows: never)."""
        return not self.loss.rows.sparse and self.loss.rows.shape[1] <= FULL_MAX_FEATURES

    def _preconditioner(self, wd: float) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(P, P^-1)`` for the fit at weight decay ``wd``: sparse rows, none (measured:
        Jacobi scaling of TF-IDF columns took several times more iterations than none);
        dense rows, the diagonal (the standardisation's scaling), or once a fit proved slow
        the full covariance's (its ``D x D`` statistics and eigendecomposition cost as much
        as dozens of evaluations on an easy problem, and save hundreds on raw pixels)."""
        if self.loss.rows.sparse:
            return None
        if self.full:
            pre = Preconditioner(self._covariance(), wd, self.alpha)
        else:
            pre = Preconditioner(self.variance, wd, self.alpha)
        return self._same((pre.p, pre.p_inv), "sharing the preconditioner")

    def _covariance(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The inputs' full covariance (the second moment when the rows are not centred),
        computed once, when a fit first asks for it, in the dtype the loss is in then (or
        ``dtype``: a continued fit rebuilding the one the stopped fit had)."""
        if self.cov is None:
            kept = self.loss.dtype
            self.loss.dtype = dtype or kept
            try:
                second, mean = moments(self.loss)
            finally:
                self.cov_dtype, self.loss.dtype = self.loss.dtype, kept
            self.cov = second - torch.outer(mean, mean) if self.mean is not None else second
        return self.cov

    def _cov_name(self) -> str | None:
        """:attr:`cov_dtype` by name, for a checkpoint (None: not computed)."""
        return None if self.cov_dtype is None else str(self.cov_dtype).removeprefix("torch.")

    def _same(self, tensors: tuple[torch.Tensor, ...], what: str) -> tuple[torch.Tensor, ...]:
        """Rank 0's ``tensors`` on every rank under torchrun (as they are otherwise): LAPACK's
        eigh and lstsq may differ in the last bits between processes given the same matrix,
        and every rank must take the same steps."""
        if not self.loss.parallel:
            return tensors
        world = self.loss.world
        shared = world.broadcast([t.cpu() for t in tensors] if world.is_main else None, what)
        return tuple(t.to(o.device) for t, o in zip(shared, tensors, strict=True))

    def _newton_is_cheap(self, w: torch.Tensor, b: torch.Tensor) -> bool:
        n_params = w.numel() + b.numel()
        return (
            self.dtype == torch.float64
            and not self.loss.rows.sparse
            and n_params <= POLISH_MAX_PARAMETERS
            and self.loss.rows.shape[0] * n_params**2 <= POLISH_BUDGET
        )

    def _newton(
        self, w, b, tol: float, target: float, max_iter: int, callback=None, on_iterate=None
    ):
        """Newton's method from ``(w, b)``: up to ``max_iter`` steps, each the Newton step at
        the current point (:meth:`_newton_step`) shortened by halves until it lowers the
        objective by Armijo's rule, until the gradient's largest component is at most
        ``target``. (weight, bias, steps, converged: at most ``tol``)."""
        loss, (k, d) = self.loss, w.shape

        def evaluate(theta: torch.Tensor) -> tuple[float, torch.Tensor]:
            f, gw, gb = loss.loss_gradient(theta[: k * d].view(k, d), theta[k * d :])
            return float(f), torch.cat([gw.reshape(-1), gb])

        theta = torch.cat([w.reshape(-1), b])
        f, g = evaluate(theta)
        steps = 0
        while self._largest(g, k, d) > target and steps < max_iter:
            step = self._newton_step(theta, g, k, d)
            slope = float(g @ step)
            if not slope < 0:
                break  # no descent left at float64's precision
            t = 1.0
            for _ in range(60):
                new = theta + t * step
                f_new, g_new = evaluate(new)
                if f_new <= f + ARMIJO * t * slope:
                    break
                t /= 2
            else:
                break
            if not (f_new < f or self._largest(g_new, k, d) < self._largest(g, k, d)):
                break  # at float64's floor: the objective flat, the gradient no smaller
            theta, f, g, steps = new, f_new, g_new, steps + 1
            if callback is not None:
                callback(steps, f)
            if on_iterate is not None:
                on_iterate(theta[: k * d].view(k, d), theta[k * d :])
        converged = self._largest(g, k, d) <= tol
        return theta[: k * d].view(k, d).clone(), theta[k * d :].clone(), steps, converged

    def _largest(self, g: torch.Tensor, k: int, d: int) -> float:
        return self.loss.largest_component(g[: k * d].view(k, d), g[k * d :])

    def _newton_step(self, theta: torch.Tensor, g: torch.Tensor, k: int, d: int) -> torch.Tensor:
        """``-H^+ g`` at ``theta``, the Hessian from central differences of the exact gradient
        (two gradient passes per parameter) and its pseudo-inverse: the intercepts' common
        shift (and, without a penalty, the weights') is a direction of no curvature at all,
        left where it is. From the eigendecomposition with an explicit cut, not a
        rank-revealing least squares (LAPACK's gelsy), whose rank decision on such a matrix
        varies between calls. The same on every rank (rank 0's)."""
        loss = self.loss

        def gradient(x: torch.Tensor) -> torch.Tensor:
            _, gw, gb = loss.loss_gradient(x[: k * d].view(k, d), x[k * d :])
            return torch.cat([gw.reshape(-1), gb])

        # Without an intercept the bias is no parameter (held at 0): out of the Hessian.
        free = len(theta) if loss.fit_intercept else k * d
        h = 1e-5 * max(1.0, float(theta.abs().max()))
        eye = torch.eye(free, len(theta), dtype=theta.dtype, device=theta.device) * h
        hessian = torch.stack(
            [((gradient(theta + e) - gradient(theta - e)) / (2 * h))[:free] for e in eye]
        )
        hessian = (hessian + hessian.T) / 2
        curvature, q = torch.linalg.eigh(hessian.cpu())
        keep = curvature > curvature.max() * 1e-9
        step = torch.zeros(len(theta), dtype=theta.dtype)
        step[:free] = -(q[:, keep] @ ((q[:, keep].T @ g[:free].cpu()) / curvature[keep]))
        (step,) = self._same((step,), "sharing the Newton step")
        return step.to(theta.device)

    def _polish(
        self,
        w: torch.Tensor,
        b: torch.Tensor,
        tol: float,
        target: float,
        max_steps: int,
        on_iterate=None,
    ) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
        """Newton steps on a float64 fit, until the gradient's largest component is at most
        ``target`` or a step no longer lowers it: after L-BFGS stopped short of ``tol``
        because the objective no longer changes (it is flat to ~1e-16 while its gradient can
        fall further), or, where it is cheap, on to the optimum itself (``target`` 0), so that
        two fits of one problem (weighted rows and repeated rows, say) agree to float64's
        precision rather than to ``tol``. The Hessian from central differences of the exact
        gradient. (weight, bias, steps taken, converged: at most ``tol``)."""
        loss, (k, d) = self.loss, w.shape

        def gradient(theta: torch.Tensor) -> torch.Tensor:
            _, gw, gb = loss.loss_gradient(theta[: k * d].view(k, d), theta[k * d :])
            return torch.cat([gw.reshape(-1), gb])

        def largest(g: torch.Tensor) -> float:
            return self._largest(g, k, d)

        theta = torch.cat([w.reshape(-1), b])
        g = gradient(theta)
        steps = 0
        while largest(g) > target and steps < min(POLISH_STEPS, max_steps):
            new = theta + self._newton_step(theta, g, k, d)
            g_new = gradient(new)
            if not largest(g_new) < largest(g):
                break
            theta, g, steps = new, g_new, steps + 1
            if on_iterate is not None:
                on_iterate(theta[: k * d].view(k, d), theta[k * d :])
        return theta[: k * d].view(k, d).clone(), theta[k * d :].clone(), steps, largest(g) <= tol


def _inverse(cov: torch.Tensor, weight_decay: float, alpha: float) -> torch.Tensor:
    """``(alpha cov + weight_decay I)^-1`` (float64), through :class:`Preconditioner`'s
    ``P = (...)^(-1/2)`` and its floor on directions without curvature."""
    p = Preconditioner(cov, weight_decay, alpha).p
    return p @ p


def _diagonal_inverse(variance: torch.Tensor, weight_decay: float, alpha: float) -> torch.Tensor:
    """``1 / (alpha variance + weight_decay)`` (float64), a constant input (no variance, no
    penalty) kept at the scale of the flattest real one."""
    m = alpha * variance.double() + weight_decay
    top = float(m.max().clamp_min(1e-300))
    return 1.0 / m.clamp_min(top * 1e-10)


class _SagaTest:
    """saga's stopping rule, so that ``tol`` means what it means there: the largest change
    of a coefficient (intercepts included) in a step at most ``tol`` times the largest
    coefficient, here at ``TOL_REPEATS`` consecutive steps. (The gradient test of the L2
    path is no measure here: in the divided objective the L1 weight ``1 / (C sum_i s_i)`` can
    be smaller than ``tol`` itself, and text at C = 10 then stopped 3.5e-4 above saga's
    objective.) ``passed``: the consecutive steps that passed so far."""

    def __init__(self, tol: float) -> None:
        self.tol, self.passed = tol, 0

    def __call__(self, pg_w, pg_b, w, b, step_w, step_b) -> bool:
        if step_w is None:
            return False
        largest = max(float(w.abs().max()), float(b.abs().max()))
        change = max(float(step_w.abs().max()), float(step_b.abs().max()))
        ok = largest > 0 and change <= self.tol * largest
        self.passed = self.passed + 1 if ok else 0
        return self.passed >= TOL_REPEATS
