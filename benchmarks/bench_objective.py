"""How the best-linear objective was chosen: penalty metric and loss margin, on validation only.

For each seed's validation split (the recipe's: 10,000 training images held out, seeded and
stratified) and each combination of penalty power (0 = plain L2, 1 = L2 in the pixel-
correlation metric) and loss margin (0 = plain cross-entropy), the recipe's own selection
(:func:`select_weight_decay`, 50 iterations per candidate) runs over one wide grid of weight
decays; the table gives every candidate's validation accuracy and the best per row. Only the
training split is loaded: no test image is read.

    .venv/bin/python benchmarks/bench_objective.py [--seeds 0,1,2,3,4,5] [--powers 0,1]
                                                   [--margins 0,2]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

from softmax_regression import load_fashion_mnist
from softmax_regression.best_linear import BestLinearConfig, _split, select_weight_decay

GRID = (8e-3, 4e-3, 2e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4)
ITERS = 50  # L-BFGS iterations per candidate (the recipe uses 40 to fit in its time budget)


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--powers", default="0,1")
    ap.add_argument("--margins", default="0,2")
    ap.add_argument("--floor", type=float, default=BestLinearConfig().penalty_floor)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    combos = list(itertools.product(_numbers(args.powers), _numbers(args.margins)))
    train = load_fashion_mnist("train")
    head = " | ".join(f"{wd:g}" for wd in GRID)
    print(f"| seed | power | margin | {head} | best | time |")
    print("|---" * (len(GRID) + 5) + "|")
    best: dict[tuple[float, float], list[float]] = {c: [] for c in combos}
    for seed in seeds:
        for power, margin in combos:
            cfg = BestLinearConfig(
                seed=seed,
                weight_decays=GRID,
                penalty_power=power,
                penalty_floor=args.floor,
                margin=margin,
                select_iters=ITERS,
            )
            fit, val = _split(train, cfg)
            t = time.perf_counter()
            sel = select_weight_decay(fit, val, cfg)
            accs = {c.weight_decay: c.val_acc for c in sel.candidates}
            best[power, margin].append(max(accs.values()))
            cells = " | ".join(f"{accs[wd]:.4f}" for wd in GRID)
            print(
                f"| {seed} | {power:g} | {margin:g} | {cells} | **{max(accs.values()):.4f}** "
                f"| {time.perf_counter() - t:.1f} s |",
                flush=True,
            )
    print()
    base = best[combos[0]]
    for combo in combos:
        gains = ", ".join(f"{b - a:+.4f}" for a, b in zip(base, best[combo], strict=True))
        print(
            f"power {combo[0]:g}, margin {combo[1]:g}: mean best validation accuracy "
            f"{statistics.fmean(best[combo]):.4f}; per seed against the first row: {gains}"
        )


if __name__ == "__main__":
    main()
