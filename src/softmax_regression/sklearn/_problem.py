"""One set of rows on the device, fitted at one C or along a path of C."""

from __future__ import annotations

import math

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
from ..solver import Preconditioner, minimize, minimize_l1
from ._common import _tensor

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
# ... to a gradient no larger than this: the optimum to float64's precision (a step or two of
# Newton's from tol; a fit started there takes none).
POLISHED = 1e-12
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
        self.cov = None  # the full covariance, once a fit asked for it
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
    ) -> tuple[np.ndarray, np.ndarray, int, bool, float]:
        """(coef, intercept, iterations, converged, objective) at ``C`` and ``l1_ratio`` (the
        elastic-net mix; liblinear's model: 1 for its L1 penalty, 0 for L2), in
        scikit-learn's shapes: (K, D) and (K,), or (1, D) and (1,) for two classes."""
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
        if verbose:

            def callback(n: int, value: float) -> None:
                print(f"iteration {n}: objective {value:.10g}")

        iterations, converged, objective = 0, False, math.nan
        first = _first_dtype(self.dtype)
        phases = [first, self.dtype] if first != self.dtype else [self.dtype]
        if l1_ratio > 0 or self.intercept_scaling is not None:
            phases = []  # OWL-QN, in the answer's dtype
            w, b, iterations, converged, objective = self._fit_l1(
                C, l1_ratio, (w, b), tol, max_iter, callback
            )
        for dtype in phases:
            last = dtype == self.dtype
            loss.dtype = dtype
            while True:
                # A fit on the diagonal's scaling that has not converged after SWITCH_AFTER
                # iterations goes on with the full covariance's (and so does every later fit
                # of this problem, along a path of C).
                trial = not self.full and self._can_go_full()
                budget = max_iter - iterations
                sol = minimize(
                    loss,
                    (w.to(dtype), b.to(dtype)),
                    min(budget, SWITCH_AFTER) if trial else budget,
                    tol=tol if last else max(tol, FLOAT32_TOL),
                    tol_repeats=TOL_REPEATS,
                    preconditioner=self._preconditioner(wd),
                    history_size=HISTORY,
                    tolerance_grad=0.0,
                    tolerance_change=TOLERANCE_CHANGE[dtype],
                    callback=callback,
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
                    w, b, tol, min(tol, POLISHED) if cheap else tol, max_iter - iterations
                )
                iterations += steps
                objective = float(loss.loss_gradient(w, b)[0])
        w, b = w.double(), b.double()
        if self.mean is not None:
            b = b - w @ self.mean.double()
        if not loss.fit_intercept:
            b = torch.zeros_like(b)
        elif not self.binary and not loss.one_vs_rest:
            # One constant added to every class's intercept changes no probability and no
            # objective: the one answer is the one whose intercepts sum to 0 (as scikit-learn's
            # fit, started at 0, keeps them), so that decision_function is determined too.
            b = b - b.mean()
        return (w.cpu().numpy(), b.cpu().numpy(), iterations, converged, objective)

    def _fit_l1(self, C, l1_ratio, init, tol, max_iter, callback):
        """OWL-QN (:func:`minimize_l1`) for an L1 term, or for liblinear's penalised intercept.

        The covariance preconditioner of the L2 path, as a change of variables, would mix
        the coordinates that the L1 term treats one by one; here it is the quasi-Newton
        method's initial inverse Hessian instead (``(alpha cov + l2 I)^-1`` on each row of
        ``W``; with liblinear's intercept, on ``W`` and the intercept's feature together).
        With an L1 term only its diagonal: a dense one moves every coordinate at once, and
        the orthant rule then cuts most of its direction away (Fashion-MNIST, 10,000 rows,
        C = 0.01: 1,000 iterations not enough with the dense one, 332 with the diagonal).
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
        # The diagonal's on sparse rows too, so that a sparse fit takes a dense one's steps.
        if l1_ratio == 0 and self._can_go_full():
            if self.cov is None:
                self.cov, _ = moments(self.loss)  # liblinear's rows are not centred
            m = self.cov
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
            converged = _saga_test(tol)
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
        )
        return sol.weight, sol.bias, sol.iterations, sol.converged, sol.objective

    def _liblinear_test(self, tol: float, l1: tuple[float, float], a: float):
        """liblinear's stopping rule, so that ``tol`` means what it means there: each binary
        problem stops when the norm of its (pseudo-)gradient, in the coordinates where the
        intercept is a feature of value ``a``, is at most ``tol * max(min(n+, n-), 1) / n``
        (sample-weighted counts) times its norm at zero (the 2-norm with the L2 penalty, the
        1-norm with L1). One extra evaluation, at zero."""
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

        def converged(pg_w: torch.Tensor, pg_b: torch.Tensor, *_) -> bool:
            return bool((norms(pg_w, pg_b) <= bound).all())

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
            if self.cov is None:
                second, mean = moments(self.loss)
                self.cov = second - torch.outer(mean, mean) if self.mean is not None else second
            pre = Preconditioner(self.cov, wd, self.alpha)
        else:
            pre = Preconditioner(self.variance, wd, self.alpha)
        return self._same((pre.p, pre.p_inv), "sharing the preconditioner")

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
        self, w: torch.Tensor, b: torch.Tensor, tol: float, target: float, max_steps: int
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
            return loss.largest_component(g[: k * d].view(k, d), g[k * d :])

        theta = torch.cat([w.reshape(-1), b])
        g = gradient(theta)
        steps = 0
        while largest(g) > target and steps < min(POLISH_STEPS, max_steps):
            h = 1e-5 * max(1.0, float(theta.abs().max()))
            eye = torch.eye(len(theta), dtype=theta.dtype, device=theta.device) * h
            hessian = torch.stack(
                [(gradient(theta + e) - gradient(theta - e)) / (2 * h) for e in eye]
            )
            hessian = (hessian + hessian.T) / 2
            # The pseudo-inverse: the intercepts' common shift (and, without a penalty, the
            # weights') is a direction of no curvature at all, left where it is. From the
            # eigendecomposition with an explicit cut, not a rank-revealing least squares
            # (LAPACK's gelsy), whose rank decision on such a matrix varies between calls.
            curvature, q = torch.linalg.eigh(hessian.cpu())
            keep = curvature > curvature.max() * 1e-9
            step = -(q[:, keep] @ ((q[:, keep].T @ g.cpu()) / curvature[keep]))
            (step,) = self._same((step,), "sharing the Newton step")
            new = theta + step.to(theta.device)
            g_new = gradient(new)
            if not largest(g_new) < largest(g):
                break
            theta, g, steps = new, g_new, steps + 1
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


def _saga_test(tol: float):
    """saga's stopping rule, so that ``tol`` means what it means there: the largest change
    of a coefficient (intercepts included) in a step at most ``tol`` times the largest
    coefficient, here at ``TOL_REPEATS`` consecutive steps. (The gradient test of the L2
    path is no measure here: in the divided objective the L1 weight ``1 / (C sum_i s_i)`` can
    be smaller than ``tol`` itself, and text at C = 10 then stopped 3.5e-4 above saga's
    objective.)"""
    passed = 0

    def converged(pg_w, pg_b, w, b, step_w, step_b) -> bool:
        nonlocal passed
        if step_w is None:
            return False
        largest = max(float(w.abs().max()), float(b.abs().max()))
        change = max(float(step_w.abs().max()), float(step_b.abs().max()))
        passed = passed + 1 if largest > 0 and change <= tol * largest else 0
        return passed >= TOL_REPEATS

    return converged
