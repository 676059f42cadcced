"""``softmax-regression report RUN_DIR|RUNS_DIR [--out FILE]``: a run's page, or an index."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML page for a run (or an index of a directory of runs)",
        description="Write report.html: one offline HTML file with the run's curves, "
        "evaluation, confusion gallery, weights and a 'Try it' panel running the model. "
        "Given a --seeds or sweep directory, its summary page; given a directory of runs, "
        "an index comparing them (and the page of each run that has none).",
    )
    p.add_argument("path", metavar="DIR", help="a run directory, or a directory of runs")
    p.add_argument("--out", help="file to write (default: DIR/report.html)")
    p.add_argument(
        "--data-dir",
        help="where Fashion-MNIST's test split is, for the gallery (default: the usual search)",
    )
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ReportError

    path = Path(args.path)  # known from the arguments alone: answered before torch is imported
    if not path.exists():
        raise ReportError(f"{path}: no such directory")
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory (give a run directory or a directory of runs)")

    from ..report import write_report

    path = write_report(args.path, args.out, data_dir=args.data_dir)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def add_no_report_option(parser: argparse.ArgumentParser) -> None:
    """``--no-report`` for the commands that write a page into their directory at the end."""
    parser.add_argument(
        "--no-report", action="store_true", help="do not write report.html into the directory"
    )


def report_after(directory, args: argparse.Namespace, test=None):
    """Write the page of a directory a command has just written, unless ``--no-report``;
    its path, or None.

    The run itself is complete by then, so a page that cannot be written is a one-line note,
    not a failed command."""
    if getattr(args, "no_report", False):
        return None
    from ..errors import SoftmaxRegressionError
    from ..report import write_report

    try:
        return write_report(directory, test=test, data_dir=getattr(args, "data_dir", None))
    except (SoftmaxRegressionError, OSError) as e:
        print(f"note: no report page written ({e})")
        return None
