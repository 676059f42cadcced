"""The best linear classifier we know how to fit honestly: still ``Linear(784, 10)`` on raw pixels.

What helps a convex model, and nothing else (no hidden layer, no hand-made features):

* per-pixel standardisation with statistics of the images being fitted (pixels that never vary
  keep scale 1, so they cannot blow up);
* mean cross-entropy plus an L2 penalty on the weights (not the bias), measured in the metric
  of the images' own pixel correlations ``C = Q diag(c) Q^T``::

      weight_decay / 2 * sum_k r_k ||W q_k||^2,   r_k = ((c_k + floor) / (mean(c) + floor))^-power

  With ``power = 0`` this is the plain ``weight_decay / 2 * ||W||^2``. With ``power = 1`` (the
  default) it is the Gaussian prior ``W ~ N(0, C + floor I)``: weights along directions in
  which images really vary are cheap, weights along pixel noise are dear. A generalised
  ridge (Tikhonov) penalty: the model stays one linear layer, the problem stays convex;
* the cross-entropy taken with an additive margin: each image's true-class logit is lowered
  by ``margin`` inside the loss (training only; the model predicts with its plain logits), so
  the loss keeps separating classes until the true one leads by about ``margin``, between
  the cross-entropy (margin 0) and a multiclass hinge. Still convex. The model's softmax
  probabilities come out sharper than calibrated ones;
* minimised full-batch with L-BFGS (strong Wolfe line search). The solver works on ``W = V P``
  with ``P = (C + weight_decay R)^(-1/2)``, ``R`` the penalty's matrix: the same objective and
  the same minimum, but a far better conditioned problem for L-BFGS;
* the weight decay chosen on a seeded, stratified validation split by validation accuracy
  only, going from strong to weak decay with warm starts (``power``, ``floor`` and ``margin``
  were fixed the same way, on validation splits, when the recipe was designed:
  ``benchmarks/bench_objective.py``);
* a refit on all training images with the chosen decay, rescaled by ``n_select / n_all`` so
  the penalty keeps the same weight relative to the (summed) data term.

:func:`select_weight_decay` and :func:`fit_best_linear` are never given the test split; only
:func:`run_best_linear` evaluates it, once, after everything is fixed. Standardisation is folded
into the weights, so the result is a plain linear layer on ``[0, 1]`` pixels, the same kind of
model the book's recipe trains and saves.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch

from .config import resolve_device
from .data import FashionMNIST
from .errors import ConfigError, NonFiniteLossError

NUM_PIXELS = 28 * 28
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class BestLinearConfig:
    """Every knob of the best-linear recipe, with the values it was designed with."""

    # L2 strengths tried on the validation split, searched strong -> weak with warm starts:
    # steps of 2 around where validation accuracy peaked (5e-4 to 1e-3) on validation splits.
    weight_decays: tuple[float, ...] = (4e-3, 2e-3, 1e-3, 5e-4, 2.5e-4)
    # The penalty's metric (module docstring): 0 = plain L2, 1 = prior N(0, C + floor I).
    # Chosen on validation splits of seeds 0-5 (benchmarks/bench_objective.py): 1 beat 0 on all.
    penalty_power: float = 1.0
    penalty_floor: float = 0.01  # added to the correlation eigenvalues (mean eigenvalue ~1)
    # Additive margin of the loss (module docstring): 0 = plain cross-entropy. Chosen on the
    # same validation splits: 2 beat 0 on every one (0.5, 1, 3, 4, 6 tried too).
    margin: float = 2.0
    val_split: int = 10_000  # images held out (seeded, stratified) to choose the weight decay
    select_iters: int = 40  # L-BFGS iterations per candidate (warm-started): enough to rank
    # L-BFGS iterations of the final fit, from the chosen candidate: near the minimum
    # objective (BENCHMARKS.md) while a whole run stays well under 30 s on 2 CPU cores.
    refit_iters: int = 160
    history_size: int = 50  # L-BFGS memory (after 60 refit steps: 40% smaller gap than 20)
    dtype: str = "float32"  # float32 halves the memory traffic of float64 at no accuracy cost
    seed: int = 0  # draws the validation split and the initial weights
    device: str = "auto"  # "auto" = cuda when available, else cpu (as the trainer)
    min_std: float = 1e-6  # a pixel whose std is below this is only centred, not scaled
    # Rows per block of an evaluation on CPU (both products on a block while it is cached:
    # half the time of whole-matrix products here); a GPU takes all rows at once.
    block_rows: int = 1024

    def __post_init__(self) -> None:
        if not self.weight_decays:
            raise ConfigError("best-linear needs at least one weight decay to choose from")
        for wd in self.weight_decays:
            if not (isinstance(wd, int | float) and math.isfinite(wd) and wd > 0):
                raise ConfigError(f"weight decays must be positive finite numbers, got {wd!r}")
        for name in ("val_split", "select_iters", "refit_iters", "history_size", "block_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{name.replace('_', ' ')} must be a positive integer, got {value!r}"
                )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be one of auto, cpu, cuda, got {self.device!r}")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        if not (self.min_std > 0):
            raise ConfigError(f"min std must be positive, got {self.min_std!r}")
        for name in ("penalty_power", "penalty_floor", "margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name.replace('_', ' ')} must be a number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(
                    f"{name.replace('_', ' ')} must be a finite number >= 0, got {value!r}"
                )
        if self.penalty_power > 0 and self.penalty_floor == 0:
            raise ConfigError("penalty floor must be positive when penalty power is")

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def blocks(self, device: torch.device) -> int | None:
        return self.block_rows if device.type == "cpu" else None


def pixels(data: FashionMNIST, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, 784) pixels in [0, 1], the input the book's model sees after Flatten."""
    return data.images.reshape(len(data), NUM_PIXELS).to(dtype).div_(255)


@dataclass(frozen=True)
class Standardizer:
    """x -> (x - mean) / std per pixel, from the statistics of the images it was fitted on."""

    mean: torch.Tensor  # (784,)
    std: torch.Tensor  # (784,), 1 where a pixel (almost) never varies

    @classmethod
    def fit(cls, x: torch.Tensor, min_std: float = 1e-6) -> Standardizer:
        # In x's dtype: whatever (mean, std) are used, folding them into the weights is exact.
        std, mean = torch.std_mean(x, dim=0)
        std = torch.where(std < min_std, torch.ones_like(std), std)
        return cls(mean, std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def fold(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (weight, bias) on raw [0, 1] pixels giving the same logits as on standardised ones.

        W x_s + b = (W / s) x + (b - (W / s) . m); computed in float64.
        """
        w = weight.double() / self.std.double()
        b = bias.double() - w @ self.mean.double()
        return w, b

    def unfold(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The inverse of :meth:`fold`: raw-pixel (weight, bias) -> standardised-pixel ones."""
        w = weight.double() * self.std.double()
        b = bias.double() + weight.double() @ self.mean.double()
        return w, b


@dataclass
class Solution:
    """A fitted linear layer on standardised pixels and what the fit cost."""

    weight: torch.Tensor  # (10, 784)
    bias: torch.Tensor  # (10,)
    objective: float  # mean cross-entropy (with margin) + weight_decay / 2 * tr(W R W^T)
    evaluations: int  # loss + gradient evaluations, each one pass over the data
    seconds: float


class Spectrum:
    """Eigen-decomposition ``C = Q diag(c) Q^T`` of the pixel correlations of standardised images.

    Gives the penalty's matrix ``R`` and the solver's preconditioner, both diagonal in ``Q``.
    """

    def __init__(self, x: torch.Tensor, power: float = 0.0, floor: float = 0.01) -> None:
        # x is standardised on its own rows (mean 0), so x^T x / N is their correlation matrix.
        # float32 products, accumulated by BLAS; eigh in float64.
        c = (x.T.float() @ x.float()).double() / x.shape[0]
        eigenvalues, self.eigenvectors = torch.linalg.eigh(c)
        self.eigenvalues = eigenvalues.clamp_min(0)
        self.power = float(power)
        if self.power == 0:
            self.relative = torch.ones_like(self.eigenvalues)
        else:
            mean = self.eigenvalues.mean()
            self.relative = ((self.eigenvalues + floor) / (mean + floor)).pow(-self.power)

    def _matrix(self, diagonal: torch.Tensor) -> torch.Tensor:
        q = self.eigenvectors
        return (q * diagonal) @ q.T

    def penalty(self) -> torch.Tensor | None:
        """``R`` of the penalty ``weight_decay / 2 * tr(W R W^T)``; None for plain L2 (R = I)."""
        return None if self.power == 0 else self._matrix(self.relative)

    def preconditioner(self, weight_decay: float, power: float) -> torch.Tensor:
        """``(C + weight_decay R)^power``: the curvature of the objective, up to the softmax."""
        return self._matrix((self.eigenvalues + weight_decay * self.relative).pow(power))


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
    gradients (W, b).

    ``R`` is ``penalty`` (symmetric, 784 x 784), or the identity when None: plain
    ``weight_decay / 2 * ||W||^2``. ``margin`` lowers each image's true-class logit inside the
    loss only (additive-margin softmax): the loss keeps pushing until the true class leads by
    about ``margin``. A constant shift of the logits, so the loss stays convex in (W, b) and
    its gradient has the same form. With ``margin = 0`` this is the plain cross-entropy.
    Written out rather than through autograd: per block of
    rows one ``W @ x.T`` and one ``G @ x`` (the fast layouts for a 10-row matrix), with
    ``G = softmax - onehot`` the gradient at the logits. A block of ``block_rows`` rows (all
    rows when None) is used by both products while it is still in the CPU's cache, so the
    images are read from memory once per evaluation instead of twice: on CPU, blocks of about
    a thousand rows halve the time of an evaluation. Everything in ``x``'s dtype.
    """
    n = x.shape[0]
    step = n if block_rows is None else max(1, int(block_rows))
    grad_w = torch.zeros_like(w)
    grad_b = torch.zeros_like(b)
    data_loss = torch.zeros((), dtype=x.dtype, device=x.device)
    bias = b.unsqueeze(1)
    # Made once, sliced per block (the last block may be shorter).
    minus_one = torch.full((1, min(step, n)), -1.0, dtype=x.dtype, device=x.device)
    minus_margin = minus_one * margin if margin else None
    for lo in range(0, n, step):
        xb, rows = x[lo : lo + step], y[lo : lo + step].unsqueeze(0)
        k = rows.shape[1]
        z = torch.addmm(bias, w, xb.t())  # (10, rows)
        if minus_margin is not None:
            z.scatter_add_(0, rows, minus_margin[:, :k])
        lsm = torch.log_softmax(z, 0)
        data_loss -= lsm.gather(0, rows).sum()
        g = lsm.exp_().scatter_add_(0, rows, minus_one[:, :k])
        grad_w.addmm_(g, xb)
        grad_b += g.sum(1)
    wr = w if penalty is None else w @ penalty
    loss = data_loss / n + 0.5 * weight_decay * (w * wr).sum()
    return loss, grad_w.div_(n).add_(wr, alpha=weight_decay), grad_b.div_(n)


def solve(
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    max_iter: int,
    *,
    init: tuple[torch.Tensor, torch.Tensor],
    spectrum: Spectrum | None = None,
    history_size: int = 20,
    precondition: bool = True,
    block_rows: int | None = None,
    margin: float = 0.0,
) -> Solution:
    """Minimise mean cross-entropy (with ``margin``) + weight_decay / 2 * tr(W R W^T) over
    (W, b) with L-BFGS.

    ``x`` is (N, 784) standardised pixels; ``R`` is ``spectrum``'s penalty (the identity when
    there is no spectrum), and ``spectrum`` also preconditions the problem unless
    ``precondition`` is false. The loss and its gradient are written out
    (:func:`objective_and_gradient`, in blocks of ``block_rows``): no autograd graph,
    everything in ``x``'s dtype.
    """
    start = time.perf_counter()
    dtype = x.dtype
    penalty = None if spectrum is None else spectrum.penalty()
    penalty = None if penalty is None else penalty.to(dtype)
    if spectrum is None or not precondition:
        p = p_inv = None
    else:
        p = spectrum.preconditioner(weight_decay, -0.5).to(dtype)
        p_inv = spectrum.preconditioner(weight_decay, 0.5).to(dtype)
    w0, b0 = init
    w0 = w0.to(dtype)
    v = (w0 @ p_inv if p_inv is not None else w0.clone()).requires_grad_(True)
    b = b0.to(dtype).clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [v, b],
        lr=1,
        max_iter=max_iter,
        history_size=history_size,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        with torch.no_grad():
            w = v @ p if p is not None else v
            loss, grad_w, grad_b = objective_and_gradient(
                x, y, w, b, weight_decay, penalty, block_rows, margin
            )
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"best-linear: the L-BFGS objective became {float(loss)} at evaluation "
                    f"{evaluations} (weight decay {weight_decay:g})"
                )
            v.grad = grad_w @ p if p is not None else grad_w
            b.grad = grad_b
        return loss

    opt.step(closure)
    with torch.no_grad():
        w = (v @ p if p is not None else v).detach().clone()
        b = b.detach().clone()
        # LBFGS.step returns the first evaluation's loss, and its line search may end on a
        # point it did not evaluate last: score the final point once more.
        loss, _, _ = objective_and_gradient(x, y, w, b, weight_decay, penalty, block_rows, margin)
        objective = float(loss)
    return Solution(w, b, objective, evaluations, time.perf_counter() - start)


def _accuracy_and_loss(
    w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of logits ``W x + b`` over the rows of ``x``."""
    with torch.no_grad():
        z = torch.addmm(b.to(x.dtype).unsqueeze(1), w.to(x.dtype), x.t())  # (10, N)
        acc = (z.argmax(0) == y).double().mean()
        loss = -torch.log_softmax(z, 0).gather(0, y.unsqueeze(0)).double().mean()
    return float(acc), float(loss)


@dataclass(frozen=True)
class Candidate:
    weight_decay: float
    val_acc: float
    val_loss: float
    train_acc: float  # on the images it was fitted on (the training part of the split)
    objective: float
    evaluations: int
    seconds: float = field(compare=False)  # timing is no part of what was chosen


@dataclass(frozen=True)
class Selection:
    """How the weight decay was chosen: every candidate's validation numbers and the winner."""

    candidates: list[Candidate]
    chosen_weight_decay: float
    n_fit: int  # images the candidates were fitted on
    n_val: int  # images they were scored on
    seed: int
    rule: str = "highest validation accuracy; ties go to the stronger weight decay"

    def to_dict(self) -> dict:
        return asdict(self)


def _initial(seed: int, dtype: torch.dtype, device: torch.device):
    # The book's N(0, 0.01) weights; the bias starts at 0 because the objective is convex and
    # the starting point only changes how long L-BFGS takes, not where it ends.
    g = torch.Generator().manual_seed(int(seed))
    w = torch.randn(10, NUM_PIXELS, generator=g, dtype=torch.float64).mul_(0.01)
    return w.to(device=device, dtype=dtype), torch.zeros(10, dtype=dtype, device=device)


@dataclass
class _Selected:
    """What the refit reuses from the selection: its answer and its weights."""

    selection: Selection
    weight: torch.Tensor  # the chosen candidate, folded onto raw [0, 1] pixels (float64)
    bias: torch.Tensor


def _select(fit: FashionMNIST, val: FashionMNIST, config: BestLinearConfig) -> _Selected:
    dtype, device = config.torch_dtype, resolve_device(config.device)
    fit, val = fit.to(device), val.to(device)
    x_fit = pixels(fit, dtype)
    scaler = Standardizer.fit(x_fit, config.min_std)
    x_fit = scaler(x_fit).contiguous()
    x_val = scaler(pixels(val, dtype)).contiguous()
    spectrum = Spectrum(x_fit, config.penalty_power, config.penalty_floor)
    state = _initial(config.seed, dtype, device)
    candidates: list[Candidate] = []
    solutions = {}
    for wd in sorted(config.weight_decays, reverse=True):  # strong -> weak: warm starts
        sol = solve(
            x_fit,
            fit.labels,
            wd,
            config.select_iters,
            init=state,
            spectrum=spectrum,
            history_size=config.history_size,
            block_rows=config.blocks(device),
            margin=config.margin,
        )
        state = solutions[wd] = (sol.weight, sol.bias)
        val_acc, val_loss = _accuracy_and_loss(sol.weight, sol.bias, x_val, val.labels)
        train_acc, _ = _accuracy_and_loss(sol.weight, sol.bias, x_fit, fit.labels)
        candidates.append(
            Candidate(wd, val_acc, val_loss, train_acc, sol.objective, sol.evaluations, sol.seconds)
        )
    best = max(candidates, key=lambda c: (c.val_acc, c.weight_decay))
    selection = Selection(candidates, best.weight_decay, len(fit), len(val), int(config.seed))
    w, b = scaler.fold(*solutions[best.weight_decay])
    return _Selected(selection, w, b)


def _split(train: FashionMNIST, config: BestLinearConfig) -> tuple[FashionMNIST, FashionMNIST]:
    from .train import split_validation  # the trainer's split: same seed, same held-out images

    if not 0 < config.val_split < len(train):
        raise ConfigError(
            f"validation split of {config.val_split} images needs more than that to train on "
            f"({len(train)} available)"
        )
    fit_idx, val_idx = split_validation(config.val_split, train.labels, config.seed)
    return (
        train.subset(fit_idx.to(train.device), split="train"),
        train.subset(val_idx.to(train.device), split="val"),
    )


def select_weight_decay(
    fit: FashionMNIST, val: FashionMNIST, config: BestLinearConfig = BestLinearConfig()
) -> Selection:
    """Fit every candidate weight decay on ``fit``, score it on ``val``, keep the best.

    Only ever sees the two splits it is given; the test split is no argument of it.
    """
    return _select(fit, val, config).selection


@dataclass
class BestLinearModel:
    """The result of the recipe: a linear layer on [0, 1] pixels and how it was obtained."""

    weight: torch.Tensor  # (10, 784) float32, acts on pixels in [0, 1]
    bias: torch.Tensor  # (10,) float32
    selection: Selection
    weight_decay: float  # used for the refit: chosen * n_fit / n_all
    train_acc: float  # all training images, final model
    train_loss: float  # mean cross-entropy on all training images (no penalty)
    objective: float  # mean cross-entropy + weight_decay / 2 * ||W||^2 (standardised W)
    evaluations: int  # loss + gradient passes over the data, selection and refit together
    select_seconds: float
    refit_seconds: float
    config: BestLinearConfig = field(default_factory=BestLinearConfig)

    @property
    def seconds(self) -> float:
        return self.select_seconds + self.refit_seconds

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 10) logits for uint8 (N, 28, 28) images or float pixels in [0, 1]."""
        x = images.reshape(images.shape[0], NUM_PIXELS)
        if not x.is_floating_point():
            x = x.float().div(255)
        return torch.nn.functional.linear(x.float(), self.weight, self.bias)

    def how_chosen(self) -> str:
        s = self.selection
        n_all = s.n_fit + s.n_val
        tried = ", ".join(f"{c.weight_decay:g}: {c.val_acc:.4f}" for c in s.candidates)
        c = self.config
        metric = (
            "plain L2"
            if c.penalty_power == 0
            else f"L2 in the pixel-correlation metric, power {c.penalty_power:g}, "
            f"floor {c.penalty_floor:g}"
        )
        metric += f", cross-entropy with margin {c.margin:g} (fixed in advance)"
        return (
            f"{metric}; weight decay {s.chosen_weight_decay:g} chosen by validation accuracy "
            f"on {s.n_val} images held out from {n_all} (seeded, stratified, seed {s.seed}; "
            f"tried {tried}); "
            f"refit on all {n_all} training images with weight decay {self.weight_decay:.4g} "
            f"(= {s.chosen_weight_decay:g} x {s.n_fit}/{n_all}, the same penalty per image); "
            f"the test split was not used"
        )


def fit_best_linear(
    train: FashionMNIST, config: BestLinearConfig = BestLinearConfig()
) -> BestLinearModel:
    """Choose the weight decay on a validation split of ``train``, then refit on all of it.

    The test split is no argument: nothing here can look at it.
    """
    # All of torch's threads (unlike the trainer's small steps): each evaluation is a series of
    # 1024-row matrix products, and two threads took 30% less time than one here.
    start = time.perf_counter()
    fit, val = _split(train, config)
    chosen = _select(fit, val, config)
    del fit, val
    selection = chosen.selection
    select_seconds = time.perf_counter() - start

    start = time.perf_counter()
    dtype, device = config.torch_dtype, resolve_device(config.device)
    train = train.to(device)
    x = pixels(train, dtype)
    scaler = Standardizer.fit(x, config.min_std)
    x = scaler(x).contiguous()
    wd = selection.chosen_weight_decay * selection.n_fit / len(train)
    # Warm start from the chosen candidate, re-expressed for this standardisation; the
    # minimum is unique (strictly convex), so this only saves iterations.
    w0, b0 = scaler.unfold(chosen.weight, chosen.bias)
    sol = solve(
        x,
        train.labels,
        wd,
        config.refit_iters,
        init=(w0.to(dtype), b0.to(dtype)),
        # The penalty's metric from the images fitted now, as in the selection.
        spectrum=Spectrum(x, config.penalty_power, config.penalty_floor),
        history_size=config.history_size,
        block_rows=config.blocks(device),
        margin=config.margin,
    )
    train_acc, train_loss = _accuracy_and_loss(sol.weight, sol.bias, x, train.labels)
    del x
    w, b = scaler.fold(sol.weight, sol.bias)
    return BestLinearModel(
        weight=w.float(),
        bias=b.float(),
        selection=selection,
        weight_decay=wd,
        train_acc=train_acc,
        train_loss=train_loss,
        objective=sol.objective,
        evaluations=sol.evaluations + sum(c.evaluations for c in selection.candidates),
        select_seconds=select_seconds,
        refit_seconds=time.perf_counter() - start,
        config=config,
    )


@dataclass(frozen=True)
class BestLinearRun:
    """One seed of the recipe: the model, its test numbers (reporting only) and its timings."""

    model: BestLinearModel
    test_acc: float
    test_loss: float
    seconds: float  # fit (selection + refit) + test evaluation

    def metrics(self) -> dict[str, float]:
        m = self.model
        best = next(
            c for c in m.selection.candidates if c.weight_decay == m.selection.chosen_weight_decay
        )
        return {
            "train_loss": m.train_loss,
            "train_acc": m.train_acc,
            "val_acc": best.val_acc,
            "test_acc": self.test_acc,
            "test_loss": self.test_loss,
            "weight_decay": m.weight_decay,
            "seconds": self.seconds,
        }


def evaluate_linear(
    weight: torch.Tensor, bias: torch.Tensor, data: FashionMNIST
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of a raw-pixel linear layer on one split."""
    x = pixels(data.to(weight.device), torch.float32)
    return _accuracy_and_loss(weight.float(), bias.float(), x, data.labels.to(weight.device))


def run_best_linear(
    train: FashionMNIST, test: FashionMNIST, config: BestLinearConfig = BestLinearConfig()
) -> BestLinearRun:
    """Fit with :func:`fit_best_linear` (no test data in sight), then evaluate test once."""
    start = time.perf_counter()
    model = fit_best_linear(train, config)
    test_acc, test_loss = evaluate_linear(model.weight, model.bias, test)
    return BestLinearRun(model, test_acc, test_loss, time.perf_counter() - start)
