"""The objective of every full-batch fit: a linear softmax classifier's loss and gradient.

:class:`SoftmaxLoss` is the objective and nothing about solving it (scikit-learn's
``LinearModelLoss``); the solvers over it are :mod:`softmax_regression.solver`.

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

``one_vs_rest`` is ``K`` binary problems at once (liblinear's one-vs-rest): row ``k`` of ``W``
is the logistic model of "class ``k`` against the rest", and the loss is the sum of the ``K``
logistic losses, ``sum_k softplus(z_k) - z_{y_i}``, so that each row's gradient is its own
problem's. ``class_factors`` ``(2, K)`` multiplies row ``k``'s loss on the rest (``[0, k]``)
and on class ``k`` (``[1, k]``): each binary problem's own class weights.

Under ``torchrun`` each rank holds some of the rows; one evaluation all-reduces the loss sum
and the gradient sums once (one buffer), so every rank takes the same step on the same
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .distributed import World


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
    one_vs_rest: bool = False  # K independent binary problems (see the module docstring)
    class_factors: torch.Tensor | None = None  # (2, K): one_vs_rest's per-problem weights

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
            if self.one_vs_rest:
                picked, g = self._one_vs_rest(z, rows)
                if sw is not None:
                    picked = picked * sw[lo : lo + step]
                    g.mul_(sw[lo : lo + step])
                data_loss -= picked.sum(dtype=loss_dtype)
                grad_w.addmm_(g, xb)
                grad_b += g.sum(1)
                continue
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

    def _one_vs_rest(
        self, z: torch.Tensor, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Minus the rows' losses summed over the ``K`` binary problems ``(1, rows)``, and the
        gradient at the logits ``(K, rows)``: ``sigmoid(z) - onehot``, each problem weighted
        by its ``class_factors``."""
        onehot = torch.zeros_like(z).scatter_(0, rows, 1.0)
        losses = torch.nn.functional.softplus(z) - z * onehot
        g = torch.sigmoid(z) - onehot
        if self.class_factors is not None:
            neg, pos = self.class_factors[0].unsqueeze(1), self.class_factors[1].unsqueeze(1)
            factor = neg + onehot * (pos - neg)
            losses, g = losses * factor, g * factor
        return -losses.sum(0, keepdim=True), g

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


def default_block_rows(device: torch.device) -> int | None:
    """Rows per block of an evaluation: about a thousand on a CPU (both products on a block
    while it is cached), all rows at once on a GPU."""
    return 1024 if device.type == "cpu" else None
