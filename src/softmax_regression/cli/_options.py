"""Option values shared by several commands: comma lists of numbers, seeds, where the data
comes from, and the end of a successful command."""

from __future__ import annotations

import argparse
import gc
import sys
from typing import Any

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


# The options that say where the data comes from (train, sweep, evaluate): dest -> flag.
DATA_OPTIONS = {
    "data": "--data",
    "test_data": "--test-data",
    "test_split": "--test-split",
    "image_size": "--image-size",
    "channels": "--channels",
    "label": "--label",
    "test_label": "--test-label",
    "skip_bad": "--skip-bad",
    "max_classes": "--max-classes",
    "stream": "--stream",
}


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data SPEC`` and the options that go with it (docs/own-data.md)."""
    g = parser.add_argument_group(
        "your own data",
        "an image folder, IDX files, arrays (.npz, .npy, .safetensors) or a table (.csv, "
        ".parquet) instead of Fashion-MNIST",
    )
    g.add_argument(
        "--data",
        metavar="SPEC",
        help="a folder of class subfolders (or with train/ and test/), IDX files, .npz, .npy, "
        ".safetensors, .csv/.tsv or .parquet (default: fashion-mnist, found as --data-dir says)",
    )
    g.add_argument(
        "--test-data", metavar="SPEC", help="a separate test set, the same kind as --data"
    )
    g.add_argument(
        "--test-split",
        metavar="FRACTION",
        type=float,
        help="share held out as the test split (seeded, stratified) when --data has no test "
        "part (default: 0.2)",
    )
    g.add_argument(
        "--image-size",
        metavar="H[xW]",
        help="size every image of a folder is brought to (default: the images' own, when "
        "they all agree)",
    )
    g.add_argument(
        "--channels", type=int, choices=(1, 3), help="1 (grayscale) or 3 (RGB) for an image folder"
    )
    g.add_argument(
        "--label",
        metavar="COLUMN",
        help="a table's label column (default: label); for a .npy features file, its .npy "
        "labels file",
    )
    g.add_argument("--test-label", metavar="FILE", help="the .npy labels file of --test-data")
    g.add_argument(
        "--skip-bad",
        action="store_true",
        default=None,
        help="skip unreadable images of a folder (counted) instead of refusing the folder",
    )
    g.add_argument(
        "--max-classes",
        type=int,
        metavar="N",
        help="refuse a label with more distinct values than this (default: 10000)",
    )
    g.add_argument(
        "--stream",
        choices=("auto", "always", "never"),
        help="read .npy, .safetensors or Parquet features block by block from disk instead of "
        "holding them (auto, the default: when they take over half the memory there is; a "
        "directory of x_train-00000.npy shards always streams)",
    )


def data_options_given(args: argparse.Namespace) -> list[str]:
    """The flags of :data:`DATA_OPTIONS` given on the command line."""
    return [flag for dest, flag in DATA_OPTIONS.items() if getattr(args, dest, None) is not None]


def data_spec(args: argparse.Namespace) -> dict[str, Any] | None:
    """The data description the options make (``DataSpec.to_dict()``), or None for the
    built-in Fashion-MNIST. Needs no torch: bad values are reported at once."""
    if not data_options_given(args):
        return None
    from ..data.spec import DEFAULT_MAX_CLASSES, DataSpec

    spec = DataSpec.parse(
        args.data,
        test=args.test_data,
        test_split=args.test_split,
        image_size=args.image_size,
        channels=args.channels,
        label=args.label,
        test_label=args.test_label,
        skip_bad=bool(args.skip_bad),
        max_classes=DEFAULT_MAX_CLASSES if args.max_classes is None else args.max_classes,
        stream=getattr(args, "stream", None),
    )
    return None if spec.is_builtin else spec.to_dict()


def load_spec(spec: dict[str, Any] | None, data_dir: str | None, *, quiet: bool = False):
    """(train, test) of ``spec`` (None: Fashion-MNIST), its notes printed unless ``quiet``."""
    from ..data.spec import DataSpec

    loaded = DataSpec.from_dict(spec).load(data_dir=data_dir, progress=not quiet)
    if not quiet:
        for note in loaded.notes:
            print(f"note: {note}", file=sys.stderr)
    return loaded.train, loaded.test
