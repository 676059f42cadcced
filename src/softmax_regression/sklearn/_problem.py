"""One set of rows on the device, fitted at one C or along a path of C."""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import distributed
from ..linear_loss import SoftmaxLoss, default_block_rows, moments
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
# many parameters: the Hessian costs two gradient passes per parameter.
POLISH_STEPS = 4
POLISH_MAX_PARAMETERS = 600


class _Problem:
    """One set of rows on the device, ready for fits at several C (a path).

    ``intercept_scaling`` (liblinear's model): the intercept is the weight of a constant
    feature of that value, penalised as the others are, and the rows are not centred.
    ``one_vs_rest``: ``n_classes`` binary problems, class ``k`` against the rest, solved as
    one (``class_factors`` ``(2, K)``: each problem's weights of the rest and of class ``k``).
    """

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
        *,
        intercept_scaling: float | None = None,
        one_vs_rest: bool = False,
        class_factors: np.ndarray | None = None,
    ) -> None:
        self.binary = n_classes == 2 and not one_vs_rest
        self.n_classes = n_classes
        self.dtype = dtype
        self.intercept_scaling = intercept_scaling
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
            one_vs_rest=one_vs_rest,
            class_factors=None if class_factors is None else _tensor(class_factors, device, dtype),
        )
        second, mean = moments(self.loss)
        self.raw_mean = mean
        self.total = self.loss.total_weight or float(x.shape[0])
        if fit_intercept and intercept_scaling is None:
            # Rows enter centred, the intercept absorbing the mean: the curvature in W no
            # longer mixes with the intercept's. Folded into the parameters, never copied.
            self.mean = mean.to(dtype)
            self.loss.center = self.mean
            self.cov = second - torch.outer(mean, mean)
        else:
            self.mean = None
            self.cov = second
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
        x = self.loss.x
        rows, d = (1 if self.binary else self.n_classes), x.shape[1]
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

        if l1_ratio > 0 or self.intercept_scaling is not None:
            w, b, iterations, converged, objective = self._fit_l1(
                C, l1_ratio, (w0, b0), tol, max_iter, callback
            )
        else:
            w, b, iterations, converged, objective = self._fit_l2(
                C, (w0, b0), tol, max_iter, callback
            )
        w, b = w.double(), b.double()
        if self.mean is not None:
            b = b - w @ self.mean.double()
        if not self.loss.fit_intercept:
            b = torch.zeros_like(b)
        elif not self.binary and not self.loss.one_vs_rest:
            # One constant added to every class's intercept changes no probability and no
            # objective: the one answer is the one whose intercepts sum to 0 (as scikit-learn's
            # fit, started at 0, keeps them), so that decision_function is determined too.
            b = b - b.mean()
        return (w.cpu().numpy(), b.cpu().numpy(), iterations, converged, objective)

    def _fit_l2(self, C, init, tol, max_iter, callback):
        """Preconditioned L-BFGS (:func:`minimize`) for the smooth objective."""
        wd = 0.0 if math.isinf(C) else 1.0 / (C * self.total)
        self.loss.weight_decay = wd
        pre = Preconditioner(self.cov, wd, self.alpha)
        p, p_inv = self._same((pre.p, pre.p_inv), "sharing the preconditioner")
        w0, b0 = init
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
        return w, b, iterations, converged, objective

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
        cov = self.cov
        if a is not None:  # the intercept, b = a w_a, the weight of a feature of value a
            l1_b, l2_b = l1_w / a, l2_w / a**2
            if self.loss.fit_intercept:
                d = len(cov)
                cov = torch.zeros(d + 1, d + 1, dtype=torch.float64, device=cov.device)
                cov[:d, :d] = self.cov
                cov[:d, d] = cov[d, :d] = a * self.raw_mean
                cov[d, d] = a * a
        if l1_ratio > 0:
            h0 = _diagonal_inverse(cov, l2_w, self.alpha)
        else:
            (h0,) = self._same((_inverse(cov, l2_w, self.alpha),), "sharing the preconditioner")
        h0 = h0.to(self.dtype)
        d = self.loss.x.shape[1]

        def apply(v: torch.Tensor) -> torch.Tensor:
            return v * h0 if h0.dim() == 1 else v @ h0

        def precondition(v_w: torch.Tensor, v_b: torch.Tensor):
            if len(h0) == d:  # the intercept apart: its curvature about alpha
                return apply(v_w), v_b / self.alpha
            r = apply(torch.cat([v_w, (a * v_b).unsqueeze(1)], 1))
            return r[:, :d], a * r[:, d]

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
        k, d = (1 if self.binary else self.n_classes), loss.x.shape[1]
        zero_w = torch.zeros(k, d, dtype=self.dtype, device=loss.x.device)
        zero_b = torch.zeros(k, dtype=self.dtype, device=loss.x.device)
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


def _inverse(cov: torch.Tensor, weight_decay: float, alpha: float) -> torch.Tensor:
    """``(alpha cov + weight_decay I)^-1`` (float64), through :class:`Preconditioner`'s
    ``P = (...)^(-1/2)`` and its floor on directions without curvature."""
    p = Preconditioner(cov, weight_decay, alpha).p
    return p @ p


def _diagonal_inverse(cov: torch.Tensor, weight_decay: float, alpha: float) -> torch.Tensor:
    """``1 / (alpha diag(cov) + weight_decay)`` (float64), a constant input (no variance, no
    penalty) kept at the scale of the flattest real one."""
    m = alpha * torch.diagonal(cov) + weight_decay
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
