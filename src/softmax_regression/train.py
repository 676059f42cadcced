"""The book's training loop (``train_ch3``), exact in what it computes and fast on a CPU.

What one epoch does is the book's ``train_epoch_ch3`` with a ``torch.optim.SGD`` updater: for
each shuffled batch, per-example losses ``l = loss(net(X), y)``, ``l.mean()`` is minimised by
one SGD step, and ``l.sum()`` and the batch's correct predictions (taken before the step) are
added up; after the epoch, test accuracy in eval mode. The train loss and accuracy are those
running sums over the number of examples, accumulated in float64 as ``Accumulator`` does.

Two engines compute that step:

* ``autograd``: exactly the book's code path, ``nn.Linear`` forward, the chosen loss module,
  ``l.mean().backward()``, then the SGD update.
* ``fast`` (the default for the default loss): the same step with the gradient of the mean
  cross-entropy written out, ``dL/dlogits = (softmax(o) - onehot(y)) / n``, in the matrix
  layout that is fastest for this thin model, into preallocated buffers. It is the same
  training run up to float rounding; ``tests/test_train_engines.py`` holds it to that.

Both engines keep every per-batch number on the device (no per-batch host sync) and read them
once per epoch, except a finiteness check of the losses every :data:`CHECK_EVERY` steps.

Given a :class:`~softmax_regression.distributed.World` of several ranks, :func:`fit` trains
the same run data-parallel: each rank takes its share of every global batch, the gradient
sums are all-reduced and divided by the global batch size before the update, and the loss
sums and correct counts are reduced exactly (``distributed.py`` says how). One rank is the
single-process code path, untouched.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from . import functional, stopping
from .config import TrainConfig, resolve_device
from .data import Dataset
from .data.split import split_validation
from .distributed import World, local_indices, share
from .errors import ConfigError, NonFiniteLossError
from .model import SoftmaxRegression, class_scores
from .preprocessing import Preprocessing, images_to_float, standardizer

# Steps between two finiteness checks of the loss: one host sync per this many batches.
CHECK_EVERY = 16
# Rows per matrix product when scoring an evaluation set: bounds memory on any device.
EVAL_CHUNK = 16384


# --------------------------------------------------------------------------- history


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's numbers, with the book's definitions (see the module docstring)."""

    epoch: int
    train_loss: float
    train_acc: float
    test_acc: float | None
    val_acc: float | None
    seconds: float


@dataclass
class History:
    """Per-epoch records of a run, in order."""

    records: list[EpochRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[EpochRecord]:
        return iter(self.records)

    def __getitem__(self, i: int) -> EpochRecord:
        return self.records[i]

    @property
    def last(self) -> EpochRecord | None:
        return self.records[-1] if self.records else None

    def columns(self) -> list[str]:
        """The fields that hold numbers in this run (val_acc/test_acc only when measured)."""
        cols = ["epoch", "train_loss", "train_acc"]
        if any(r.test_acc is not None for r in self.records):
            cols.append("test_acc")
        if any(r.val_acc is not None for r in self.records):
            cols.append("val_acc")
        return [*cols, "seconds"]

    def series(self, name: str) -> list[Any]:
        return [getattr(r, name) for r in self.records]

    def to_dict(self) -> dict[str, Any]:
        cols = self.columns()
        return {"epochs": [{c: getattr(r, c) for c in cols} for r in self.records]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        records = []
        for row in data["epochs"]:
            records.append(
                EpochRecord(
                    epoch=int(row["epoch"]),
                    train_loss=float(row["train_loss"]),
                    train_acc=float(row["train_acc"]),
                    test_acc=None if row.get("test_acc") is None else float(row["test_acc"]),
                    val_acc=None if row.get("val_acc") is None else float(row["val_acc"]),
                    seconds=float(row["seconds"]),
                )
            )
        return cls(records)

    def to_csv(self) -> str:
        """CSV with a header; floats written with repr, so they read back exactly."""
        cols = self.columns()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in self.records:
            w.writerow([repr(getattr(r, c)) for c in cols])
        return buf.getvalue()


# --------------------------------------------------------------------------- optimizers


class Optimizer(Protocol):
    params: list[torch.Tensor]

    def step(self, grads: Sequence[torch.Tensor] | None = None) -> None: ...

    def state_tensors(self) -> dict[str, torch.Tensor]: ...

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None: ...


class LeanSGD:
    """``torch.optim.SGD``'s single-tensor update, without its per-step Python bookkeeping.

    The same operations in the same order (weight decay added to the gradient, a momentum
    buffer cloned from the first gradient then ``mul_(momentum).add_(grad)``, ``param.add_(
    grad, alpha=-lr)``), so the same bits; the optimizer's own step costs ~100 us of Python
    per call here, as much as a whole training step. Dampening 0, no Nesterov: the book's
    settings plus momentum and weight decay.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = list(params)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor] | None = None) -> None:
        if grads is None:
            grads = [p.grad for p in self.params]
        for i, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            if self.momentum != 0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = grad.detach().clone()
                else:
                    buf.mul_(self.momentum).add_(grad)
                grad = buf
            param.add_(grad, alpha=-self.lr)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"momentum.{i}": b for i, b in enumerate(self.buffers) if b is not None}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for i, p in enumerate(self.params):
            t = tensors.get(f"momentum.{i}")
            self.buffers[i] = None if t is None else t.to(p.device, p.dtype).clone()


class TorchOptimizer:
    """A ``torch.optim`` optimizer behind the same small interface (used for Adam)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params = [p for g in optimizer.param_groups for p in g["params"]]

    def step(self, grads: Sequence[torch.Tensor] | None = None) -> None:
        if grads is not None:
            for p, g in zip(self.params, grads, strict=True):
                p.grad = g
        self.optimizer.step()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for i, st in self.optimizer.state_dict()["state"].items():
            for k, v in st.items():
                out[f"{k}.{i}"] = torch.as_tensor(v)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        sd = self.optimizer.state_dict()
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            name, _, i = key.rpartition(".")
            state.setdefault(int(i), {})[name] = value.clone()
        sd["state"] = state
        self.optimizer.load_state_dict(sd)


def make_optimizer(config: TrainConfig, params: Sequence[torch.Tensor]) -> Optimizer:
    if config.optimizer == "sgd":
        return LeanSGD(params, config.lr, config.momentum, config.weight_decay)
    if config.optimizer == "adam":
        return TorchOptimizer(
            torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        )
    raise ConfigError(f"unknown optimizer {config.optimizer!r}")  # pragma: no cover


def make_loss(name: str) -> nn.Module:
    """The per-example (``reduction='none'``) loss module for ``config.loss``."""
    if name == "torch":
        return nn.CrossEntropyLoss(reduction="none")
    if name == "stable":
        return functional.CrossEntropyLoss(reduction="none")
    if name == "naive":
        return functional.NaiveCrossEntropyLoss(reduction="none")
    raise ConfigError(f"unknown loss {name!r}")  # pragma: no cover


# --------------------------------------------------------------------------- state


@dataclass
class TrainState:
    """Everything a run needs to continue after ``epoch`` completed epochs, bit for bit."""

    epoch: int
    weight: torch.Tensor
    bias: torch.Tensor
    optimizer: dict[str, torch.Tensor]
    generator: torch.Tensor  # the shuffling generator's state (uint8)
    history: History


@dataclass
class TrainResult:
    """What :func:`fit` returns: the trained model (on the CPU), its history and settings."""

    model: SoftmaxRegression
    history: History
    config: TrainConfig
    device: torch.device
    val_indices: torch.Tensor | None = None  # training-set indices held out for validation
    # What the model's inputs went through: /255 for pixels, standardisation if asked for.
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    @property
    def final(self) -> EpochRecord:
        assert self.history.last is not None
        return self.history.last


class Progress(Protocol):
    """What :func:`fit` reports while it runs (the CLI draws bars or lines from it)."""

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...

    def advance(self, steps: int) -> None: ...

    def epoch_end(self, record: EpochRecord) -> None: ...


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (None: leave torch's setting alone).

    Every op in this loop is small: split over threads, each op waits for the slowest one,
    and on a 2-core machine with anything else running that wait dominates (tens of
    milliseconds per op, measured). One thread also makes the results independent of the
    machine's core count.
    """
    if n is None or torch.get_num_threads() == n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (refcounting still frees everything
    this loop allocates). Its full collections walk every object torch's import created and
    took 70 ms each here, one every ninth epoch or so: 10% of a run."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _EvalSet:
    """An evaluation split, scored in chunks.

    Images are converted to float once per fit (a small copy: the book's case, and the fast
    one); float features are read in place, chunk by chunk, so a large set is never copied.
    With several ranks each scores its contiguous share; the counts are summed by the caller.
    """

    # Above this many bytes of float32, images are converted per chunk too.
    MATERIALIZE_BYTES = 256 << 20

    def __init__(
        self, data: Dataset, prep: Preprocessing, device: torch.device, world: World | None
    ) -> None:
        self.n = len(data)
        self.prep = prep.to(device)
        lo, hi = (0, self.n) if world is None else share(self.n, world.size, world.rank)
        self.labels = data.labels[lo:hi].to(device)
        if _streamed(data) and world is not None:  # this rank reads its share only
            data = data.share(world.size, world.rank)
            lo, hi = 0, len(data)
            self.labels = data.labels.to(device)
        self.data, self.lo, self.hi = data, lo, hi
        self.x: torch.Tensor | None = None
        if data.is_image and (hi - lo) * data.num_inputs * 4 <= self.MATERIALIZE_BYTES:
            images = data.images.reshape(self.n, -1)[lo:hi]
            self.x = prep(images).to(device)

    def _chunks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.x is not None:
            yield from zip(self.x.split(EVAL_CHUNK), self.labels.split(EVAL_CHUNK), strict=True)
            return
        data, device = self.data, self.labels.device
        if _streamed(data):
            for rows, labels in data.blocks():
                yield self.prep(rows.to(device)), labels.to(device)
            return
        for start in range(self.lo, self.hi, EVAL_CHUNK):
            pos = torch.arange(start, min(start + EVAL_CHUNK, self.hi), device=data.device)
            rows = data.rows(pos).to(device)
            yield self.prep(rows), self.labels[start - self.lo : start - self.lo + len(pos)]

    def correct(self, model: SoftmaxRegression) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.int64, device=self.labels.device)
        for xs, ys in self._chunks():
            total += (class_scores(model, xs).max(0).indices == ys).sum()
        return total

    def accuracy(self, model: SoftmaxRegression) -> float:
        return int(self.correct(model)) / max(self.n, 1)


def _accuracies(
    evals: list[_EvalSet | None], model: SoftmaxRegression, world: World | None
) -> list[float | None]:
    """Each set's accuracy; with several ranks, exact sums of every rank's correct count."""
    if world is None:
        return [e.accuracy(model) if e is not None else None for e in evals]
    counts = torch.stack([e.correct(model) if e is not None else _zero(model) for e in evals])
    counts = world.sum_(counts, "summing the evaluation counts").tolist()
    return [c / max(e.n, 1) if e is not None else None for e, c in zip(evals, counts, strict=True)]


def _streamed(data: Any) -> bool:
    """A split whose rows stay on disk (data/streamed.py), read block by block."""
    return getattr(data, "streamed", False)


def _zero(model: SoftmaxRegression) -> torch.Tensor:
    return torch.zeros((), dtype=torch.int64, device=model.weight.device)


def _non_finite_error(
    config: TrainConfig, epoch: int, step: int, steps: int, value: float, features: bool = False
) -> NonFiniteLossError:
    causes = []
    if features and not config.standardize:
        causes.append("raw features far outside [0, 1] (train with --standardize)")
    if not config.normalize and not features:
        causes.append("un-normalised 0-255 inputs (drop --no-normalize)")
    if config.loss == "naive":
        causes.append("the naive loss, which overflows exp and takes log(0) (use --loss torch)")
    causes.append(f"a learning rate too high (lr={config.lr:g}; try a smaller --lr)")
    err = NonFiniteLossError(
        f"training loss became {value} at epoch {epoch}, step {step} of {steps}; "
        f"likely cause: {'; or '.join(causes)}"
    )
    err.epoch, err.step = epoch, step
    return err


# --------------------------------------------------------------------------- fit


def fit(
    config: TrainConfig,
    train: Dataset,
    test: Dataset | None = None,
    *,
    state: TrainState | None = None,
    progress: Progress | None = None,
    on_epoch: Callable[[TrainState], None] | None = None,
    world: World | None = None,
) -> TrainResult:
    """Train softmax regression on ``train`` with ``config``; test accuracy after each epoch.

    Call it as often as you like with the same loaded data. ``state`` continues a run from a
    checkpoint (bit-identical to never having stopped); ``on_epoch`` receives a snapshot after
    every completed epoch (the run directory writes it as the resume checkpoint).

    ``world`` (from :func:`distributed.init <softmax_regression.distributed.init>`) trains
    data-parallel over its ranks: call ``fit`` on every rank with the same arguments; each
    returns the same result, and only rank 0 reports to ``progress``. A checkpoint from any
    number of ranks continues on any other number.

    Raises :class:`NonFiniteLossError` (naming the epoch and the first bad step) when a loss
    becomes nan or inf; checked every :data:`CHECK_EVERY` steps and at the end of each epoch.
    """
    config.validate()
    if world is not None and world.parallel:
        device = world.device
        _check_world(world, config, train, test, state)
        if not world.is_main:
            progress = None
    else:
        world = None
        device = resolve_device(config.device)
    val_idx = None
    val = None
    if config.val_split:
        train_idx, val_idx = split_validation(
            config.val_split, train.labels, config.seed, train.num_classes
        )
        val = train.subset(val_idx.to(train.device), split="val")
        train = train.subset(train_idx.to(train.device), split="train")
    if len(train) == 0:
        raise ConfigError("the training set is empty")
    for other in (test, val):
        if other is not None and other.input_shape != train.input_shape:
            raise ConfigError(
                f"the {other.split} split's inputs are {_shape(other)}, the training split's "
                f"{_shape(train)}"
            )
    # The statistics of the images trained on (after the validation split), as best-linear.
    prep = standardizer(train, config.normalize) if config.standardize else None
    prep = prep or Preprocessing(config.normalize)

    with cpu_threads(1 if device.type == "cpu" else None), _no_cyclic_gc():
        # Drawn on the CPU, so that a seed means the same model on every device.
        gen = torch.Generator().manual_seed(config.seed)
        model = SoftmaxRegression.seeded(gen, train.num_inputs, train.num_classes).to(device)
        optimizer = make_optimizer(config, list(model.parameters()))
        history = History()
        if state is not None:
            _restore(state, model, optimizer, gen)
            history = History(list(state.history.records))

        loop = _Loop(config, model, optimizer, train, device, world, prep)
        evals = [_EvalSet(d, prep, device, world) if d is not None else None for d in (test, val)]
        describe = getattr(progress, "describe_rows", None)
        if describe is not None:  # a bar counting rows and MB/s (progress.py)
            describe(loop.n, loop.b, train.num_inputs * (1 if train.is_image else 4))
        model.train()
        for epoch in range(len(history) + 1, config.epochs + 1):
            t0 = time.perf_counter()
            if progress is not None:
                progress.epoch_start(epoch, config.epochs, loop.steps)
            loss, acc = loop.epoch(gen, epoch, progress)
            model.eval()
            test_acc, val_acc = _accuracies(evals, model, world)
            model.train()
            record = EpochRecord(epoch, loss, acc, test_acc, val_acc, time.perf_counter() - t0)
            history.records.append(record)
            # The checkpoint first: an epoch whose report cannot be printed (a closed pipe)
            # is still kept.
            if on_epoch is not None:
                on_epoch(_snapshot(epoch, model, optimizer, gen, history))
            stopping.pause_point("epoch", epoch)  # (the test suite's; nothing otherwise)
            if progress is not None:
                progress.epoch_end(record)
        model.eval()
    return TrainResult(model.cpu(), history, config, device, val_idx, prep)


def _shape(data: Dataset) -> str:
    kind = "images" if data.is_image else "features"
    return f"{kind} {'x'.join(map(str, data.input_shape))}"


def check_world_size(world: World | None, config: TrainConfig) -> None:
    """Every rank must have a share of a full batch: a :class:`ConfigError` otherwise."""
    if world is not None and world.size > config.batch_size:
        raise ConfigError(
            f"world size {world.size} is larger than the batch size {config.batch_size}: "
            "every rank needs a share of each batch; start fewer ranks"
        )


def _check_world(
    world: World,
    config: TrainConfig,
    train: Dataset,
    test: Dataset | None,
    state: TrainState | None,
) -> None:
    """One clear error, on every rank, for a set-up that could only hang or diverge."""
    check_world_size(world, config)
    if config.device == "cuda" and world.device.type != "cuda":
        raise ConfigError("--device cuda was asked for, but the process group runs on the CPU")
    settings = {k: v for k, v in config.to_dict().items() if k not in ("data_dir", "device")}
    settings.update(
        device=world.device.type,
        training_images=len(train),
        test_images=None if test is None else len(test),
        data_sha256={**train.sha256, **(test.sha256 if test is not None else {})},
        resumed_from_epoch=None if state is None else state.epoch,
    )
    world.check_same(settings)


def _snapshot(
    epoch: int,
    model: SoftmaxRegression,
    optimizer: Optimizer,
    gen: torch.Generator,
    history: History,
) -> TrainState:
    return TrainState(
        epoch=epoch,
        weight=model.weight.detach().cpu().clone(),
        bias=model.bias.detach().cpu().clone(),
        optimizer={k: v.detach().cpu().clone() for k, v in optimizer.state_tensors().items()},
        generator=gen.get_state(),
        history=History(list(history.records)),
    )


def _restore(
    state: TrainState, model: SoftmaxRegression, optimizer: Optimizer, gen: torch.Generator
) -> None:
    with torch.no_grad():
        model.weight.copy_(state.weight)
        model.bias.copy_(state.bias)
    optimizer.load_state_tensors(state.optimizer)
    gen.set_state(state.generator)


class _Loop:
    """One epoch of training, either engine, with buffers allocated once per fit."""

    def __init__(
        self,
        config: TrainConfig,
        model: SoftmaxRegression,
        optimizer: Optimizer,
        train: Dataset,
        device: torch.device,
        world: World | None = None,
        prep: Preprocessing | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.optimizer = optimizer
        self.device = device
        self.world = world
        self.prep = (prep or Preprocessing(config.normalize)).to(device)
        # The whole storage, and (for a subset) which of its rows are this split's: a batch
        # gathers its rows straight from the storage, so a split copies nothing.
        self.streamed = _streamed(train)
        if self.streamed:  # rows come a window at a time (_epoch_streamed); none held here
            self.source = train
            self.images = torch.empty((0, train.num_inputs), device=device)
            self.index = None
        else:
            self.images = train.flat_inputs().to(device)
            self.index = None if train.index is None else train.index.to(device)
        self.labels = train.labels.to(device)
        self.n = len(train)
        self.k = model.weight.shape[0]
        self.b = b = min(config.batch_size, self.n)
        self.steps = -(-self.n // b)
        self.loss_sums = torch.empty(self.steps, dtype=torch.float32, device=device)
        if world is None:
            self.sizes = sorted({self.b, self.n - (self.steps - 1) * self.b})
        else:  # this rank's share of a full batch and of the last one
            last = self.n - (self.steps - 1) * self.b
            self.sizes = sorted(
                {hi - lo for lo, hi in (share(n, world.size, world.rank) for n in (b, last))}
            )
            self.global_sums = torch.empty(self.steps, dtype=torch.float64, device=device)
        if self.streamed:
            self._stream_batches(world)
        n_local = self.n if world is None else self._local_count()
        if self.streamed:
            n_local = len(self.source)
        self.preds = torch.empty(n_local, dtype=torch.int64, device=device)
        self.maxes = torch.empty(n_local, dtype=torch.float32, device=device)
        fast = config.resolved_engine == "fast"
        self.loss_sign = -1.0 if fast else 1.0
        self.load = self._loader()
        if world is None:
            self.step = self._fast_step() if fast else self._autograd_step()
        else:
            self.step = self._fast_step_dp() if fast else self._autograd_step_dp()

    def _rows(self, positions: torch.Tensor) -> torch.Tensor:
        """Storage rows of the split's examples at ``positions``."""
        return positions if self.index is None else self.index.index_select(0, positions)

    def _loader(self) -> Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], None]:
        """``load(rows, u8, x)``: gather storage ``rows`` into the float batch buffer ``x``
        (through the uint8 buffer ``u8`` for images), preprocessed as the model sees it.
        Streamed, the storage is the current window's buffer (``self.window``)."""
        images, prep = self.images, self.prep
        mean, std = prep.mean, prep.std
        if self.streamed:

            def load(rows, u8, x) -> None:
                torch.index_select(self.window, 0, rows, out=x)
                if mean is not None:
                    x.sub_(mean).div_(std)

        elif images.dtype == torch.uint8:
            normalize = prep.scale

            def load(rows, u8, x) -> None:
                torch.index_select(images, 0, rows, out=u8)
                images_to_float(u8, normalize, out=x)  # ToTensor's division, bit for bit
                if mean is not None:
                    x.sub_(mean).div_(std)

        else:

            def load(rows, u8, x) -> None:
                torch.index_select(images, 0, rows, out=x)
                if mean is not None:
                    x.sub_(mean).div_(std)

        return load

    def _stream_batches(self, world: World | None) -> None:
        """Each step's batch size here (``self.batch_sizes``) and over all ranks
        (``self.global_sizes``) for a streamed split.

        In one process, the in-memory sizes. With several ranks, each reads only its share of
        the rows (``share``) and cuts them into its share of a batch, as even as possible: a
        rank that runs out early takes empty batches, and its last batch takes what is left;
        a step's global batch is the sum of the ranks' (the gradient is divided by it)."""
        n, b, steps = self.n, self.b, self.steps
        if world is None:
            self.batch_sizes = [b] * (steps - 1) + [n - (steps - 1) * b]
            self.global_sizes = self.batch_sizes
            return
        every = []
        for rank in range(world.size):
            lo, hi = share(n, world.size, rank)
            blo, bhi = share(b, world.size, rank)
            mine, per = hi - lo, bhi - blo
            sizes = [min(per, max(0, mine - i * per)) for i in range(steps - 1)]
            every.append([*sizes, mine - sum(sizes)])
        self.global_sizes = [sum(col) for col in zip(*every, strict=True)]
        if min(self.global_sizes) == 0:
            raise ConfigError(
                f"{world.size} ranks with {n:,} examples and batch size {b} leave a step with "
                "no examples; use fewer ranks or a smaller batch"
            )
        self.batch_sizes = every[world.rank]
        self.source = self.source.share(world.size, world.rank)
        self.sizes = sorted(set(self.batch_sizes))

    def _local_count(self) -> int:
        assert self.world is not None
        full, rest = divmod(self.n, self.b)
        lo, hi = share(self.b, self.world.size, self.world.rank)
        rlo, rhi = share(rest, self.world.size, self.world.rank)
        return full * (hi - lo) + (rhi - rlo)

    def epoch(
        self, gen: torch.Generator, epoch: int, progress: Progress | None
    ) -> tuple[float, float]:
        """Train one epoch; return (train loss, train accuracy) as the book defines them."""
        if self.streamed:
            return self._epoch_streamed(gen, epoch, progress)
        if self.world is not None:
            return self._epoch_dp(gen, epoch, progress)
        perm = torch.randperm(self.n, generator=gen).to(self.device)
        labels = self.labels.index_select(0, perm)
        b, step, loss_sums, steps = self.b, self.step, self.loss_sums, self.steps
        batches = zip(
            self._rows(perm).split(b),
            labels.unsqueeze(0).split(b, dim=1),
            self.preds.split(b),
            self.maxes.split(b),
            loss_sums.unbind(0),
            strict=True,
        )
        checked = 0
        for i, (idx, y, pred, mx, loss_sum) in enumerate(batches, start=1):
            step(idx, y, pred, mx, loss_sum)
            if i % CHECK_EVERY == 0 or i == steps:
                # The one host sync in here: a window sum is finite iff every step in it was.
                if not bool(torch.isfinite(loss_sums[checked:i].sum())):
                    self._raise_non_finite(epoch, checked, i)
                if progress is not None:
                    progress.advance(i - checked)
                checked = i
        total = 0.0
        for v in loss_sums.tolist():  # float64 running sum, as the book's Accumulator
            total += v
        correct = int((self.preds == labels).sum())
        return self.loss_sign * total / self.n, correct / self.n

    def _epoch_streamed(
        self, gen: torch.Generator, epoch: int, progress: Progress | None
    ) -> tuple[float, float]:
        """:meth:`epoch` over rows read from disk, shuffled in blocks.

        The order of the storage's blocks is a seeded permutation (none is drawn for a single
        block); consecutive runs of :data:`~softmax_regression.data.streamed.WINDOW_BLOCKS` of
        them form a window, whose rows (this split's only) are permuted with the same
        generator. The epoch's order is the windows' permuted rows one after the other, cut
        into batches as in memory: a batch may take the last rows of one window and the first
        of the next. With one block this is the in-memory epoch, bit for bit.

        With several ranks, each does this over its own share of the rows with its own
        generator, seeded by one draw from ``gen`` (so ``gen`` stays the same on every rank)
        plus its rank, in its share of every batch (:meth:`_stream_batches`); the gradients,
        losses and counts are summed as in :meth:`_epoch_dp`.
        """
        from .data.streamed import WINDOW_BLOCKS, block_windows

        data, world = self.source, self.world
        n, step, steps, device = self.n, self.step, self.steps, self.device
        sizes, global_sizes = self.batch_sizes, self.global_sizes
        if world is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=gen))
            gen = torch.Generator().manual_seed(seed + world.rank)
        windows = block_windows(data.num_blocks, WINDOW_BLOCKS, gen)
        order = [k for w in windows for k in w]
        if not hasattr(self, "window_x"):
            rows = data.source.block_rows * WINDOW_BLOCKS + max(self.sizes)
            self.window_x = torch.empty((rows, self.images.shape[1]), device=device)
            self.window_y = torch.empty(rows, dtype=torch.int64, device=device)
            self.in_order = torch.empty(len(data), dtype=torch.int64, device=device)
        wx, wy, in_order, loss_sums = self.window_x, self.window_y, self.in_order, self.loss_sums
        reader = data.blocks(order)
        carry, done, checked, i = 0, 0, 0, 0
        for w, blocks in enumerate(windows):
            fill = carry
            for _ in blocks:
                rows, labels = next(reader)
                k = len(labels)
                wx[fill : fill + k].copy_(rows)
                wy[fill : fill + k].copy_(labels)
                fill += k
            perm = torch.randperm(fill - carry, generator=gen).to(device).add_(carry)
            pos = torch.cat([torch.arange(carry, device=device), perm])
            last = w == len(windows) - 1
            self.window = wx
            at = 0
            while i < steps and (last or at + sizes[i] <= fill):
                k = sizes[i]
                idx = pos[at : at + k]
                y = wy.index_select(0, idx)
                in_order[done : done + k].copy_(y)
                args = (idx, y.unsqueeze(0), self.preds[done : done + k])
                args += (self.maxes[done : done + k], loss_sums[i])
                i += 1
                if world is None:
                    step(*args)
                else:
                    step(*args, global_sizes[i - 1], epoch, i)
                at, done = at + k, done + k
                if i % CHECK_EVERY == 0 or i == steps:
                    window = loss_sums[checked:i]
                    if world is not None:
                        window = self.global_sums[checked:i]
                        window.copy_(loss_sums[checked:i])
                        world.sum_(window, f"summing the losses of epoch {epoch}, step {i}")
                    if not bool(torch.isfinite(window.sum())):
                        self._raise_non_finite(
                            epoch, checked, i, None if world is None else self.global_sums
                        )
                    if progress is not None:
                        progress.advance(i - checked)
                    checked = i
            rest = pos[at:fill]
            carry = len(rest)
            if carry:  # the rows of a batch not yet full go first in the next window
                wx[:carry] = wx.index_select(0, rest)
                wy[:carry] = wy.index_select(0, rest)
        for _ in reader:  # the end-of-pass check of the files
            pass
        assert done == len(data) and i == steps
        total = 0.0
        for v in (loss_sums if world is None else self.global_sums).tolist():
            total += v
        correct = (self.preds == in_order).sum().reshape(1)
        if world is not None:
            world.sum_(correct, f"summing the correct counts of epoch {epoch}")
        return self.loss_sign * total / n, int(correct) / n

    def _epoch_dp(
        self, gen: torch.Generator, epoch: int, progress: Progress | None
    ) -> tuple[float, float]:
        """:meth:`epoch` on this rank's share of every batch of the same global permutation.

        The per-step loss sums are reduced (float64) at each finiteness check, so that every
        rank sees the same window and raises the same error; the correct counts at the end.
        """
        world = self.world
        assert world is not None
        perm = torch.randperm(self.n, generator=gen).to(self.device)
        idx, sizes = local_indices(perm, self.b, world.size, world.rank)
        labels = self.labels.index_select(0, idx)
        b, n, step, steps = self.b, self.n, self.step, self.steps
        loss_sums, global_sums = self.loss_sums, self.global_sums
        batches = zip(
            self._rows(idx).split(sizes),
            labels.unsqueeze(0).split(sizes, dim=1),
            self.preds.split(sizes),
            self.maxes.split(sizes),
            loss_sums.unbind(0),
            strict=True,
        )
        checked = 0
        for i, (ix, y, pred, mx, loss_sum) in enumerate(batches, start=1):
            step(ix, y, pred, mx, loss_sum, min(b, n - (i - 1) * b), epoch, i)
            if i % CHECK_EVERY == 0 or i == steps:
                window = global_sums[checked:i]
                window.copy_(loss_sums[checked:i])
                world.sum_(window, f"summing the losses of epoch {epoch}, step {i}")
                if not bool(torch.isfinite(window.sum())):
                    self._raise_non_finite(epoch, checked, i, global_sums)
                if progress is not None:
                    progress.advance(i - checked)
                checked = i
        total = 0.0
        for v in global_sums.tolist():
            total += v
        correct = (self.preds == labels).sum().reshape(1)
        correct = int(world.sum_(correct, f"summing the correct counts of epoch {epoch}"))
        return self.loss_sign * total / n, correct / n

    def _raise_non_finite(
        self, epoch: int, lo: int, hi: int, sums: torch.Tensor | None = None
    ) -> None:
        window = (self.loss_sums if sums is None else sums)[lo:hi]
        bad = (~torch.isfinite(window)).nonzero()
        if bad.numel() == 0:  # finite steps whose sum overflowed: not a bad step
            return
        k = int(bad[0, 0])
        value = self.loss_sign * float(window[k])
        features = self.images.dtype != torch.uint8
        raise _non_finite_error(self.config, epoch, lo + k + 1, self.steps, value, features)

    def _buffers(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """(uint8, float32) batch buffers by batch size, views of one allocation: fresh 800 KB
        tensors every step cost page faults on top of the copies."""
        d, most = self.images.shape[1], max(self.sizes)
        x = torch.empty((most, d), dtype=torch.float32, device=self.device)
        if self.images.dtype != torch.uint8:
            return {n: (None, x[:n]) for n in self.sizes}
        u8 = torch.empty((most, d), dtype=torch.uint8, device=self.device)
        return {n: (u8[:n], x[:n]) for n in self.sizes}

    def _fast_step(self) -> Callable[..., None]:
        """The closed-form step. Logits are kept as (classes, batch): for this thin model
        that layout makes the products and the row-wise softmax about twice as fast."""
        load = self.load
        w, b = self.model.weight.detach(), self.model.bias.detach()  # same storage
        b_col = b.unsqueeze(1)
        opt = self.optimizer
        plain = isinstance(opt, LeanSGD) and opt.momentum == 0 and opt.weight_decay == 0
        lr = opt.lr if isinstance(opt, LeanSGD) else 0.0
        grad_w = torch.empty_like(w)
        ones = torch.ones(self.b, device=self.device)
        scores = torch.empty((self.k, self.b), device=self.device)
        minus_one = torch.full((1, self.b), -1.0, device=self.device)
        views = {
            n: (u8, x, x.t(), scores[:, :n], minus_one[:, :n], ones[:n])
            for n, (u8, x) in self._buffers().items()
        }

        @torch.no_grad()
        def step(idx, y, pred, mx, loss_sum) -> None:
            n = idx.shape[0]
            u8, x, xt, o, m1, one = views[n]
            load(idx, u8, x)
            torch.addmm(b_col, w, xt, out=o)  # logits, (classes, n)
            torch.max(o, 0, out=(mx, pred))  # first maximum, as argmax
            lsm = torch.log_softmax(o, 0)
            torch.sum(lsm.gather(0, y), (0, 1), out=loss_sum)  # minus the loss sum
            # n * d mean(-log softmax(o)[y]) / do = softmax(o) - onehot(y)
            g = lsm.exp_().scatter_add_(0, y, m1)
            if plain:  # the book's SGD, fused: w -= lr/n * g x, b -= lr/n * g 1
                w.addmm_(g, x, alpha=-lr / n)
                b.addmv_(g, one, alpha=-lr / n)
            else:
                g.div_(n)
                torch.mm(g, x, out=grad_w)
                opt.step((grad_w, g.sum(1)))

        return step

    def _autograd_step(self) -> Callable[..., None]:
        """The book's step: forward, per-example loss, ``l.mean().backward()``, update."""
        load = self.load
        model, opt = self.model, self.optimizer
        loss_fn = make_loss(self.config.loss)
        views = self._buffers()

        def step(idx, y, pred, mx, loss_sum) -> None:
            u8, x = views[idx.shape[0]]
            load(idx, u8, x)
            y = y.squeeze(0)
            out = model(x)
            losses = loss_fn(out, y)
            for p in opt.params:
                p.grad = None  # optimizer.zero_grad(): set_to_none
            losses.mean().backward()
            opt.step()
            with torch.no_grad():
                torch.sum(losses.detach(), 0, out=loss_sum)
                torch.argmax(out.detach(), 1, out=pred)

        return step

    # ----------------------------------------------------------- data-parallel steps

    def _grad_buffer(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One flat buffer for both gradients, so that each step is a single all-reduce."""
        w = self.model.weight
        flat = torch.empty(w.numel() + w.shape[0], device=self.device)
        return flat, flat[: w.numel()].view(w.shape), flat[w.numel() :]

    def _fast_step_dp(self) -> Callable[..., None]:
        """The closed-form step on this rank's share: the gradient *sum* over the share,
        all-reduced, then divided by the global batch size ``n``: the single-process gradient
        of the mean loss, summed in another order."""
        load, world = self.load, self.world
        assert world is not None
        w, b = self.model.weight.detach(), self.model.bias.detach()
        b_col = b.unsqueeze(1)
        opt = self.optimizer
        plain = isinstance(opt, LeanSGD) and opt.momentum == 0 and opt.weight_decay == 0
        lr = opt.lr if isinstance(opt, LeanSGD) else 0.0
        flat, grad_w, grad_b = self._grad_buffer()
        most = max(self.sizes)
        scores = torch.empty((self.k, most), device=self.device)
        minus_one = torch.full((1, most), -1.0, device=self.device)
        views = {
            k: (u8, x, x.t(), scores[:, :k], minus_one[:, :k])
            for k, (u8, x) in self._buffers().items()
        }

        @torch.no_grad()
        def step(idx, y, pred, mx, loss_sum, n, epoch, i) -> None:
            k = idx.shape[0]
            if k:
                u8, x, xt, o, m1 = views[k]
                load(idx, u8, x)
                torch.addmm(b_col, w, xt, out=o)
                torch.max(o, 0, out=(mx, pred))
                lsm = torch.log_softmax(o, 0)
                torch.sum(lsm.gather(0, y), (0, 1), out=loss_sum)
                g = lsm.exp_().scatter_add_(0, y, m1)
                torch.mm(g, x, out=grad_w)
                torch.sum(g, 1, out=grad_b)
            else:  # nothing of this batch here: contribute zeros, but join the all-reduce
                flat.zero_()
                loss_sum.zero_()
            world.sum_(flat, f"summing the gradients of epoch {epoch}, step {i}")
            if plain:
                w.add_(grad_w, alpha=-lr / n)
                b.add_(grad_b, alpha=-lr / n)
            else:
                flat.div_(n)
                opt.step((grad_w, grad_b))

        return step

    def _autograd_step_dp(self) -> Callable[..., None]:
        """The book's step on this rank's share: ``(l.sum() / n).backward()`` is this rank's
        part of ``l.mean()`` over the global batch of ``n``; the parts are all-reduced."""
        load, world = self.load, self.world
        assert world is not None
        model, opt = self.model, self.optimizer
        loss_fn = make_loss(self.config.loss)
        views = self._buffers()
        flat, grad_w, grad_b = self._grad_buffer()
        weight, bias = model.weight, model.bias

        def step(idx, y, pred, mx, loss_sum, n, epoch, i) -> None:
            u8, x = views[idx.shape[0]]
            load(idx, u8, x)
            y = y.squeeze(0)
            out = model(x)
            losses = loss_fn(out, y)
            for p in opt.params:
                p.grad = None
            (losses.sum() / n).backward()
            with torch.no_grad():
                grad_w.copy_(weight.grad)
                grad_b.copy_(bias.grad)
                world.sum_(flat, f"summing the gradients of epoch {epoch}, step {i}")
                weight.grad.copy_(grad_w)
                bias.grad.copy_(grad_b)
            opt.step()
            with torch.no_grad():
                torch.sum(losses.detach(), 0, out=loss_sum)
                torch.argmax(out.detach(), 1, out=pred)

        return step
