"""Option values shared by several commands: comma lists of numbers, seeds, and the end of a
successful command."""

from __future__ import annotations

import argparse
import gc

from ..errors import ConfigError, SoftmaxRegressionError


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


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2); a single number ``"5"`` means five seeds, (0, 1, 2, 3, 4)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(
            f"--seeds must be a count (e.g. 5) or a comma-separated list (e.g. 0,1,2), got {text!r}"
        ) from None
    if len(values) == 1:
        if values[0] < 1:
            raise ConfigError(f"--seeds count must be at least 1, got {values[0]}")
        return tuple(range(values[0]))
    if any(v < 0 for v in values):
        raise ConfigError(f"seeds must not be negative, got {text!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"--seeds lists a seed twice: {text!r}")
    return tuple(values)


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """The MODEL argument of ``evaluate`` and ``predict``."""
    parser.add_argument("model", metavar="MODEL", help="model.safetensors or a run directory")


def write_error(e: OSError) -> SoftmaxRegressionError:
    """An OSError while writing a run's files, as the one-line error the command prints."""
    return SoftmaxRegressionError(f"cannot write {e.filename or 'a run file'}: {e.strerror or e}")


def finish() -> int:
    """Success. The process usually ends next: freezing the objects alive now spares the
    interpreter's final garbage collection a walk through everything torch's import created
    (0.35 s of every command here, measured). For a caller in the same process the only
    effect is that these objects are left out of later collections."""
    gc.freeze()
    return 0
