"""``softmax-regression sweep``: the book's recipe for every combination of learning rates,
batch sizes and epochs, several seeds each; mean ± std of the final metrics."""

from __future__ import annotations

import argparse

from . import parallel
from ._options import add_data_options, data_spec, load_spec, parse_floats, parse_ints, parse_seeds
from .report import add_no_report_option, report_after


def register(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser(
        "sweep",
        help="train every combination of learning rates, batch sizes and epochs, several seeds",
        description="Train the book's recipe for every combination of --lr, --batch-size and "
        "--epochs, once per seed, on data loaded once; print mean ± std of the final metrics "
        "and write sweep.csv, sweep.json, curves.png and report.html to --out.",
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
    w.add_argument(
        "--standardize",
        action="store_true",
        help="standardise every input with the training split's mean and std",
    )
    w.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    w.add_argument("--data-dir", help="directory with the Fashion-MNIST IDX files")
    w.add_argument("--out", default="runs/sweep", help="output directory (default: %(default)s)")
    parallel.add_options(w)  # --nproc and --dist-timeout
    w.add_argument("--quiet", "-q", action="store_true", help="print only the table")
    add_no_report_option(w)
    add_data_options(w)
    w.set_defaults(func=_sweep)


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
    from ..runs.directory import output_dir

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
        standardize=args.standardize,
        data=data_spec(args),
    )
    for s in settings:  # every setting is checked before any training starts
        base.replace(lr=s.lr, batch_size=s.batch_size, epochs=s.epochs)
    out = output_dir(args.out)
    code = parallel.relaunch(args)  # --nproc N: this command again, as N ranks
    if code is not None:
        return code
    # Everything that the arguments alone can get wrong has been checked: now torch.
    world = parallel.join(args, args.device)
    from ..runs.sweep import write_sweep

    if world is not None:  # each rank trains whole runs, on its own device
        asked = {k: v for k, v in base.to_dict().items() if k not in ("data_dir", "device")}
        world.check_same({**asked, "grid": settings, "seeds": seeds, "out": str(out)})
        base = base.replace(device=world.device.type)

    quiet = args.quiet or (world is not None and not world.is_main)
    train, test = load_spec(base.data, args.data_dir, quiet=quiet)
    runs = len({(s.lr, s.batch_size) for s in settings}) * len(seeds)
    if not args.quiet:
        over = f" over {world.size} ranks" if world is not None and world.parallel else ""
        print(f"{len(settings)} settings x {len(seeds)} seeds: {runs} training runs{over}")
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

    result = sweep.run_sweep(base, settings, seeds, train, test, on_run=on_run, world=world)
    for line in sweep_table(result):
        print(line)
    if world is not None and not world.is_main:
        return 0  # rank 0 writes the files
    csv_file, json_file, png_file = write_sweep(out, result)
    page = report_after(out, args, test)
    print(
        f"{len(settings)} settings, {result.trained_epochs} epochs trained in "
        f"{result.seconds:.1f} s; wrote {csv_file}, {json_file}, {png_file}"
        + (f", {page}" if page else "")
    )
    return 0
