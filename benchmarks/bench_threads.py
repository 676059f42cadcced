"""Where intra-op threads start to pay for the book's training step: 1 thread against torch's
default, per batch, for softmax regression and MLPs of growing width.

One training step of ``train_epoch_ch3`` with an optimizer (forward, per-example
cross-entropy, ``mean().backward()``, SGD step) on a batch of 256 Fashion-MNIST-shaped
inputs, for ``Linear(784, 10)`` and ``784-h-10`` MLPs. Reports the median milliseconds per
step of each setting (alternating, ``--repeats`` blocks of ``--steps`` steps) and the work
per batch (parameter elements x batch size) that softmax_regression.d2l's thread rule uses,
plus the 1-minute load average (other work on the machine).

    .venv/bin/python benchmarks/bench_threads.py [--hidden 0,16,32,64,128,256,512]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn


def step_ms(net, X, y, threads: int, steps: int) -> float:
    loss = nn.CrossEntropyLoss(reduction="none")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    torch.set_num_threads(threads)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss(net(X), y).mean().backward()
        opt.step()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", default="0,16,32,64,128,256,512")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    many = torch.get_num_threads()
    torch.manual_seed(0)
    X, y = torch.rand(256, 1, 28, 28), torch.randint(0, 10, (256,))
    print(f"torch {torch.__version__}, default threads {many}, {os.cpu_count()} CPUs")
    for h in (int(v) for v in args.hidden.split(",")):
        layers = (
            [nn.Linear(784, 10)] if h == 0 else [nn.Linear(784, h), nn.ReLU(), nn.Linear(h, 10)]
        )
        net = nn.Sequential(nn.Flatten(), *layers)
        params = sum(p.numel() for p in net.parameters())
        times: dict[int, list[float]] = {1: [], many: []}
        load = os.getloadavg()[0]
        for _ in range(args.repeats):
            for threads in times:
                times[threads].append(step_ms(net, X, y, threads, args.steps))
        one, multi = statistics.median(times[1]), statistics.median(times[many])
        print(
            f"{'softmax' if h == 0 else f'784-{h}-10':>10s}: {params:7d} parameters, work "
            f"{params * 256 / 1e6:6.1f}M; 1 thread {one:7.2f} ms, {many} threads {multi:7.2f} ms "
            f"({one / multi:.2f}x; load average {load:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
