"""``softmax-regression``: a thin command line over the library.

Each command lives in its own module (``train``, ``evaluate``, ``predict``, ``data``,
``sweep``, ``numerics``, ``report``) with a ``register(subparsers)`` function that adds its
parser and sets ``func`` (a callable taking the parsed namespace and returning an exit
code); options that several commands share are parsed by ``_options``. This module only
assembles them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import SoftmaxRegressionError
from . import data, evaluate, numerics, predict, report, sweep, train

COMMANDS = (data, train, evaluate, predict, numerics, sweep, report)

PROG = "softmax-regression"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: --data is not --data-dir, and a later option cannot change what
        # an existing command line means.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

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


# The status of a command whose output pipe was closed by its reader (``... | head -1``):
# 128 + SIGPIPE, what the shell reports for a program the signal ended, such as ``yes``.
EXIT_CLOSED_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    from .. import stopping
    from .parallel import is_rank_0, leave, silent_on_this_rank

    stopping.install()  # SIGTERM and SIGHUP end a command as Ctrl-C does
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        args.argv = argv  # for --nproc, which starts this same command again as each rank
        try:
            code = int(args.func(args) or 0)
            stopping.ending()
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
            return code
        except KeyboardInterrupt as e:
            stopping.ending()
            return _stopped(e, is_rank_0())
        except Exception as e:
            stopping.ending()
            if stopping.received() is not None:
                # A rank whose peer stopped first fails in a collective: the signal's doing.
                return _stopped(e, is_rank_0())
            if not isinstance(e, SoftmaxRegressionError):
                raise
            if not silent_on_this_rank(e):
                print(f"{PROG}: error: {e}", file=sys.stderr)
            return e.exit_code
        finally:
            leave()
    except BrokenPipeError:
        return _closed_pipe()


def _stopped(error: BaseException, speaks: bool) -> int:
    """A command that Ctrl-C or a termination signal ended: one line (from rank 0 alone under
    torchrun), saying how to continue when a resumable run was left, and the shell's exit
    status for that signal (130 for Ctrl-C)."""
    from .. import stopping

    signum = error.signum if isinstance(error, stopping.Terminated) else stopping.received()
    word = f"terminated by {stopping.signal_name(signum)}" if signum else "interrupted"
    run = getattr(error, "run_directory", None)
    if speaks:
        hint = f"; resume with `{PROG} train --resume {run}`" if run is not None else ""
        print(f"{PROG}: {word}{hint}", file=sys.stderr)
    return 128 + signum if signum else 130


def _closed_pipe() -> int:
    """Whoever read the output stopped reading: end quietly. Output still buffered would
    raise again when the interpreter flushes it at exit, so stdout is pointed at devnull."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor (a caller's StringIO): nothing to do
        pass
    return EXIT_CLOSED_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
