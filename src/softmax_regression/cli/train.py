"""``softmax-regression train``: the book's recipe (one run, or one per seed with ``--seeds``)
or ``--recipe best-linear``, from argv to a run directory, results to text.

The handler :func:`_train` sends each kind of run to its function here; each of those calls
one function of :mod:`softmax_regression.runs`, which trains and writes the files.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..config import DEVICES, ENGINES, LOSSES, OPTIMIZERS, TrainConfig
from ..errors import ConfigError
from . import parallel
from ._options import (
    add_data_options,
    data_options_given,
    data_spec,
    finish,
    load_spec,
    parse_seeds,
    write_error,
)
from .report import add_no_report_option, report_after

RECIPES = ("book", "best-linear")
# TrainConfig fields that mean something to the best-linear recipe; every other option of
# ``train`` configures SGD training, which that recipe does not do.
_BEST_LINEAR_OPTIONS = {"seed", "val_split", "device", "data_dir", "data"}
_FLAGS = {
    "batch_size": "--batch-size",
    "val_split": "--val-split",
    "data_dir": "--data-dir",
    "weight_decay": "--weight-decay",
    "normalize": "--no-normalize",
    "standardize": "--standardize",
}

_D = {f.name: f.default for f in fields(TrainConfig)}

# (flag, config field, type, help); every default shown is TrainConfig's.
_TRAIN_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--epochs", "epochs", int, "passes over the training set"),
    ("--lr", "lr", float, "learning rate"),
    ("--batch-size", "batch_size", int, "examples per SGD step"),
    ("--optimizer", "optimizer", str, f"one of {', '.join(OPTIMIZERS)}"),
    ("--momentum", "momentum", float, "SGD momentum"),
    ("--weight-decay", "weight_decay", float, "L2 penalty (torch.optim semantics)"),
    ("--seed", "seed", int, "seed of the weights, the shuffling and the validation split"),
    ("--device", "device", str, f"one of {', '.join(DEVICES)}"),
    ("--val-split", "val_split", int, "training images held out for validation (stratified)"),
    ("--loss", "loss", str, f"one of {', '.join(LOSSES)} (torch = nn.CrossEntropyLoss)"),
    ("--engine", "engine", str, f"one of {', '.join(ENGINES)}"),
    ("--data-dir", "data_dir", str, "directory with the Fashion-MNIST IDX files"),
]


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train",
        help="train the book's softmax regression and write a run directory",
        description="Train softmax regression on Fashion-MNIST (the book's recipe by default) "
        "and write runs/<name>/ with metrics, figures, the model and a resume checkpoint.",
    )
    for flag, name, typ, text in _TRAIN_OPTIONS:
        default = _D[name]
        shown = "discovered" if default is None else default
        t.add_argument(flag, dest=name, type=typ, default=None, help=f"{text} (default: {shown})")
    t.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_const",
        const=False,
        default=None,
        help="feed raw 0-255 pixels instead of dividing by 255 (a classic mistake, for study)",
    )
    t.add_argument(
        "--standardize",
        dest="standardize",
        action="store_const",
        const=True,
        default=None,
        help="standardise every input with the training split's mean and std (for features "
        "far outside [0, 1], which make the book's learning rate diverge)",
    )
    t.add_argument("--out", help="run directory to create (default: runs/<date-time>)")
    t.add_argument("--runs-dir", default="runs", help="where default run directories go")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last epoch")
    t.add_argument("--no-plots", action="store_true", help="skip the four PNG figures")
    add_no_report_option(t)
    t.add_argument("--quiet", "-q", action="store_true", help="print only the final summary")
    t.add_argument(
        "--recipe",
        choices=RECIPES,
        default="book",
        help="book: the chapter's SGD recipe (default); best-linear: standardised pixels, "
        "an L2 penalty in the pixel-correlation metric whose strength is chosen on a "
        "validation split (--val-split, default 10000), full-batch L-BFGS, refit on all "
        "training images",
    )
    t.add_argument(
        "--seeds",
        metavar="SEEDS",
        help="train once per seed and report mean ± std: a list (0,1,2) or a count (5 = seeds "
        "0 to 4); each seed's run goes to OUT/seed-<k>/",
    )
    add_data_options(t)
    parallel.add_options(t)  # --nproc and --dist-timeout
    t.set_defaults(func=_train)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    names = [name for _, name, _, _ in _TRAIN_OPTIONS] + ["normalize", "standardize"]
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    spec = data_spec(args)
    if spec is not None:
        given["data"] = spec
    return given


def _load(
    spec: dict[str, Any] | None, data_dir: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    """``train=``/``test=`` of the run's own data, read here so that its notes are printed;
    nothing for Fashion-MNIST, which the run reads itself."""
    if spec is None:
        return {}
    quiet = args.quiet or not parallel.is_rank_0()
    train, test = load_spec(spec, data_dir, quiet=quiet)
    return {"train": train, "test": test}


def _train(args: argparse.Namespace) -> int:
    if args.resume is not None and data_options_given(args):
        raise ConfigError(
            f"--resume reads the data from the run; drop {data_options_given(args)[0]}"
        )
    given = _given(args)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if args.resume is not None and (seeds is not None or args.recipe != "book"):
        raise ConfigError(
            "--resume continues one run with its own recipe and settings; it does not "
            "combine with --seeds or --recipe"
        )
    if seeds is not None and "seed" in given:
        raise ConfigError("give either --seed or --seeds, not both")
    try:
        if args.resume is not None and _recipe_of(args.resume) == "best-linear":
            code = _resume_best_linear(args, given)
        elif args.recipe == "best-linear":
            code = _train_best_linear(args, given, seeds)
        elif seeds is not None:
            code = _train_book_seeds(args, given, seeds)
        else:
            code = _train_book(args, given)
    except BrokenPipeError:  # stdout closed by its reader: cli.main ends quietly
        raise
    except OSError as e:
        raise write_error(e) from None
    return finish() if code is None else code


def _train_book(args: argparse.Namespace, given: dict[str, Any]) -> int | None:
    from ..runs.directory import check_new, resume_config

    config: TrainConfig | None = None
    if args.resume is not None:
        if args.out is not None:
            raise ConfigError("--resume continues a run in place; drop --out")
        if parallel.is_rank_0():  # the others receive it from rank 0
            config = resume_config(args.resume, given)
        _keep_options(args)
    else:
        config = TrainConfig(**given)
        if parallel.owns_paths():
            check_new(args.out)
    code = parallel.relaunch(args)  # --nproc N: this command again, as N ranks
    if code is not None:
        return code
    # Everything that the arguments alone can get wrong has been checked: now torch.
    world = parallel.join(args, given.get("device", "auto"))
    from ..progress import ConsoleProgress
    from ..runs.book import train_run
    from ..runs.ranks import on_main

    if args.resume is not None and world is not None and world.parallel:
        # rank 0 read the run's settings; every rank must have been given the same changes
        world.check_same({k: v for k, v in given.items() if k not in ("data_dir", "device")})
        config = on_main(world, lambda: config, "reading the run to resume")

    data = _load(config.data, config.data_dir, args)
    progress = None if args.quiet else ConsoleProgress(_columns(config))
    try:
        outcome = train_run(
            config,
            out=args.out,
            root=args.runs_dir,
            resume=args.resume,
            progress=progress,
            plots=not args.no_plots,
            world=world,
            options={"plots": not args.no_plots, "report": not args.no_report},
            **data,
        )
    finally:
        if progress is not None:
            progress.close()
    r = outcome.result
    final = r.final
    seconds = sum(rec.seconds for rec in r.history)
    parts = [f"train loss {final.train_loss:.4f}", f"train acc {final.train_acc:.4f}"]
    if final.val_acc is not None:
        parts.append(f"val acc {final.val_acc:.4f}")
    parts.append(f"test acc {final.test_acc:.4f}")
    print(f"final ({len(r.history)} epochs, {seconds:.2f} s on {r.device}): " + ", ".join(parts))
    page = report_after(outcome.directory, args)
    names = ", ".join([*(p.name for p in outcome.files), *([page.name] if page else [])])
    print(f"run saved in {outcome.directory}/: {names}")
    return None


def _keep_options(args: argparse.Namespace) -> None:
    """A resumed run keeps its own ``--no-plots`` and ``--no-report`` (config.json's
    ``options``); either flag given now still applies."""
    from ..errors import SoftmaxRegressionError
    from ..runs.directory import read_run_config

    try:
        options = read_run_config(args.resume).get("options") or {}
    except SoftmaxRegressionError:
        return  # (reported by whatever reads the run next)
    if isinstance(options, dict):
        args.no_plots = args.no_plots or options.get("plots") is False
        args.no_report = args.no_report or options.get("report") is False


def _recipe_of(run: str) -> str | None:
    """The recipe of the run directory ``run`` (None: not a readable run; its resume says)."""
    from ..errors import SoftmaxRegressionError
    from ..runs.directory import read_run_config

    try:
        return read_run_config(run)["config"].get("recipe", "book")
    except SoftmaxRegressionError:
        return None


def _resume_best_linear(args: argparse.Namespace, given: dict[str, Any]) -> int | None:
    """``train --resume DIR`` of a best-linear run: its fit continued from the solver state
    it kept, with its own settings, data and options."""
    from ..runs.directory import check_not_running, read_run_config

    if args.out is not None:
        raise ConfigError("--resume continues a run in place; drop --out")
    extra = sorted(set(given) - {"data_dir", "device"})
    if extra:
        raise ConfigError(f"{_flag(extra[0])} cannot change a best-linear run being resumed")
    if parallel.is_rank_0():
        check_not_running(args.resume)
    saved = read_run_config(args.resume)["config"]
    _keep_options(args)
    code = parallel.relaunch(args)
    if code is not None:
        return code
    world = parallel.join(args, given.get("device", saved.get("device", "auto")))
    from ..best_linear import BestLinearConfig

    settings = {f.name: saved[f.name] for f in fields(BestLinearConfig) if f.name in saved}
    settings["weight_decays"] = tuple(settings.get("weight_decays", ()))
    if "device" in given:
        settings["device"] = given["device"]
    config = BestLinearConfig(**settings)
    spec, data_dir = saved.get("data"), given.get("data_dir")
    loaded = _load(spec, data_dir, args)
    return _best_linear_one(args, config, data_dir, spec, world, loaded, resume=args.resume)


def _columns(config: TrainConfig) -> list[str]:
    """The progress table's columns."""
    columns = ["epoch", "train_loss", "train_acc", "test_acc"]
    return [*columns, *(["val_acc"] if config.val_split else []), "seconds"]


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _final_line(m: dict) -> str:
    parts = [f"train loss {m['train_loss']:.4f}", f"train acc {m['train_acc']:.4f}"]
    if "val_acc" in m:
        parts.append(f"val acc {m['val_acc']:.4f}")
    parts.append(f"test acc {m['test_acc']:.4f}")
    return ", ".join(parts) + f" ({m['seconds']:.1f} s)"


def _print_seed_summary(directory: Path, result, page: Path | None = None) -> None:
    for line in result.lines():
        print(line)
    subdirs = ", ".join(f"seed-{s}/" for s in result.seeds)
    pages = f", {page.name} (and one per seed)" if page else ""
    print(f"runs saved in {directory}/: {subdirs}, seeds.json, seeds.csv{pages}")


def _train_book_seeds(args: argparse.Namespace, given: dict[str, Any], seeds) -> int | None:
    from ..runs.directory import check_new

    config = TrainConfig(**given)
    if parallel.owns_paths():
        check_new(args.out)
    code = parallel.relaunch(args)
    if code is not None:
        return code
    world = parallel.join(args, config.device)
    from ..progress import ConsoleProgress
    from ..runs.seeds import book_seed_runs

    def progress(seed: int) -> ConsoleProgress | None:
        if args.quiet:
            return None
        print(f"seed {seed}:")
        return ConsoleProgress(_columns(config))

    def on_seed(seed: int, outcome, m: dict) -> None:
        print(f"seed {seed}: {_final_line(m)}", flush=True)

    top, result = book_seed_runs(
        config,
        seeds,
        out=args.out,
        root=args.runs_dir,
        plots=not args.no_plots,
        progress=progress,
        on_seed=on_seed,
        world=world,
        **_load(config.data, config.data_dir, args),
    )
    _print_seed_summary(top, result, report_after(top, args))
    return None


def _train_best_linear(args: argparse.Namespace, given: dict[str, Any], seeds) -> int | None:
    import dataclasses

    from ..runs.directory import check_new

    extra = sorted(set(given) - _BEST_LINEAR_OPTIONS)
    if extra:
        raise ConfigError(
            f"{_flag(extra[0])} does not apply to --recipe best-linear (it fits standardised "
            "pixels with full-batch L-BFGS and chooses its weight decay on --val-split)"
        )
    if given.get("val_split", 1) < 1:
        raise ConfigError(
            "--recipe best-linear chooses its weight decay on a validation split: "
            "--val-split must be at least 1"
        )
    if parallel.owns_paths():
        check_new(args.out)
    code = parallel.relaunch(args)
    if code is not None:
        return code
    world = parallel.join(args, given.get("device", "auto"))
    from ..best_linear import BestLinearConfig
    from ..runs.seeds import best_linear_seed_runs

    data_dir = given.get("data_dir")
    spec = given.get("data")
    loaded = _load(spec, data_dir, args)
    val_split = given.get("val_split", BestLinearConfig.val_split)
    if loaded:
        train = loaded["train"]
        if "val_split" not in given:
            # Fashion-MNIST's 10,000 of 60,000: a sixth of the training split.
            val_split = max(1, round(len(train) / 6))
            if not args.quiet and parallel.is_rank_0():
                print(
                    f"note: --val-split {val_split} (a sixth of the {len(train)} training "
                    "examples) chooses the weight decay"
                )
    config = BestLinearConfig(val_split=val_split, device=given.get("device", "auto"))
    if seeds is None:
        config = dataclasses.replace(config, seed=given.get("seed", 0))
        return _best_linear_one(args, config, data_dir, spec, world, loaded)

    def on_seed(seed: int, outcome) -> None:
        _print_candidates(args, seed, outcome)
        wd = outcome.model.selection.chosen_weight_decay
        print(
            f"seed {seed}: weight decay {wd:g} chosen on validation; "
            f"{_final_line(outcome.metrics)}",
            flush=True,
        )

    top, result = best_linear_seed_runs(
        config,
        seeds,
        out=args.out,
        root=args.runs_dir,
        data_dir=data_dir,
        data=spec,
        plots=not args.no_plots,
        on_seed=on_seed,
        world=world,
        **loaded,
    )
    _print_seed_summary(top, result, report_after(top, args))
    return None


def _best_linear_one(
    args: argparse.Namespace, config, data_dir, spec, world, loaded, resume=None
) -> int | None:
    """One best-linear run (new, or ``resume``'s): data-parallel over the ranks under
    torchrun, the directory rank 0's."""
    from ..runs.best_linear import best_linear_run

    outcome = best_linear_run(
        config,
        out=args.out,
        root=args.runs_dir,
        data_dir=data_dir,
        data=spec,
        plots=not args.no_plots,
        world=world,
        resume=resume,
        options={"plots": not args.no_plots, "report": not args.no_report},
        **loaded,
    )
    if world is not None and not world.is_main:
        return None  # rank 0 prints, writes and reports
    seed = config.seed
    _print_candidates(args, seed, outcome)
    print(outcome.model.how_chosen())
    print(f"final (best-linear, seed {seed}): {_final_line(outcome.metrics)}")
    page = report_after(outcome.directory, args)
    names = ", ".join([*(p.name for p in outcome.files), *([page.name] if page else [])])
    print(f"run saved in {outcome.directory}/: {names}")
    return None


def _print_candidates(args: argparse.Namespace, seed: int, outcome) -> None:
    """Each weight decay tried on validation, the chosen one marked (not with --quiet)."""
    if args.quiet:
        return
    chosen = outcome.model.selection.chosen_weight_decay
    for c in outcome.model.selection.candidates:
        mark = "  <- chosen" if c.weight_decay == chosen else ""
        print(f"  seed {seed}: weight decay {c.weight_decay:g}: val acc {c.val_acc:.4f}{mark}")
