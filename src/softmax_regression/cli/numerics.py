"""``softmax-regression numerics``: where exp overflows and underflows in each dtype, and the
naive softmax and cross-entropy beside the stable ones, as tables and a figure."""

from __future__ import annotations

import argparse

from ._options import parse_floats


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
    from ..runs.directory import output_dir

    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    scales = parse_floats(args.scales, "--scales")
    out = output_dir(args.out)
    from ..numerics import numerics_report
    from ..runs.numerics import write_numerics

    report = numerics_report(dtypes, scales)
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
    json_file, png_file = write_numerics(out, report)
    print(f"Wrote {json_file} and {png_file}")
    return 0
