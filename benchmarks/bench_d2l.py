"""The book's chapter code end to end: ``softmax_regression.d2l`` beside the real d2l 0.17.6.

Runs the concise softmax regression chapter (tests/chapter/concise.py: load Fashion-MNIST,
10 epochs of ``train_ch3``) as a whole process, once with ``from softmax_regression import
d2l`` and once with ``from d2l import torch as d2l`` (torchvision, 4-worker DataLoaders) in the
reference environment (``--refenv``, made by benchmarks/reference_env.sh), alternating the two
sides, ``--runs`` times each. Both read the same extracted IDX files from ``../data``, laid out
in a temporary directory as the book expects; nothing touches the network. Each of our runs
starts with an empty user cache, so it decompresses nothing but hashes both splits again.

The book's side prints nothing per epoch, so a few lines after its import line print what
its ``Animator`` is given. Reports wall time of the whole process, peak RSS and the final
figures of each run; the target is at least 15x faster with the same final figures.

    .venv/bin/python benchmarks/bench_d2l.py [--runs 2] [--refenv DIR]   # $REFENV, else .refenv
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
from pathlib import Path

from _common import add_refenv_argument, extract_dataset, run_process

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "tests" / "chapter" / "concise.py"
OUR_IMPORT = "from softmax_regression import d2l"
BOOK_IMPORT = "from d2l import torch as d2l"
# Appended to the book's import line: its train_ch3 only draws, so print what it draws.
BOOK_PRINTS = """
_book_add = d2l.Animator.add
def _print_and_add(self, x, y):
    print(f"epoch {x}: train loss {y[0]:.4f}, train acc {y[1]:.4f}, test acc {y[2]:.4f}",
          flush=True)
    _book_add(self, x, y)
d2l.Animator.add = _print_and_add
"""
# Runs the chapter's "# %%" cells one at a time and prints how long each took.
CELL_TIMER = """
import re, sys, time
start = time.perf_counter()
cells = re.split(r"^# %%$", open(sys.argv[1], encoding="utf-8").read(), flags=re.M)[1:]
scope = {"__name__": "__main__"}
for cell in cells:
    t = time.perf_counter()
    exec(compile(cell, sys.argv[1], "exec"), scope)
    code = [l for l in cell.strip().splitlines() if not l.startswith("#")]
    print(f"cell {time.perf_counter() - t:6.2f} s  {code[0][:40]} ... {code[-1][:50]}", flush=True)
print(f"all cells {time.perf_counter() - start:.2f} s", flush=True)
"""
EPOCH = re.compile(
    r"^epoch (\d+): train loss ([\d.]+), train acc ([\d.]+), test acc ([\d.]+)$", re.M
)


def chapter_script(book: bool) -> str:
    code = CHAPTER.read_text(encoding="utf-8")
    if OUR_IMPORT not in code:
        sys.exit(f"{CHAPTER}: no line {OUR_IMPORT!r} to swap")
    return code.replace(OUR_IMPORT, BOOK_IMPORT + "\n" + BOOK_PRINTS) if book else code


def run(python: str, script: Path, cwd: Path, env: dict[str, str]) -> dict:
    """Run one process to completion: wall time, peak RSS of its largest process, its output."""
    measured = run_process(python, script, cwd, env)
    text = measured["output"]
    epochs = EPOCH.findall(text)
    if len(epochs) != 10:
        sys.exit(f"{script.name}: expected 10 epoch lines, got {len(epochs)}:\n{text[-3000:]}")
    loss, train_acc, test_acc = map(float, epochs[-1][1:])
    return {
        "wall_s": measured["wall_s"],
        "peak_rss_mb": measured["peak_rss_mb"],
        "train_loss": loss,
        "train_acc": train_acc,
        "test_acc": test_acc,
        "figure_text_lines": text.count("<Figure"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each side (alternating)")
    add_refenv_argument(parser)
    parser.add_argument("--json", help="also write the raw measurements here")
    parser.add_argument(
        "--cells", action="store_true", help="then time each cell of one more run of ours"
    )
    args = parser.parse_args()
    book_python = str(Path(args.refenv) / "bin" / "python")
    if not os.access(book_python, os.X_OK):
        sys.exit(f"no reference environment at {args.refenv}: run benchmarks/reference_env.sh")

    results: dict[str, list[dict]] = {"book": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="bench-d2l-") as tmp:
        tmp = Path(tmp)
        extract_dataset(tmp / "data" / "FashionMNIST" / "raw")
        workdir = tmp / "chapter"  # ../data from here is the dataset, as in the book
        workdir.mkdir()
        scripts = {"book": workdir / "book.py", "ours": workdir / "ours.py"}
        for side, path in scripts.items():
            path.write_text(chapter_script(side == "book"), encoding="utf-8")
        base = {k: v for k, v in os.environ.items() if not k.startswith("SOFTMAX_REGRESSION")}
        for i in range(args.runs):
            for side in ("book", "ours"):
                env = dict(base)
                if side == "ours":
                    env["XDG_CACHE_HOME"] = str(tmp / f"cache-{i}")  # nothing verified yet
                python = book_python if side == "book" else sys.executable
                result = run(python, scripts[side], workdir, env)
                result["load_avg_1min_after"] = os.getloadavg()[0]  # other work on the machine
                results[side].append(result)
                print(
                    f"{side:4s} run {i + 1}: {result['wall_s']:6.1f} s, "
                    f"{result['peak_rss_mb']:5.0f} MB peak RSS, train loss "
                    f"{result['train_loss']:.4f}, train acc {result['train_acc']:.4f}, "
                    f"test acc {result['test_acc']:.4f} (load average "
                    f"{result['load_avg_1min_after']:.1f})",
                    flush=True,
                )

        if args.cells:
            timer = workdir / "cells.py"
            timer.write_text(CELL_TIMER, encoding="utf-8")
            env = {**base, "XDG_CACHE_HOME": str(tmp / "cache-cells")}
            cells = subprocess.run(
                [sys.executable, str(timer), str(scripts["ours"])],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            print("\nours, cell by cell:")
            print("\n".join(line for line in cells.stdout.splitlines() if not EPOCH.match(line)))

    book = statistics.median(r["wall_s"] for r in results["book"])
    ours = statistics.median(r["wall_s"] for r in results["ours"])
    print(
        f"\nmedian whole process: book {book:.1f} s, ours {ours:.2f} s: {book / ours:.1f}x faster "
        f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()})"
    )
    print(
        "'<Figure' lines printed per run: book "
        f"{[r['figure_text_lines'] for r in results['book']]}, "
        f"ours {[r['figure_text_lines'] for r in results['ours']]}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
