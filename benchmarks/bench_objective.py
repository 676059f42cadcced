"""How the best-linear penalty was chosen: plain L2 against L2 in the pixel-correlation metric.

For each seed's validation split (the recipe's: 10,000 training images held out, seeded and
stratified) and each penalty power, the recipe's own selection (:func:`select_weight_decay`)
runs over one wide grid of weight decays; the table gives every candidate's validation
accuracy and the best per row. Only the training split is loaded: no test image is read.

    .venv/bin/python benchmarks/bench_penalty.py [--seeds 0,1,2,3,4,5] [--powers 0,1]
"""

from __future__ import annotations

import argparse
import statistics
import time

from softmax_regression import load_fashion_mnist
from softmax_regression.best_linear import BestLinearConfig, _split, select_weight_decay

GRID = (8e-3, 4e-3, 2e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--powers", default="0,1")
    ap.add_argument("--floor", type=float, default=BestLinearConfig().penalty_floor)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    powers = [float(p) for p in args.powers.split(",")]
    train = load_fashion_mnist("train")
    head = " | ".join(f"{wd:g}" for wd in GRID)
    print(f"| seed | power | {head} | best | time |")
    print("|---" * (len(GRID) + 4) + "|")
    best: dict[float, list[float]] = {p: [] for p in powers}
    for seed in seeds:
        for power in powers:
            cfg = BestLinearConfig(
                seed=seed, weight_decays=GRID, penalty_power=power, penalty_floor=args.floor
            )
            fit, val = _split(train, cfg)
            t = time.perf_counter()
            sel = select_weight_decay(fit, val, cfg)
            accs = {c.weight_decay: c.val_acc for c in sel.candidates}
            best[power].append(max(accs.values()))
            cells = " | ".join(f"{accs[wd]:.4f}" for wd in GRID)
            print(
                f"| {seed} | {power:g} | {cells} | **{best[power][-1]:.4f}** | "
                f"{time.perf_counter() - t:.1f} s |",
                flush=True,
            )
    print()
    for power in powers:
        print(f"power {power:g}: mean best validation accuracy {statistics.fmean(best[power]):.4f}")
    if len(powers) == 2:
        gains = [b - a for a, b in zip(best[powers[0]], best[powers[1]], strict=True)]
        print(
            f"power {powers[1]:g} - power {powers[0]:g}, per seed: "
            + ", ".join(f"{g:+.4f}" for g in gains)
        )


if __name__ == "__main__":
    main()
