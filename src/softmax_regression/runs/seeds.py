"""Several seeds of one recipe on disk: ``seed-<k>/`` run directories, and ``seeds.json`` /
``seeds.csv`` with every final metric per seed and as mean ± std beside them.

:func:`book_seed_runs` and :func:`best_linear_seed_runs` are what ``train --seeds`` does for
each recipe: data loaded once, one run directory per seed (:mod:`.book`, :mod:`.best_linear`),
then the summary. :func:`seed_runs` is the loop under both, for any ``run_one`` that returns its
final metrics. The statistics are :mod:`softmax_regression.seeds`'.

Under torchrun (a ``world`` of several ranks) the seeds are spread over the ranks, seed ``i``
on rank ``i mod N``, each run the single-process run on that rank's device; each seed's
directory is written by the rank that trains it (on a shared filesystem they land side by
side), and rank 0 gathers the metrics and writes the summary files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_json, atomic_write_text
from ..best_linear import BestLinearConfig
from ..config import TrainConfig, resolve_device
from ..data import FashionMNIST
from ..distributed import World, ranks_of
from ..seeds import SeedRuns, final_metrics
from ..train import Progress
from .best_linear import BestLinearOutcome, best_linear_run
from .book import RunOutcome, load_data, train_run
from .directory import DEFAULT_ROOT, make_run_dir
from .ranks import on_main

SEEDS_JSON = "seeds.json"
SEEDS_CSV = "seeds.csv"


def seed_runs(
    directory: str | Path,
    seeds: Sequence[int],
    run_one: Callable[[int, Path], dict[str, Any]],
    *,
    description: dict[str, Any] | None = None,
    on_seed: Callable[[int, dict[str, Any]], None] | None = None,
    world: World | None = None,
) -> SeedRuns:
    """``run_one(seed, directory / f"seed-{seed}")`` for each seed -> its final metrics; then
    ``seeds.json`` and ``seeds.csv`` (per seed, mean, std) in ``directory``.

    With a ``world`` of several ranks each rank runs its share of the seeds (``on_seed``
    follows each of them there); every rank returns the whole result, rank 0 writes it."""
    directory = Path(directory)
    seeds = [int(s) for s in seeds]
    rows: dict[int, dict[str, Any]] = {}
    for i in ranks_of(len(seeds), world):
        rows[i] = run_one(seeds[i], directory / f"seed-{seeds[i]}")
        if on_seed is not None:
            on_seed(seeds[i], rows[i])
    if world is not None and world.parallel:
        for part in world.gather(rows, "gathering every seed's results"):
            rows.update(part)
    result = SeedRuns.from_rows(seeds, [rows[i] for i in range(len(seeds))])
    if world is None or world.is_main:
        write_seed_files(directory, result, description)
    return result


def write_seed_files(
    directory: str | Path, result: SeedRuns, description: dict[str, Any] | None = None
) -> None:
    directory = Path(directory)
    body = {
        **(description or {}),
        **result.to_dict(),
        "runs": [f"seed-{s}" for s in result.seeds],
        "std": "sample standard deviation (n - 1)",
        "labels": "val_acc: validation images held out of the training split (they chose "
        "hyperparameters or epochs, if anything did); test_acc: the test split, reported only",
    }
    atomic_write_json(directory / SEEDS_JSON, body)
    atomic_write_text(directory / SEEDS_CSV, result.to_csv())


def book_seed_runs(
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    out: str | Path | None = None,
    root: str | Path = DEFAULT_ROOT,
    train: FashionMNIST | None = None,
    test: FashionMNIST | None = None,
    plots: bool = True,
    progress: Callable[[int], Progress | None] | None = None,
    on_seed: Callable[[int, RunOutcome, dict[str, Any]], None] | None = None,
    world: World | None = None,
) -> tuple[Path, SeedRuns]:
    """The book's recipe once per seed into ``out/seed-<k>/`` (:func:`.book.train_run`), then
    the summary files. ``progress(seed)`` gives each run's progress display (closed after the
    run if it has ``close``); ``on_seed(seed, outcome, metrics)`` follows each run."""
    if world is None:
        resolve_device(config.device)  # a missing GPU is reported before anything is written
    else:  # every rank trains whole runs, on its own device
        world.check_same(_settings(config.to_dict(), out, seeds))
    asked = config  # the summary describes the settings as given
    if world is not None:
        config = config.replace(device=world.device.type)
    top = on_main(world, lambda: make_run_dir(out, root), "creating the run directory")
    if train is None or test is None:
        train, test = load_data(config)

    def run_one(seed: int, directory: Path) -> dict[str, Any]:
        shown = progress(seed) if progress is not None else None
        try:
            outcome = train_run(
                config.replace(seed=seed),
                out=directory,
                train=train,
                test=test,
                progress=shown,
                plots=plots,
            )
        finally:
            close = getattr(shown, "close", None)
            if close is not None:
                close()
        m = final_metrics(outcome.result.history)
        if outcome.evaluation is not None:
            m["test_macro_f1"] = outcome.evaluation.macro_f1
        if on_seed is not None:
            on_seed(seed, outcome, m)
        return m

    desc = {"recipe": "book", "config": {k: v for k, v in asked.to_dict().items() if k != "seed"}}
    return top, seed_runs(top, seeds, run_one, description=desc, world=world)


def _settings(config: dict[str, Any], out: str | Path | None, seeds: Sequence[int]) -> dict:
    """What every rank must agree on before the seeds are dealt out."""
    settings = {k: v for k, v in config.items() if k not in ("data_dir", "device")}
    return {**settings, "out": None if out is None else str(out), "seeds": list(seeds)}


def best_linear_seed_runs(
    config: BestLinearConfig,
    seeds: Sequence[int],
    *,
    out: str | Path | None = None,
    root: str | Path = DEFAULT_ROOT,
    train: FashionMNIST | None = None,
    test: FashionMNIST | None = None,
    data_dir: str | None = None,
    data: dict[str, Any] | None = None,
    plots: bool = True,
    on_seed: Callable[[int, BestLinearOutcome], None] | None = None,
    world: World | None = None,
) -> tuple[Path, SeedRuns]:
    """The best-linear recipe once per seed into ``out/seed-<k>/``
    (:func:`.best_linear.best_linear_run`), then the summary files; ``on_seed(seed, outcome)``
    follows each run."""
    if world is None:
        resolve_device(config.device)  # a missing GPU is reported before anything is written
    else:
        world.check_same(_settings(dataclasses.asdict(config), out, seeds))
    asked = config  # the summary describes the settings as given
    if world is not None:
        config = dataclasses.replace(config, device=world.device.type)
    if train is None or test is None:
        loaded = load_data(TrainConfig(data=data, data_dir=data_dir))
        train = train if train is not None else loaded[0]
        test = test if test is not None else loaded[1]
    top = on_main(world, lambda: make_run_dir(out, root), "creating the run directory")

    def run_one(seed: int, directory: Path) -> dict[str, Any]:
        outcome = best_linear_run(
            dataclasses.replace(config, seed=seed),
            out=directory,
            train=train,
            test=test,
            data=data,
            plots=plots,
        )
        if on_seed is not None:
            on_seed(seed, outcome)
        return outcome.metrics

    desc = {
        "recipe": "best-linear",
        "config": {k: v for k, v in dataclasses.asdict(asked).items() if k != "seed"},
    }
    if data is not None:
        desc["config"]["data"] = data
    return top, seed_runs(top, seeds, run_one, description=desc, world=world)
