"""One set of rows on the device, fitted at one C or along a path of C."""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import distributed
from ..linear_loss import SoftmaxLoss, SparseRows, default_block_rows, is_sparse, moments
from ..solver import Preconditioner, minimize
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
    not copied whole); sparse rows (scipy.sparse, CSR) are never densified and are solved on
    the CPU, with the covariance's diagonal as the preconditioner (a ``D x D`` matrix would
    dwarf a sparse matrix of a large vocabulary).
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
    ) -> None:
        self.binary = n_classes == 2
        self.n_classes = n_classes
        self.dtype = dtype
        if is_sparse(X):
            x = SparseRows(X)
            device = x.device
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
        )
        # The diagonal first (one cheap pass): the full covariance only for a fit that
        # turns out slow (:meth:`_preconditioner`).
        second, mean = moments(self.loss, diagonal=True)
        self.total = self.loss.total_weight or float(self.loss.rows.shape[0])
        self.mean = None
        if fit_intercept:
            # Rows enter centred, the intercept absorbing the mean: the curvature in W no
            # longer mixes with the intercept's. Folded into the parameters, never copied.
            self.mean = mean.to(dtype)
            self.loss.center = self.mean
        self.variance = second - mean * mean if fit_intercept else second
        self.cov = None  # the full covariance, once a fit asked for it
        self.full = False  # a fit of this problem needed the full covariance
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
        if self.dtype == torch.float64 and iterations < max_iter:
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
        elif not self.binary:
            # One constant added to every class's intercept changes no probability and no
            # objective: the one answer is the one whose intercepts sum to 0 (as scikit-learn's
            # fit, started at 0, keeps them), so that decision_function is determined too.
            b = b - b.mean()
        return (w.cpu().numpy(), b.cpu().numpy(), iterations, converged, objective)

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
