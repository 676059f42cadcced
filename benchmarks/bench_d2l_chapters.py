"""The book's chapters 2-4 end to end: ``softmax_regression.d2l`` beside the real d2l 0.17.6.

Runs each chapter program of tests/chapter/ (the book's PyTorch code, d2l 0.17.6) as a whole
process, once with ``from softmax_regression import d2l`` and once with ``from d2l import torch
as d2l`` in the reference environment (``--refenv``, made by benchmarks/reference_env.sh: torch
2.14.1, torchvision 0.29.1), the two sides one after the other for each chapter, ``--runs``
times. Both read the same extracted IDX files from ``../data``; nothing touches the network.
Our side starts with an empty user cache each time (it verifies the data files again).

Reports per chapter the wall time of the whole process, the peak RSS of its largest process,
the ratio, and the 1-minute load average before each run (other work on the machine).

    .venv/bin/python benchmarks/bench_d2l_chapters.py [--runs 1] [--only concise,dropout]
        [--refenv DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from _common import add_refenv_argument, extract_dataset, run_process

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "tests" / "chapter"
OUR_IMPORT = "from softmax_regression import d2l"
BOOK_IMPORT = "from d2l import torch as d2l"
# Section, program; the softmax-regression and MLP chapters first (the targets that matter).
PROGRAMS = [
    ("3.7", "concise"),
    ("3.6", "softmax_scratch"),
    ("4.3", "mlp_concise"),
    ("4.2", "mlp_scratch"),
    ("4.6", "dropout"),
    ("2.4", "calculus"),
    ("2.6", "probability"),
    ("3.1", "linear_regression"),
    ("3.2", "linear_regression_scratch"),
    ("3.3", "linear_regression_concise"),
    ("4.1", "mlp"),
    ("4.4", "underfit_overfit"),
    ("4.5", "weight_decay"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of each side per chapter")
    parser.add_argument("--only", help="comma list of program names (default: all)")
    add_refenv_argument(parser)
    parser.add_argument("--json", help="also write the raw measurements here")
    args = parser.parse_args()
    book_python = str(Path(args.refenv).resolve() / "bin" / "python")
    if not os.access(book_python, os.X_OK):
        sys.exit(f"no reference environment at {args.refenv}: run benchmarks/reference_env.sh")
    programs = PROGRAMS
    if args.only:
        wanted = set(args.only.split(","))
        programs = [p for p in PROGRAMS if p[1] in wanted]

    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-d2l-chapters-") as tmp:
        tmp = Path(tmp)
        extract_dataset(tmp / "data" / "FashionMNIST" / "raw")
        workdir = tmp / "chapter"  # ../data from here is the dataset, as in the book
        workdir.mkdir()
        base = {k: v for k, v in os.environ.items() if not k.startswith("SOFTMAX_REGRESSION")}
        for section, name in programs:
            code = (CHAPTERS / f"{name}.py").read_text(encoding="utf-8")
            if OUR_IMPORT not in code:
                sys.exit(f"{name}.py: no line {OUR_IMPORT!r} to swap")
            scripts = {"book": workdir / f"{name}_book.py", "ours": workdir / f"{name}_ours.py"}
            scripts["book"].write_text(code.replace(OUR_IMPORT, BOOK_IMPORT), encoding="utf-8")
            scripts["ours"].write_text(code, encoding="utf-8")
            results[name] = {"book": [], "ours": []}
            for i in range(args.runs):
                for side in ("book", "ours"):
                    env = dict(base)
                    if side == "ours":
                        env["XDG_CACHE_HOME"] = str(tmp / f"cache-{name}-{i}")
                    load = os.getloadavg()[0]
                    python = book_python if side == "book" else sys.executable
                    result = run_process(python, scripts[side], workdir, env)
                    result["load_avg_1min_before"] = load
                    result.pop("output")
                    results[name][side].append(result)
                    print(
                        f"{section} {name:26s} {side:4s} run {i + 1}: {result['wall_s']:7.1f} s, "
                        f"{result['peak_rss_mb']:5.0f} MB (load average {load:.1f})",
                        flush=True,
                    )
            book = statistics.median(r["wall_s"] for r in results[name]["book"])
            ours = statistics.median(r["wall_s"] for r in results[name]["ours"])
            print(f"{section} {name}: {book / ours:.1f}x faster", flush=True)
    print(f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
