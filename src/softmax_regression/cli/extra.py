"""``softmax-regression numerics`` and ``softmax-regression sweep``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .._io import atomic_write_json, atomic_write_text
from ..errors import ConfigError, SoftmaxRegressionError


def register(sub: argparse._SubParsersAction) -> None:
    n = sub.add_parser(
        "numerics",
        help="where exp overflows/underflows per dtype, and naive vs stable softmax/cross-entropy",
    )
    n.add_argument(
        "--out",
        default="runs/numerics",
        help="directory for numerics.json and numerics.png (default: %(default)s)",
    )
    n.add_argument(
        "--dtypes",
        default="float64,float32,bfloat16,float16",
        help="comma-separated dtypes (default: %(default)s)",
    )
    n.add_argument(
        "--scales",
        default="1,10,50,100,1e3,1e4,1e6",
        help="comma-separated logit scales (default: %(default)s)",
    )
    n.set_defaults(func=_numerics)

    w = sub.add_parser(
        "sweep",
        help="train every combination of learning rates, batch sizes and epochs, several seeds",
        description="Train the book's recipe for every combination of --lr, --batch-size and "
        "--epochs, once per seed, on data loaded once; print mean ± std of the final metrics "
        "and write sweep.csv, sweep.json and curves.png to --out.",
    )
    w.add_argument(
        "--lr", default="0.1", help="comma-separated learning rates (default: %(default)s)"
    )
    w.add_argument(
        "--batch-size", default="256", help="comma-separated batch sizes (default: %(default)s)"
    )
    w.add_argument(
        "--epochs", default="10", help="comma-separated epoch counts (default: %(default)s)"
    )
    w.add_argument(
        "--seeds",
        default="0,1",
        help="a count (3 = seeds 0,1,2) or a comma-separated list (default: %(default)s)",
    )
    w.add_argument(
        "--val-split",
        type=int,
        default=0,
        help="training images held out for validation, e.g. 10000 (default: 0)",
    )
    w.add_argument("--optimizer", default="sgd", help="sgd or adam (default: %(default)s)")
    w.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default: 0)")
    w.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty (default: 0)")
    w.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    w.add_argument("--data-dir", help="directory with the Fashion-MNIST IDX files")
    w.add_argument("--out", default="runs/sweep", help="output directory (default: %(default)s)")
    w.add_argument("--quiet", "-q", action="store_true", help="print only the table")
    w.set_defaults(func=_sweep)


def _parse_list(text: str, what: str, kind: type, noun: str) -> tuple:
    try:
        values = tuple(kind(t) for t in text.split(",") if t.strip())
    except ValueError:
        msg = f"{what} must be a comma-separated list of {noun}s, got {text!r}"
        raise ConfigError(msg) from None
    if not values:
        raise ConfigError(f"{what} must list at least one {noun}, got {text!r}")
    return values


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """'1e-3,3e-4' -> (0.001, 0.0003), with a one-line error naming the option."""
    return _parse_list(text, what, float, "number")


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """'64,256' -> (64, 256), with a one-line error naming the option."""
    return _parse_list(text, what, int, "integer")


def jsonable(obj):
    """Replace nan/inf (not JSON) by the strings "nan", "inf", "-inf", recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def fmt_err(x: float) -> str:
    return f"{x:.1e}"


def format_outcome(o) -> str:
    return f"ok {fmt_err(o.error)}" if o.status == "ok" else o.status


def numerics_tables(report) -> list[str]:
    """The report as text lines: the exp-range table, then naive vs stable per dtype and scale."""
    lines = ["exp(x) in each dtype (found by bisection over the values the dtype can hold):"]
    head = (
        f"{'dtype':<9} {'largest x, exp(x) finite':>26} {'exp(x)':>12} "
        f"{'smallest x, exp(x) > 0':>24} {'exp(x)':>11}"
    )
    lines += [head, "-" * len(head)]
    for r in report.exp_ranges:
        lines.append(
            f"{r.dtype:<9} {r.max_x!r:>26} {r.exp_max_x:>12.5g} {r.min_x!r:>24} "
            f"{r.exp_min_x:>11.4g}"
        )
    lines += [
        "",
        f"naive vs stable on logits = {report.logits}, label {report.label} "
        f"(the least likely class); errors against the {report.reference}:",
        "softmax: max absolute error of the 10 probabilities; loss: relative error",
    ]
    head = (
        f"{'dtype':<9} {'scale':>8} {'exact loss':>11} {'naive softmax':>14} "
        f"{'stable softmax':>15} {'naive loss':>14} {'stable loss':>12}"
    )
    lines += [head, "-" * len(head)]
    for row in report.rows:
        ref = f"{row.reference_loss:.6g}" if row.logits_finite else "-"
        lines.append(
            f"{row.dtype:<9} {row.scale:>8g} {ref:>11} {format_outcome(row.naive_softmax):>14} "
            f"{format_outcome(row.stable_softmax):>15} {format_outcome(row.naive_loss):>14} "
            f"{format_outcome(row.stable_loss):>12}"
        )
    return lines


def _numerics(args: argparse.Namespace) -> int:
    from ..numerics import numerics_report
    from ..report_plots import plot_numerics

    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    report = numerics_report(dtypes, parse_floats(args.scales, "--scales"))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    for line in numerics_tables(report):
        print(line)
    print()
    for d in dtypes:
        naive, stable = (
            report.first_failure(d, "naive_loss"),
            report.first_failure(d, "stable_loss"),
        )
        print(
            f"{d}: the naive loss first fails at scale {naive:g}"
            if naive is not None
            else f"{d}: the naive loss never fails here",
            end="",
        )
        print(
            f"; the stable loss at {stable:g} (the logits themselves overflow)"
            if stable is not None
            else "; the stable loss never does"
        )
    print(
        f"\nThe same failure in training: `{report.training_demo}` stops at the first "
        f"non-finite loss; `--loss stable` trains."
    )
    atomic_write_json(out / "numerics.json", jsonable(report.to_dict()))
    plot_numerics(report, out / "numerics.png")
    print(f"Wrote {out / 'numerics.json'} and {out / 'numerics.png'}")
    return 0


def sweep_table(result) -> list[str]:
    """The sweep as text: one line per setting, mean ± std over seeds."""
    cols = result.columns()
    titles = {
        "train_loss": "train loss",
        "train_acc": "train acc",
        "val_acc": "val acc",
        "test_acc": "test acc",
        "seconds": "seconds",
    }
    has_best = any(r.best_epoch is not None for r in result.results)
    head = f"{'lr':>8} {'batch':>6} {'epochs':>6} " + " ".join(f"{titles[c]:>17}" for c in cols)
    if has_best:
        head += f" {'val picks':>9} {'its test acc':>12}"
    lines = [head, "-" * len(head)]
    for r in result.results:
        s = r.setting
        line = f"{s.lr:>8g} {s.batch_size:>6} {s.epochs:>6} " + " ".join(
            f"{r.runs.summary[c].format(2 if c == 'seconds' else 4):>17}" for c in cols
        )
        if has_best:
            line += f" {r.best_epoch:>9} {r.test_acc_at_best_epoch:>12.4f}"
        lines.append(line)
    return lines


def _sweep(args: argparse.Namespace) -> int:
    from .. import sweep
    from ..config import TrainConfig
    from ..data import load_fashion_mnist
    from ..report_plots import plot_sweep_curves
    from ..seeds import parse_seeds

    settings = sweep.grid(
        parse_floats(args.lr, "--lr"),
        parse_ints(args.batch_size, "--batch-size"),
        parse_ints(args.epochs, "--epochs"),
    )
    seeds = parse_seeds(args.seeds)
    base = TrainConfig(
        optimizer=args.optimizer,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        device=args.device,
        val_split=args.val_split,
        data_dir=args.data_dir,
    )
    for s in settings:  # every setting is checked before any training starts
        base.replace(lr=s.lr, batch_size=s.batch_size, epochs=s.epochs)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    train = load_fashion_mnist("train", args.data_dir)
    test = load_fashion_mnist("test", args.data_dir)
    runs = len({(s.lr, s.batch_size) for s in settings}) * len(seeds)
    if not args.quiet:
        print(f"{len(settings)} settings x {len(seeds)} seeds: {runs} training runs")
    done = [0]

    def on_run(setting, seed, history) -> None:
        done[0] += 1
        if not args.quiet:
            last = history.last
            secs = sum(r.seconds for r in history)
            print(
                f"  [{done[0]}/{runs}] lr {setting.lr:g}, batch {setting.batch_size}, "
                f"{setting.epochs} epochs, seed {seed}: test acc {last.test_acc:.4f} "
                f"({secs:.1f} s)",
                flush=True,
            )

    result = sweep.run_sweep(base, settings, seeds, train, test, on_run=on_run)
    for line in sweep_table(result):
        print(line)
    atomic_write_json(out / "sweep.json", jsonable(result.to_dict()))
    atomic_write_text(out / "sweep.csv", result.to_csv())
    plot_sweep_curves(
        [
            {
                "label": r.setting.label,
                "epochs": r.curves["epoch"],
                **r.curves,
                "best_epoch": r.best_epoch,
            }
            for r in result.results
        ],
        out / "curves.png",
    )
    print(
        f"{len(settings)} settings, {result.trained_epochs} epochs trained in "
        f"{result.seconds:.1f} s; wrote {out / 'sweep.csv'}, {out / 'sweep.json'}, "
        f"{out / 'curves.png'}"
    )
    return 0


# --------------------------------------------------------------------------- train extras
# ``train --recipe`` and ``train --seeds``: cli/train.py adds these options with
# :func:`add_train_options` and hands such runs to :func:`train_extended`.

RECIPES = ("book", "best-linear")
# TrainConfig fields that mean something to the best-linear recipe; every other option of
# ``train`` configures SGD training, which that recipe does not do.
_BEST_LINEAR_OPTIONS = {"seed", "val_split", "device", "data_dir"}
_FLAGS = {
    "batch_size": "--batch-size",
    "val_split": "--val-split",
    "data_dir": "--data-dir",
    "weight_decay": "--weight-decay",
    "normalize": "--no-normalize",
}


def add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default="book",
        help="book: the chapter's SGD recipe (default); best-linear: standardised pixels, "
        "an L2 penalty in the pixel-correlation metric whose strength is chosen on a "
        "validation split (--val-split, default 10000), full-batch L-BFGS, refit on all "
        "training images",
    )
    parser.add_argument(
        "--seeds",
        metavar="SEEDS",
        help="train once per seed and report mean ± std: a list (0,1,2) or a count (5 = seeds "
        "0 to 4); each seed's run goes to OUT/seed-<k>/",
    )


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def train_extended(args: argparse.Namespace, given: dict) -> int:
    """``train`` with ``--seeds`` or ``--recipe best-linear``; ``given`` holds the TrainConfig
    fields set on the command line."""
    from ..seeds import parse_seeds

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if args.resume is not None:
        raise ConfigError(
            "--resume continues one run of the book's recipe; it does not "
            "combine with --seeds or --recipe best-linear"
        )
    if seeds is not None and "seed" in given:
        raise ConfigError("give either --seed or --seeds, not both")
    try:
        if args.recipe == "best-linear":
            return _train_best_linear(args, given, seeds)
        return _train_book_seeds(args, given, seeds)
    except OSError as e:
        raise SoftmaxRegressionError(
            f"cannot write {e.filename or 'a run file'}: {e.strerror or e}"
        ) from None


def _final_line(m: dict) -> str:
    parts = [f"train loss {m['train_loss']:.4f}", f"train acc {m['train_acc']:.4f}"]
    if "val_acc" in m:
        parts.append(f"val acc {m['val_acc']:.4f}")
    parts.append(f"test acc {m['test_acc']:.4f}")
    return ", ".join(parts) + f" ({m['seconds']:.1f} s)"


def _print_seed_summary(directory: Path, result) -> None:
    for line in result.lines():
        print(line)
    subdirs = ", ".join(f"seed-{s}/" for s in result.seeds)
    print(f"runs saved in {directory}/: {subdirs}, seeds.json, seeds.csv")


def _train_book_seeds(args: argparse.Namespace, given: dict, seeds) -> int:
    from .. import runs
    from ..config import TrainConfig, resolve_device
    from ..progress import ConsoleProgress
    from ..recipes import seed_runs
    from ..seeds import final_metrics

    config = TrainConfig(**given)
    resolve_device(config.device)  # a missing GPU is reported before anything is written
    top = runs.make_run_dir(args.out, args.runs_dir)
    train, test = runs.load_data(config)
    columns = ["epoch", "train_loss", "train_acc", "test_acc"]
    columns += ["val_acc"] if config.val_split else []

    def run_one(seed: int, directory: Path) -> dict:
        if not args.quiet:
            print(f"seed {seed}:")
        progress = None if args.quiet else ConsoleProgress([*columns, "seconds"])
        try:
            outcome = runs.train_run(
                config.replace(seed=seed),
                out=directory,
                train=train,
                test=test,
                progress=progress,
                plots=not args.no_plots,
            )
        finally:
            if progress is not None:
                progress.close()
        m = final_metrics(outcome.result.history)
        if outcome.evaluation is not None:
            m["test_macro_f1"] = outcome.evaluation.macro_f1
        return m

    def on_seed(seed: int, m: dict) -> None:
        print(f"seed {seed}: {_final_line(m)}", flush=True)

    desc = {"recipe": "book", "config": {k: v for k, v in config.to_dict().items() if k != "seed"}}
    result = seed_runs(top, seeds, run_one, description=desc, on_seed=on_seed)
    _print_seed_summary(top, result)
    return 0


def _train_best_linear(args: argparse.Namespace, given: dict, seeds) -> int:
    import dataclasses

    from ..best_linear import BestLinearConfig
    from ..config import resolve_device
    from ..data import load_fashion_mnist
    from ..recipes import best_linear_run, seed_runs
    from ..runs import make_run_dir

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
    base = BestLinearConfig(
        val_split=given.get("val_split", BestLinearConfig.val_split),
        device=given.get("device", "auto"),
    )
    resolve_device(base.device)  # a missing GPU is reported before anything is written
    data_dir = given.get("data_dir")
    train = load_fashion_mnist("train", data_dir)
    test = load_fashion_mnist("test", data_dir)

    outcomes = []

    def run_one(seed: int, directory: Path | None) -> dict:
        cfg = dataclasses.replace(base, seed=seed)
        outcome = best_linear_run(
            cfg,
            out=directory,
            root=args.runs_dir,
            train=train,
            test=test,
            plots=not args.no_plots,
        )
        if not args.quiet:
            for c in outcome.model.selection.candidates:
                mark = (
                    "  <- chosen"
                    if c.weight_decay == outcome.model.selection.chosen_weight_decay
                    else ""
                )
                print(
                    f"  seed {seed}: weight decay {c.weight_decay:g}: val acc {c.val_acc:.4f}{mark}"
                )
        outcomes.append(outcome)
        return outcome.metrics

    if seeds is None:
        m = run_one(given.get("seed", 0), Path(args.out) if args.out else None)
        outcome = outcomes[-1]
        print(outcome.model.how_chosen())
        print(f"final (best-linear, seed {outcome.model.selection.seed}): {_final_line(m)}")
        names = ", ".join(p.name for p in outcome.files)
        print(f"run saved in {outcome.directory}/: {names}")
        return 0
    top = make_run_dir(args.out, args.runs_dir)

    def on_seed(seed: int, m: dict) -> None:
        wd = outcomes[-1].model.selection.chosen_weight_decay
        print(
            f"seed {seed}: weight decay {wd:g} chosen on validation; {_final_line(m)}", flush=True
        )

    desc = {
        "recipe": "best-linear",
        "config": {k: v for k, v in dataclasses.asdict(base).items() if k != "seed"},
    }
    result = seed_runs(top, seeds, run_one, description=desc, on_seed=on_seed)
    _print_seed_summary(top, result)
    return 0
