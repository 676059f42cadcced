"""The one full-batch objective and solver for a linear softmax classifier.

Every full-batch fit in the package goes through here: the best-linear recipe
(:mod:`softmax_regression.best_linear`, and so ``train --recipe best-linear``) and the
scikit-learn estimators (:mod:`softmax_regression.sklearn`). The book's SGD recipe keeps its
own exact loop. The split follows scikit-learn's ``LinearModelLoss``: :class:`SoftmaxLoss`
is the objective (loss and gradient, nothing about solving) and :func:`lbfgs` /
:func:`minimize` the solver.

The objective, for ``N`` rows ``x_i`` (``D`` inputs), labels ``y_i`` in ``0..K-1`` and
sample weights ``s_i`` (1 when none)::

    sum_i s_i CE(W x~_i + b - margin e_{y_i}, y_i) / sum_i s_i + weight_decay / 2 tr(W R W^T)

with ``x~ = (x - center) / scale`` (either part optional: standardisation folded into the
parameters, so the rows are never copied), ``R`` a symmetric penalty matrix (the identity
when None) and the bias not penalised. Two forms of one problem:

* the best-linear recipe's ``mean CE + weight_decay / 2 ||W||^2`` (unit weights);
* scikit-learn's ``C sum_i s_i loss_i + ||W||^2 / 2``, which is the same objective divided by
  ``C sum_i s_i``: ``weight_decay = 1 / (C sum_i s_i)``. scikit-learn's lbfgs minimises that
  divided form too, so its ``tol`` (on the largest gradient component) means the same here.

``binary`` is scikit-learn's two-class model: one row ``w`` and the binomial loss, written as
the two-class softmax whose class-0 logit is held at 0 (``CE([0, z], y)`` is the logistic
loss of ``z = w x + b``), through the same code.

Under ``torchrun`` each rank holds some of the rows; one evaluation all-reduces the loss sum
and the gradient sums once (one buffer), so every rank takes the same step on the same
numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lbfgs import _strong_wolfe

from .distributed import World


@dataclass
class Solution:
    """A fitted linear layer and what the fit cost."""

    weight: torch.Tensor  # (K, D), or (1, D) for a binary problem
    bias: torch.Tensor  # (K,) or (1,)
    objective: float  # the objective at (weight, bias)
    evaluations: int  # loss + gradient evaluations, each one pass over the data
    seconds: float
    iterations: int = 0  # L-BFGS iterations (what scikit-learn's ``n_iter_`` counts)
    converged: bool = False  # stopped by ``tol`` (not by max_iter or a stalled line search)


@dataclass
class SoftmaxLoss:
    """The objective of the module docstring on one set of rows (this rank's, under torchrun).

    ``x`` is float ``(N, D)``; ``y`` int64 ``(N,)``; every tensor on one device, in ``x``'s
    dtype. ``total_weight`` is ``sum_i s_i`` over all ranks (set by :meth:`reduce_totals`).
    """

    x: torch.Tensor
    y: torch.Tensor
    weight_decay: float = 0.0
    sample_weight: torch.Tensor | None = None
    penalty: torch.Tensor | None = None
    margin: float = 0.0
    binary: bool = False
    fit_intercept: bool = True
    center: torch.Tensor | None = None  # (D,): inputs enter as x - center (needs a bias)
    scale: torch.Tensor | None = None  # (D,): ... divided by scale
    block_rows: int | None = None
    world: World | None = None
    total_weight: float | None = None
    loss_dtype: torch.dtype | None = None  # accumulate the loss sum in this (default x's)

    def __post_init__(self) -> None:
        if self.center is not None and not self.fit_intercept:
            raise ValueError("centring the inputs needs a bias to absorb the mean")
        if self.total_weight is None:
            self.reduce_totals()

    @property
    def parallel(self) -> bool:
        return self.world is not None and self.world.parallel

    def reduce_totals(self) -> None:
        if self.sample_weight is None and not self.parallel:
            self.total_weight = None  # the row count, divided exactly as an integer
            return
        local = (
            torch.tensor([float(self.x.shape[0])], dtype=torch.float64)
            if self.sample_weight is None
            else self.sample_weight.double().sum().reshape(1).cpu()
        )
        if self.parallel:
            local = local.to(self.world.device)
            self.world.sum_same_(local, "summing the sample weights")
        self.total_weight = float(local)

    def effective(self, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (weight, bias) acting on the raw rows: the input transform folded in."""
        if self.scale is not None:
            w = w / self.scale
        if self.center is not None:
            b = b - w @ self.center
        return w, b

    def plain_gradient(
        self, grad_w: torch.Tensor, grad_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A gradient of :meth:`loss_gradient` re-expressed for the weights acting on the raw
        rows (``center`` and ``scale`` undone): what scikit-learn's ``tol`` is measured on."""
        if self.scale is not None:
            grad_w = grad_w * self.scale
        if self.center is not None:
            grad_w = grad_w + torch.outer(grad_b, self.center)
        return grad_w, grad_b

    def largest_component(self, grad_w: torch.Tensor, grad_b: torch.Tensor) -> float:
        """The largest component of :meth:`plain_gradient` (what scikit-learn's ``tol``
        bounds)."""
        grad_w, grad_b = self.plain_gradient(grad_w, grad_b)
        return max(float(grad_w.abs().max()), float(grad_b.abs().max()))

    def loss_gradient(
        self, w: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(objective, gradient in ``w``, gradient in ``b``); ``b`` is zeros without a bias.

        Written out rather than through autograd: per block of rows one ``W @ x.T`` and one
        ``G @ x`` (the fast layouts for a thin weight matrix), with ``G = softmax - onehot``
        the gradient at the logits. A block of ``block_rows`` rows (all when None) is used by
        both products while it is still in the CPU's cache, so the rows are read from memory
        once per evaluation instead of twice: on CPU, blocks of about a thousand rows halve
        the time of an evaluation.
        """
        x, y, sw = self.x, self.y, self.sample_weight
        n = x.shape[0]
        step = n if self.block_rows is None else max(1, int(self.block_rows))
        w_eff, b_eff = self.effective(w, b)
        grad_w = torch.zeros_like(w_eff)
        grad_b = torch.zeros_like(b_eff)
        loss_dtype = self.loss_dtype or x.dtype
        data_loss = torch.zeros((), dtype=loss_dtype, device=x.device)
        bias = b_eff.unsqueeze(1)
        # Made once, sliced per block (the last block may be shorter).
        minus_one = torch.full((1, min(step, n)), -1.0, dtype=x.dtype, device=x.device)
        minus_margin = minus_one * self.margin if self.margin else None
        for lo in range(0, n, step):
            xb, rows = x[lo : lo + step], y[lo : lo + step].unsqueeze(0)
            k = rows.shape[1]
            z = torch.addmm(bias, w_eff, xb.t())  # (K, rows), or (1, rows) binary
            if self.binary:
                z = torch.cat([torch.zeros_like(z), z])  # class 0's logit held at 0
            if minus_margin is not None:
                z.scatter_add_(0, rows, minus_margin[:, :k])
            lsm = torch.log_softmax(z, 0)
            picked = lsm.gather(0, rows)
            if sw is not None:
                picked = picked * sw[lo : lo + step]
            data_loss -= picked.sum() if loss_dtype == x.dtype else picked.sum(dtype=loss_dtype)
            g = lsm.exp_().scatter_add_(0, rows, minus_one[:, :k])
            if sw is not None:
                g.mul_(sw[lo : lo + step])
            if self.binary:
                g = g[1:]
            grad_w.addmm_(g, xb)
            grad_b += g.sum(1)
        if self.parallel:
            data_loss, grad_w, grad_b = self._all_reduce(data_loss, grad_w, grad_b)
        total = n if self.total_weight is None else self.total_weight
        if self.center is not None:
            grad_w -= torch.outer(grad_b, self.center)
        if self.scale is not None:
            grad_w /= self.scale
        wr = w if self.penalty is None else w @ self.penalty
        loss = data_loss / total + 0.5 * self.weight_decay * (w * wr).sum()
        grad_w = grad_w.div_(total).add_(wr, alpha=self.weight_decay)
        grad_b = grad_b.div_(total)
        if not self.fit_intercept:
            grad_b.zero_()
        return loss, grad_w, grad_b

    def _all_reduce(self, data_loss, grad_w, grad_b):
        """One collective per evaluation: the loss sum and both gradient sums in one float64
        buffer, summed in rank order (:meth:`World.sum_same_`), so every rank has the same
        bits and takes the same steps."""
        kd = grad_w.numel()
        buf = torch.cat([data_loss.double().reshape(1), grad_w.double().reshape(-1)])
        buf = torch.cat([buf, grad_b.double()])
        self.world.sum_same_(buf, "summing the loss and its gradient")
        loss = buf[0].to(data_loss.dtype)
        gw = buf[1 : 1 + kd].view_as(grad_w).to(grad_w.dtype)
        gb = buf[1 + kd :].to(grad_b.dtype)
        return loss, gw, gb


def objective_and_gradient(
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    weight_decay: float,
    penalty: torch.Tensor | None = None,
    block_rows: int | None = None,
    margin: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mean_i CE(W x_i + b - margin e_{y_i}, y_i) + weight_decay / 2 * tr(W R W^T), and its
    gradients (W, b): :class:`SoftmaxLoss` with unit weights and no input transform."""
    loss = SoftmaxLoss(x, y, weight_decay, penalty=penalty, margin=margin, block_rows=block_rows)
    return loss.loss_gradient(w, b)


# --------------------------------------------------------------------------- L-BFGS


@dataclass
class LbfgsResult:
    x: torch.Tensor
    loss: float
    iterations: int
    evaluations: int
    converged: bool  # ended by ``tolerance_grad`` or ``converged``


@dataclass
class LbfgsState:
    """Where :func:`lbfgs` stands between two iterations: everything the next one reads, so
    that a fit continued from it takes the steps the uninterrupted fit takes. ``t`` and
    ``h_diag`` are kept as they were (a float, or a 0-dim tensor)."""

    x: torch.Tensor
    loss: float
    flat_grad: torch.Tensor
    prev_flat_grad: torch.Tensor
    d: torch.Tensor
    t: float | torch.Tensor
    h_diag: float | torch.Tensor
    old_dirs: list[torch.Tensor]
    old_stps: list[torch.Tensor]
    ro: list[torch.Tensor]
    iterations: int
    evaluations: int


def lbfgs(
    fun: Callable[[torch.Tensor], tuple[float, torch.Tensor]],
    x: torch.Tensor,
    *,
    max_iter: int,
    segments: Sequence[int] | None = None,
    max_eval: int | None = None,
    history_size: int = 100,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    converged: Callable[[torch.Tensor], bool] | None = None,
    callback: Callable[[int, float], None] | None = None,
    checkpoint: Any = None,
) -> LbfgsResult:
    """L-BFGS with a strong Wolfe line search on a flat parameter vector ``x`` (updated in
    place), ``fun(x) -> (loss, flat gradient)``.

    The same arithmetic as ``torch.optim.LBFGS(lr=1, line_search_fn="strong_wolfe")``, step
    for step, so a fit that used it gives the same bits: ``segments`` are the lengths of the
    parameters it would have held (a step is added to each on its own, as torch does). Two
    additions: ``converged(gradient)`` is a further stopping test, asked wherever torch asks
    ``max |gradient| <= tolerance_grad`` (scikit-learn's ``tol``, measured in the caller's
    coordinates), and ``callback(iteration, loss)`` after each iteration.

    ``checkpoint`` makes a long fit resumable: its ``state`` (an :class:`LbfgsState`, or None)
    is where to go on from instead of ``x``, and ``checkpoint.offer(iteration, snapshot)`` is
    called after each iteration that the fit goes on from; ``snapshot()`` returns that
    iteration's :class:`LbfgsState` (a copy), for the caller to keep when it chooses.
    """
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    segments = list(segments) if segments is not None else [x.numel()]

    def add(t, d) -> None:
        offset = 0
        for size in segments:
            x[offset : offset + size].add_(d[offset : offset + size], alpha=t)
            offset += size

    def done(g: torch.Tensor) -> bool:
        return bool(g.abs().max() <= tolerance_grad) or (converged is not None and converged(g))

    def obj_func(x_init, t, d):
        add(t, d)
        loss, g = fun(x)
        x.copy_(x_init)
        return float(loss), g

    resumed = getattr(checkpoint, "state", None)
    if resumed is None:
        loss, flat_grad = fun(x)
        loss = float(loss)
        current_evals = 1
        if done(flat_grad):
            return LbfgsResult(x, loss, 0, current_evals, True)
        d = t = prev_flat_grad = None
        old_dirs: list[torch.Tensor] = []
        old_stps: list[torch.Tensor] = []
        ro: list = []
        h_diag = 1
        n_iter = 0
    else:
        x.copy_(resumed.x)
        loss, current_evals, n_iter = resumed.loss, resumed.evaluations, resumed.iterations
        flat_grad, prev_flat_grad = resumed.flat_grad.clone(), resumed.prev_flat_grad.clone()
        d, t, h_diag = resumed.d, resumed.t, resumed.h_diag
        old_dirs, old_stps, ro = list(resumed.old_dirs), list(resumed.old_stps), list(resumed.ro)
    al: list = [None] * history_size
    opt_cond = False

    def snapshot() -> LbfgsState:
        return LbfgsState(
            x.clone(),
            loss,
            flat_grad.clone(),
            prev_flat_grad.clone(),
            d.clone(),
            t,
            h_diag,
            list(old_dirs),
            list(old_stps),
            list(ro),
            n_iter,
            current_evals,
        )

    while n_iter < max_iter:
        n_iter += 1
        if n_iter == 1:
            d = flat_grad.neg()
        else:
            y = flat_grad.sub(prev_flat_grad)
            s = d.mul(t)
            ys = y.dot(s)
            if ys > 1e-10:
                if len(old_dirs) == history_size:
                    old_dirs.pop(0)
                    old_stps.pop(0)
                    ro.pop(0)
                old_dirs.append(y)
                old_stps.append(s)
                ro.append(1.0 / ys)
                h_diag = ys / y.dot(y)
            q = flat_grad.neg()
            for i in range(len(old_dirs) - 1, -1, -1):
                al[i] = old_stps[i].dot(q) * ro[i]
                q.add_(old_dirs[i], alpha=-al[i])
            d = r = torch.mul(q, h_diag)
            for i in range(len(old_dirs)):
                be_i = old_dirs[i].dot(r) * ro[i]
                r.add_(old_stps[i], alpha=al[i] - be_i)
        if prev_flat_grad is None:
            prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
        else:
            prev_flat_grad.copy_(flat_grad)
        prev_loss = loss
        t = min(1.0, 1.0 / flat_grad.abs().sum()) if n_iter == 1 else 1
        gtd = flat_grad.dot(d)
        if gtd > -tolerance_change:
            break
        x_init = x.clone(memory_format=torch.contiguous_format)
        loss, flat_grad, t, ls_evals = _strong_wolfe(
            obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
        )
        add(t, d)
        opt_cond = done(flat_grad)
        current_evals += ls_evals
        if callback is not None:
            callback(n_iter, loss)
        if n_iter == max_iter or current_evals >= max_eval or opt_cond:
            break
        if d.mul(t).abs().max() <= tolerance_change:
            break
        if abs(loss - prev_loss) < tolerance_change:
            break
        if checkpoint is not None:
            checkpoint.offer(n_iter, snapshot)
    return LbfgsResult(x, loss, n_iter, current_evals, opt_cond)


# --------------------------------------------------------------------------- preconditioning


def moments(loss: SoftmaxLoss, block_rows: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """The (sample-weighted) second moment ``E[x x^T]`` (float64 ``(D, D)``) and mean ``E[x]``
    of the raw rows, summed over the ranks: with the mean taken out, the curvature of the
    objective in ``W`` up to the softmax's."""
    x, sw = loss.x, loss.sample_weight
    d = x.shape[1]
    gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    total = torch.zeros(d + 1, dtype=torch.float64, device=x.device)  # weighted sums, weight
    for lo in range(0, x.shape[0], block_rows):
        xb = x[lo : lo + block_rows]
        wb = None if sw is None else sw[lo : lo + block_rows]
        xw = xb if wb is None else xb * wb.unsqueeze(1)
        # The products in x's dtype (BLAS accumulates), summed in float64.
        gram += (xw.t() @ xb).double()
        total[:d] += xw.double().sum(0)
        total[d] += float(xb.shape[0]) if wb is None else wb.double().sum()
    if loss.parallel:
        buf = torch.cat([gram.reshape(-1), total])
        loss.world.sum_same_(buf, "summing the input statistics")
        gram, total = buf[: d * d].view(d, d), buf[d * d :]
    weight = max(float(total[d]), 1e-300)
    return gram / weight, total[:d] / weight


class Preconditioner:
    """``W = V P`` with ``P = (alpha S + weight_decay R + floor)^(-1/2)``, ``S`` the inputs'
    covariance and ``R`` the penalty's matrix (identity when None): the same objective and
    the same minimum, a far better conditioned problem for L-BFGS. ``alpha`` stands for the
    loss's curvature per unit input variance (between 0 and the softmax's bound 1/2)."""

    def __init__(
        self,
        cov: torch.Tensor,
        weight_decay: float,
        alpha: float = 1.0,
        penalty: torch.Tensor | None = None,
    ) -> None:
        m = alpha * cov
        m = m + weight_decay * (penalty.double() if penalty is not None else torch.eye(len(m)))
        eigenvalues, q = torch.linalg.eigh(m)
        top = float(eigenvalues.max().clamp_min(1e-300))
        # Directions without curvature (constant inputs, no penalty): kept at the scale of
        # the flattest real one, not divided by zero.
        eigenvalues = eigenvalues.clamp_min(top * 1e-10)
        self.p = (q * eigenvalues.rsqrt()) @ q.T
        self.p_inv = (q * eigenvalues.sqrt()) @ q.T


def minimize(
    loss: SoftmaxLoss,
    init: tuple[torch.Tensor, torch.Tensor],
    max_iter: int,
    *,
    tol: float | None = None,
    preconditioner: tuple[torch.Tensor, torch.Tensor] | None = None,
    history_size: int = 20,
    tolerance_grad: float = 1e-9,
    tolerance_change: float = 1e-12,
    tol_repeats: int = 1,
    on_nonfinite: Callable[[float, int], BaseException] | None = None,
    callback: Callable[[int, float], None] | None = None,
    checkpoint: Any = None,  # passed to lbfgs: a fit that can be continued (its docstring)
) -> Solution:
    """Minimise ``loss`` over (W, b) from ``init`` with :func:`lbfgs`, on ``W = V P`` when a
    ``preconditioner`` ``(P, P^-1)`` is given.

    Stops after ``max_iter`` iterations, when the largest gradient component in (W, b) is at
    most ``tol`` (scikit-learn's lbfgs ``tol``; None: not asked) at ``tol_repeats``
    consecutive iterates (the start counting as one), when the largest component
    of the solver's own gradient (in ``V``) is at most ``tolerance_grad``, or when a step
    changes the objective by less than ``tolerance_change``. ``on_nonfinite(loss, n)`` makes
    the error raised when an evaluation is not finite (default: ``FloatingPointError``).
    """
    start = time.perf_counter()
    w0, b0 = init
    dtype = loss.x.dtype
    p = p_inv = None
    if preconditioner is not None:
        p, p_inv = (m.to(dtype=dtype, device=loss.x.device) for m in preconditioner)
    w0 = w0.to(dtype)
    v = w0 @ p_inv if p_inv is not None else w0.clone()
    b = b0.to(dtype).clone()
    k, d = v.shape
    x = torch.cat([v.reshape(-1), b])
    evaluations = 0

    def unpack(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = flat[: k * d].view(k, d)
        return (v @ p if p is not None else v), flat[k * d :]

    def fun(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal evaluations
        evaluations += 1
        w, b = unpack(flat)
        value, grad_w, grad_b = loss.loss_gradient(w, b)
        if not torch.isfinite(value):
            if on_nonfinite is not None:
                raise on_nonfinite(float(value), evaluations)
            raise FloatingPointError(f"the objective became {float(value)}")
        grad_v = grad_w @ p if p is not None else grad_w
        return value, torch.cat([grad_v.reshape(-1), grad_b])

    passed = 0  # consecutive iterates that passed the ``tol`` test

    def small_enough(g: torch.Tensor) -> bool:
        nonlocal passed
        grad_w = g[: k * d].view(k, d)
        if p_inv is not None:
            grad_w = grad_w @ p_inv  # back to the gradient in W
        passed = passed + 1 if loss.largest_component(grad_w, g[k * d :]) <= tol else 0
        return passed >= tol_repeats

    with torch.no_grad():
        result = lbfgs(
            fun,
            x,
            max_iter=max_iter,
            segments=(k * d, k),
            history_size=history_size,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            converged=small_enough if tol is not None else None,
            callback=callback,
            checkpoint=checkpoint,
        )
        w, b = unpack(result.x)
        w, b = w.clone(), b.clone()
        # The line search may end on a point it did not evaluate last: score it once more.
        value, _, _ = loss.loss_gradient(w, b)
    return Solution(
        w,
        b,
        float(value),
        evaluations,
        time.perf_counter() - start,
        iterations=result.iterations,
        converged=result.converged,
    )


def default_block_rows(device: torch.device) -> int | None:
    """Rows per block of an evaluation: about a thousand on a CPU (both products on a block
    while it is cached), all rows at once on a GPU."""
    return 1024 if device.type == "cpu" else None


def is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
