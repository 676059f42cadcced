"""How many CPU threads the book's loops run on: chosen from the work of one batch.

Softmax regression (7,850 parameters, batches of 256) is too small for intra-op threads:
each op is split, every thread waits for the slowest, and on a busy machine that wait costs
more than the work. A multilayer perceptron (784-256-10: 203,530 parameters) does 26 times
the arithmetic per batch, which threads can share on an idle machine, but not on a busy one:
with other processes on every core, a thread that loses its core holds up each op for a time
slice, and two threads made an MLP batch 8 times slower than one here, a softmax batch 20
times (BENCHMARKS.md, "Threads"). Whether threads pay thus depends on the machine's load as
much as on the model, so the rule has two steps:

1. The work of a batch: the parameter elements its autograd graph updates times the batch
   size (the multiply-adds of a dense forward pass). Below ``MIN_WORK_FOR_THREADS`` the loop
   runs on one thread, and nothing is tried.
2. Above it, the first training epoch of a net times ``TRIAL_BATCHES`` batches on one thread
   and as many on torch's own setting (one thread per physical core by default), and keeps
   the faster for the rest of the process, for that net's training and evaluation alike.

The parameters are read from the graph (the leaves that receive a gradient), so the rule
works for modules and for the book's from-scratch functions over ``W`` and ``b`` alike. The
thread setting is restored when each loop ends.

A loop the reader wrote (chapter 3.6 as printed defines its own ``train_epoch_ch3``) cannot
be looked into, but it iterates the drop-in's batches: while it does (``paced``), the same
trial runs on the time between two batches, kept per batch iterable; an iterable of fewer
than ``2 * TRIAL_BATCHES`` batches runs on one thread. The setting is restored when the pass
ends (or is abandoned, as ``for X, y in test_iter: break`` does).
"""

from __future__ import annotations

import contextlib
import statistics
import time
import weakref
from collections.abc import Iterator

import torch

# Multiply-adds per batch (parameter elements x examples) below which one thread is taken
# without trying: 4x softmax regression's 2.0M, where threads lost at every load measured.
# Above it the trial decides, so the exact value only saves or costs six timed batches.
MIN_WORK_FOR_THREADS = 8_000_000
# Batches timed on each setting; their median decides.
TRIAL_BATCHES = 3

# Thread counts chosen per net (modules and functions alike, held weakly), and per batch
# iterable for the reader's own loops.
_chosen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# How many of the package's own loops are running: inside one, the batch iterables leave the
# thread count to it.
_managed = 0


def graph_parameters(output: torch.Tensor) -> int:
    """Elements of the distinct leaf tensors that ``output``'s autograd graph would update."""
    seen: set[int] = set()
    leaves: dict[int, int] = {}
    stack = [output.grad_fn] if output.grad_fn is not None else []
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        variable = getattr(fn, "variable", None)  # AccumulateGrad: a leaf that gets a gradient
        if variable is not None:
            leaves[id(variable)] = variable.numel()
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return sum(leaves.values())


def chosen_threads(net) -> int | None:
    """The thread count chosen for ``net`` by an earlier training loop, if any."""
    try:
        return _chosen.get(net)
    except TypeError:  # not weakly referenceable
        return None


def _choose(net, threads: int) -> None:
    with contextlib.suppress(TypeError):  # not weakly referenceable: tried again next time
        _chosen[net] = threads


class _Trial:
    """Times ``TRIAL_BATCHES`` batches on one thread, then as many on ``many`` threads."""

    def __init__(self, many: int) -> None:
        self.many = many
        self.starts = [time.perf_counter()]

    def tick(self) -> int | None:
        """Call at the start of each later batch; returns the choice once made."""
        self.starts.append(time.perf_counter())
        n = len(self.starts) - 1  # batches timed so far
        if n == TRIAL_BATCHES:
            torch.set_num_threads(self.many)
        elif n == 2 * TRIAL_BATCHES:
            times = [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]
            one = statistics.median(times[:TRIAL_BATCHES])
            many = statistics.median(times[TRIAL_BATCHES:])
            return self.many if many < one else 1
        return None


def paced(owner, batches: Iterator, count: int) -> Iterator:
    """Yield ``batches`` (``count`` of them, from ``owner``) with the thread count that suits
    the reader's loop over them; see the module docstring."""
    before = torch.get_num_threads()
    if _managed or before == 1:
        yield from batches
        return
    choice = chosen_threads(owner)
    if choice is None and count < 2 * TRIAL_BATCHES:
        choice = 1
    torch.set_num_threads(choice or 1)
    trial = None
    try:
        for i, batch in enumerate(batches):
            if choice is None:
                if i == 0:
                    trial = _Trial(before)
                elif trial is not None and (decided := trial.tick()) is not None:
                    choice = decided
                    _choose(owner, choice)
                    torch.set_num_threads(choice)
            yield batch
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


class threads_for:  # noqa: N801 (used as a context manager, like torch.no_grad)
    """Run a loop over ``net``'s batches on the thread count that suits them.

    Call ``batch(n, loss)`` once per batch, after the loss is computed (``loss`` None in
    evaluation). Starts on one thread (or on the count chosen before for ``net``).
    """

    def __init__(self, net) -> None:
        self.net = net
        self.calls = 0
        self.trial: _Trial | None = None

    def __enter__(self) -> threads_for:
        global _managed
        _managed += 1
        self.before = torch.get_num_threads()
        self._set(chosen_threads(self.net) or 1)
        return self

    def _set(self, n: int) -> None:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def batch(self, batch_size: int, loss: torch.Tensor | None = None) -> None:
        self.calls += 1
        if self.trial is not None:
            choice = self.trial.tick()
            if choice is not None:
                _choose(self.net, choice)
                self._set(choice)
                self.trial = None
        elif self.calls == 1 and self.before > 1 and chosen_threads(self.net) is None:
            if loss is None or loss.grad_fn is None:
                return  # evaluation of a net not trained here: one thread
            if graph_parameters(loss) * batch_size < MIN_WORK_FOR_THREADS:
                _choose(self.net, 1)
                return
            self.trial = _Trial(self.before)

    def __exit__(self, *exc) -> None:
        global _managed
        _managed -= 1
        self._set(self.before)
