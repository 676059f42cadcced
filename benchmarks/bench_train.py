"""The trainer's speed and memory, beside the book's chapter code, in one run.

(a) The 10-epoch training loop with the data already in memory (``fit(TrainConfig())``:
    10 epochs of the book's SGD plus test accuracy after each), Python and imports excluded,
    timed ``--repeats`` times after one warm-up; beside it, in the same process and on the
    same data, the autograd engine and a plain in-memory loop written the usual way (fancy
    indexing, ``nn.Linear``, ``nn.CrossEntropyLoss``, ``torch.optim.SGD``). Target: median
    at most 1.0 s.
(b) The whole ``softmax-regression train`` process beside the book's concise chapter run
    with the real ``d2l==0.17.6`` + torchvision (``--refenv``, made by
    benchmarks/reference_env.sh), the two alternating. Both read the same extracted IDX files
    (the book from ``../data/FashionMNIST/raw`` as torchvision expects, ours through
    ``--data-dir``, with an empty user cache so it verifies the checksums every time).
    Target: at least 20x faster.
(c) Peak RSS of the ``train`` process (``wait4``: that child alone). Target: at most 600 MB.

    .venv/bin/python benchmarks/bench_train.py [--repeats 7] [--ours-runs 3] [--book-runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import add_refenv_argument, extract_dataset

# The book's concise chapter (d2l 0.17.6), verbatim; its train_ch3 only draws, so the lines
# after the import print what its Animator is given.
BOOK_CHAPTER = """\
import torch
from torch import nn
from d2l import torch as d2l

_book_add = d2l.Animator.add
def _print_and_add(self, x, y):
    print(f"epoch {x}: train loss {y[0]:.4f}, train acc {y[1]:.4f}, test acc {y[2]:.4f}",
          flush=True)
    _book_add(self, x, y)
d2l.Animator.add = _print_and_add

batch_size = 256
train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size)
net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

def init_weights(m):
    if type(m) == nn.Linear:
        nn.init.normal_(m.weight, std=0.01)

net.apply(init_weights);
loss = nn.CrossEntropyLoss(reduction='none')
trainer = torch.optim.SGD(net.parameters(), lr=0.1)
num_epochs = 10
d2l.train_ch3(net, train_iter, test_iter, loss, num_epochs, trainer)
"""
BOOK_EPOCH = re.compile(
    r"^epoch (\d+): train loss ([\d.]+), train acc ([\d.]+), test acc ([\d.]+)$", re.M
)
OUR_FINAL = re.compile(r"train loss ([\d.]+), train acc ([\d.]+), test acc ([\d.]+)")


# --------------------------------------------------------------------------- (a) the loop


def plain_loop(train, test, epochs: int = 10, seed: int = 0) -> tuple[float, float, float]:
    """The usual in-memory loop: what the book's code becomes without a DataLoader."""
    import torch
    from torch import nn

    from softmax_regression.metrics import EpochMeter

    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    nn.init.normal_(net[1].weight, std=0.01)
    loss = nn.CrossEntropyLoss(reduction="none")
    trainer = torch.optim.SGD(net.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(seed)
    x_test = test.images.float() / 255
    for _ in range(epochs):
        meter = EpochMeter()
        for idx in torch.randperm(len(train), generator=g).split(256):
            X, y = train.images[idx].float() / 255, train.labels[idx]
            y_hat = net(X)
            l = loss(y_hat, y)  # noqa: E741 (the book's name)
            trainer.zero_grad()
            l.mean().backward()
            trainer.step()
            meter.update(l.sum(), y_hat, y)
        with torch.no_grad():
            test_acc = float((net(x_test).argmax(1) == test.labels).float().mean())
    return meter.loss, meter.accuracy, test_acc


def time_loops(repeats: int) -> dict:
    import torch

    from softmax_regression.config import TrainConfig
    from softmax_regression.data import load_fashion_mnist
    from softmax_regression.train import cpu_threads, fit

    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    out = {}

    def bench(name: str, fn, n: int) -> None:
        fn()  # warm-up: first-call allocations and lazy initialisation
        walls, cpus, final = [], [], None
        for _ in range(n):
            t, c = time.perf_counter(), time.process_time()
            final = fn()
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        out[name] = {"wall_s": walls, "cpu_s": cpus, "final": final}
        sd = statistics.stdev(walls) if len(walls) > 1 else 0.0
        print(
            f"  {name:34s} median {statistics.median(walls):6.3f} s  min {min(walls):6.3f}  "
            f"mean {statistics.mean(walls):6.3f} +- {sd:5.3f}  (CPU median "
            f"{statistics.median(cpus):.3f} s; final loss/acc/test {final[0]:.4f} "
            f"{final[1]:.4f} {final[2]:.4f})",
            flush=True,
        )

    def ours(engine: str):
        f = fit(TrainConfig(engine=engine), train, test).final
        return f.train_loss, f.train_acc, f.test_acc

    def plain():
        with cpu_threads(1):  # the same single thread, or it is slower still on 2 busy cores
            return plain_loop(train, test)

    print(f"(a) 10 epochs with the data in memory (torch {torch.__version__}):", flush=True)
    bench("fit, fast engine (default)", lambda: ours("fast"), repeats)
    bench("fit, autograd engine", lambda: ours("autograd"), max(3, repeats // 2))
    bench("plain loop, torch.optim.SGD", plain, max(3, repeats // 2))
    return out


# --------------------------------------------------------------------------- (b), (c) processes


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """Run one process to completion: wall time, its own peak RSS (wait4), its output."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if code != 0:
        sys.exit(f"{' '.join(argv)} exited with {code}:\n{text[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "output": text}


def time_processes(ours_runs: int, book_runs: int, refenv: str) -> dict:
    book_python = str(Path(refenv) / "bin" / "python")
    have_book = book_runs > 0 and os.access(book_python, os.X_OK)
    if book_runs > 0 and not have_book:
        print(f"no reference environment at {refenv} (benchmarks/reference_env.sh): book skipped")
    cli = str(Path(sys.executable).with_name("softmax-regression"))
    results: dict[str, list[dict]] = {"ours": [], "book": []}
    print("(b) whole processes, alternating:", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        raw = tmp / "data" / "FashionMNIST" / "raw"
        extract_dataset(raw)
        workdir = tmp / "chapter"  # ../data from here is the dataset, as in the book
        workdir.mkdir()
        (workdir / "book.py").write_text(BOOK_CHAPTER, encoding="utf-8")
        base = {k: v for k, v in os.environ.items() if not k.startswith("SOFTMAX_REGRESSION")}
        # Ours first, then the book between ours, so that both see the same machine.
        order = ["ours"] * ours_runs
        for k in range(book_runs if have_book else 0):
            order.insert(min(1 + 2 * k, len(order)), "book")
        for i, side in enumerate(order):
            env = dict(base)
            if side == "ours":
                env["XDG_CACHE_HOME"] = str(tmp / f"cache-{i}")  # nothing verified yet
                argv = [cli, "train", "--data-dir", str(raw), "--out", str(tmp / f"run-{i}")]
            else:
                argv = [book_python, "book.py"]
            r = run(argv, workdir, env)
            if side == "ours":
                found = OUR_FINAL.findall(r["output"])
                numbers = found[-1] if found else None
            else:
                epochs = BOOK_EPOCH.findall(r["output"])
                numbers = epochs[-1][1:] if len(epochs) == 10 else None
            if numbers is None:
                sys.exit(f"{side}: no final numbers in its output:\n{r['output'][-3000:]}")
            final = tuple(map(float, numbers))
            r.update(final=final, load_avg_after=os.getloadavg()[0])
            del r["output"]
            results[side].append(r)
            print(
                f"  {side:4s}: {r['wall_s']:6.2f} s, peak RSS {r['peak_rss_mb']:5.0f} MB, final "
                f"train loss {final[0]:.4f}, train acc {final[1]:.4f}, test acc {final[2]:.4f} "
                f"(load average {r['load_avg_after']:.1f})",
                flush=True,
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of the loop")
    parser.add_argument("--ours-runs", type=int, default=3, help="train processes of ours")
    parser.add_argument("--book-runs", type=int, default=1, help="runs of the book's chapter")
    add_refenv_argument(parser)
    parser.add_argument("--skip-loop", action="store_true", help="only (b) and (c)")
    parser.add_argument("--json", help="also write the raw measurements here")
    args = parser.parse_args()
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )
    results: dict = {}
    if not args.skip_loop:
        results["loop"] = time_loops(args.repeats)
    results["process"] = procs = time_processes(args.ours_runs, args.book_runs, args.refenv)

    print("\nsummary:")
    if "loop" in results:
        fast = statistics.median(results["loop"]["fit, fast engine (default)"]["wall_s"])
        print(f"  (a) 10-epoch loop, data in memory: median {fast:.3f} s (target <= 1.0 s)")
    ours = statistics.median(r["wall_s"] for r in procs["ours"])
    rss = max(r["peak_rss_mb"] for r in procs["ours"])
    if procs["book"]:
        book = statistics.median(r["wall_s"] for r in procs["book"])
        print(
            f"  (b) whole process: book {book:.1f} s, ours {ours:.2f} s (median): "
            f"{book / ours:.1f}x faster (target >= 20x)"
        )
    else:
        print(f"  (b) whole process: ours {ours:.2f} s (median); book not run")
    print(f"  (c) peak RSS of train: {rss:.0f} MB (target <= 600 MB)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
