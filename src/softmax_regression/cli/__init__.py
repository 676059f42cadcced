"""``softmax-regression``: a thin command line over the library.

Each command lives in its own module (``train``, ``evaluate``, ``predict``, ``data``,
``sweep``, ``numerics``, ``report``) with a ``register(subparsers)`` function that adds its
parser and sets ``func`` (a callable taking the parsed namespace and returning an exit
code); options that several commands share are parsed by ``_options``. This module only
assembles them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import SoftmaxRegressionError
from . import data, evaluate, numerics, predict, report, sweep, train

COMMANDS = (data, train, evaluate, predict, numerics, sweep, report)

PROG = "softmax-regression"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog=PROG, description="Softmax regression on Fashion-MNIST.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SoftmaxRegressionError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
