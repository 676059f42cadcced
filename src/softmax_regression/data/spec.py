"""Where training data comes from: a :class:`DataSpec`, and loading it into two splits.

A spec is what a user typed (``--data PATH``, ``--test-data PATH``, ``--label``, ...) made exact:
the kind of source, detected from the path once, absolute paths, and the options that shape
the data. It is plain JSON (:meth:`DataSpec.to_dict`), so a run records it in its config and
a resumed run reads the same data again.

:meth:`DataSpec.load` hands the path to the reader of its kind (``folder``, ``idxset``,
``arrays``, ``tables``), each of which returns :class:`~.parts.Part` s; ``parts.assemble``
then does what every source shares (class names, label encoding, the checks, a held-out
test split) and returns :class:`LoadedData`. Nothing after that asks which format it was.

This module imports neither numpy nor torch: the command line parses and checks a spec
before anything heavy is imported.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DataError, DataNotFoundError

if TYPE_CHECKING:
    from .dataset import Dataset

BUILTIN = "fashion-mnist"
# kind -> how messages name it
KINDS = {
    BUILTIN: "Fashion-MNIST (built in)",
    "folder": "image folder",
    "idx": "IDX files",
    "npz": ".npz arrays",
    "npy": ".npy arrays",
    "safetensors": ".safetensors arrays",
    "table": "table",
    "shards": ".npy shards",
}
TABLE_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet", ".pq")
# What can be read block by block from disk (data/stream.py), and how (data/streamed.py).
STREAMABLE = ("npy", "safetensors", "table", "shards")
STREAM_MODES = ("auto", "always", "never")
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".joblib")
DEFAULT_TEST_SPLIT = 0.2
DEFAULT_MAX_CLASSES = 10_000
# A shard of a shard directory (data/stream.py): x_train-00000.npy, y_test-00003.npy, ...
SHARD_NAME = re.compile(r"^[xy]_(train|test)-\d+\.npy$")
# Matches the MNIST family's file names, any prefix: train-images-idx3-ubyte[.gz],
# emnist-balanced-t10k-labels-idx1-ubyte.gz, ...
IDX_NAME = re.compile(
    r"^(?P<prefix>.*?)(?P<split>train|t10k|test)-(?P<what>images|labels)-idx(?P<ndim>\d)-ubyte"
    r"(?P<gz>\.gz)?$"
)


@dataclass(frozen=True)
class LoadedData:
    """A source read into memory: the two splits, and what the command line should print."""

    train: Dataset
    test: Dataset
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how to read it (JSON-able; see :meth:`parse`).

    ``kind`` is one of :data:`KINDS`; ``path`` absolute (None for the built-in set). ``label``
    is a table's label column, or the labels file of one .npy features or IDX images file.
    ``test`` is a separate source for the test split (same kind), ``test_split`` the fraction
    held out when the source has no test part (default 0.2 then). ``image_size`` ``(H, W)``
    and ``channels`` apply to image folders; by default they come from the images.
    """

    kind: str = BUILTIN
    path: str | None = None
    label: str | None = None
    test: DataSpec | None = None
    test_split: float | None = None
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    skip_bad: bool = False
    max_classes: int = DEFAULT_MAX_CLASSES
    # "auto", "always" or "never": read the features block by block from disk (streamed.py)
    stream: str = "auto"

    @property
    def is_builtin(self) -> bool:
        return self.kind == BUILTIN

    def describe(self) -> str:
        """One line for people: ``image folder /data/pets``."""
        if self.is_builtin:
            return KINDS[BUILTIN]
        text = f"{KINDS[self.kind]} {self.path}"
        if self.label and self.kind == "npy":
            text += f" (labels {self.label})"
        elif self.label:
            text += f" (label column {self.label!r})"
        if self.test is not None:
            text += f", test: {self.test.path}"
        return text

    # ---- JSON ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "label": self.label,
            "test": None if self.test is None else self.test.to_dict(),
            "test_split": self.test_split,
            "image_size": None if self.image_size is None else list(self.image_size),
            "channels": self.channels,
            "skip_bad": self.skip_bad,
            "max_classes": self.max_classes,
            **({"stream": self.stream} if self.stream != "auto" else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DataSpec:
        """The spec :meth:`to_dict` wrote (None or {} : the built-in set)."""
        if not d:
            return cls()
        if not isinstance(d, dict) or d.get("kind", BUILTIN) not in KINDS:
            raise ConfigError(f"not a data spec: {d!r}")
        size = d.get("image_size")
        return cls(
            kind=d.get("kind", BUILTIN),
            path=d.get("path"),
            label=d.get("label"),
            test=None if d.get("test") is None else cls.from_dict(d["test"]),
            test_split=d.get("test_split"),
            image_size=None if size is None else (int(size[0]), int(size[1])),
            channels=d.get("channels"),
            skip_bad=bool(d.get("skip_bad", False)),
            max_classes=int(d.get("max_classes", DEFAULT_MAX_CLASSES)),
            stream=str(d.get("stream", "auto")),
        )

    # ---- from what a user typed ---------------------------------------------------------

    @classmethod
    def parse(
        cls,
        text_or_path: str | os.PathLike[str] | None = None,
        *,
        test: str | os.PathLike[str] | None = None,
        test_split: float | None = None,
        image_size: int | str | tuple[int, int] | None = None,
        channels: int | str | None = None,
        label: str | os.PathLike[str] | None = None,
        test_label: str | os.PathLike[str] | None = None,
        skip_bad: bool = False,
        max_classes: int = DEFAULT_MAX_CLASSES,
        stream: str | None = None,
    ) -> DataSpec:
        """A spec from command-line-like values; every problem is one :class:`ConfigError`
        or :class:`DataError` line.

        ``text_or_path``: None or ``"fashion-mnist"`` (the built-in set), else a directory or
        file whose kind is detected (:func:`detect`). ``label``: for a CSV/TSV/Parquet table
        the label column (default ``label``); for one .npy features file the .npy file of its
        labels; for one IDX images file its labels file (default: found by name);
        ``test_label`` is the same for ``test``. ``image_size``: ``28``, ``"28x32"`` or
        ``(28, 32)`` (height x width); ``channels``: 1 or 3. ``stream``: ``auto``,
        ``always`` or ``never`` (see :mod:`~softmax_regression.data.streamed`).
        """
        size = parse_image_size(image_size)
        chans = _channels(channels)
        frac = _fraction(test_split)
        if isinstance(max_classes, bool) or not isinstance(max_classes, int) or max_classes < 2:
            raise ConfigError(
                f"--max-classes must be an integer of at least 2, got {max_classes!r}"
            )
        if text_or_path is None or str(text_or_path) == BUILTIN:
            given = [
                name
                for name, v in (
                    ("--test-data", test),
                    ("--test-split", test_split),
                    ("--image-size", image_size),
                    ("--channels", channels),
                    ("--label", label),
                    ("--skip-bad", skip_bad or None),
                    ("--stream", stream),
                )
                if v is not None
            ]
            if given:
                raise ConfigError(
                    f"{given[0]} applies to --data of your own; Fashion-MNIST has its own "
                    "test split and fixed images"
                )
            return cls(max_classes=max_classes)
        if stream is not None and stream not in STREAM_MODES:
            raise ConfigError(f"--stream must be one of {', '.join(STREAM_MODES)}, got {stream!r}")
        kind, path = detect(text_or_path)
        lab = _label(kind, path, label, "--label")
        if (size is not None or chans is not None) and kind != "folder":
            raise ConfigError(
                f"--image-size and --channels apply to image folders, not to {KINDS[kind]} ({path})"
            )
        test_spec = None
        if test is not None:
            if frac is not None:
                raise ConfigError("give either --test-data or --test-split, not both")
            tkind, tpath = detect(test)
            if tkind != kind:
                raise ConfigError(
                    f"--test-data must be the same kind of source as --data ({KINDS[kind]}), "
                    f"got {KINDS[tkind]} ({tpath})"
                )
            tlabel = lab if kind == "table" else _label(tkind, tpath, test_label, "--test-label")
            test_spec = cls(kind=tkind, path=str(tpath), label=tlabel)
        elif test_label is not None:
            raise ConfigError("--test-label goes with --test-data")
        return cls(
            kind=kind,
            path=str(path),
            label=lab,
            test=test_spec,
            test_split=frac,
            image_size=size,
            channels=chans,
            skip_bad=bool(skip_bad),
            max_classes=max_classes,
            stream=stream or "auto",
        )

    # ---- reading ------------------------------------------------------------------------

    def load(
        self, *, data_dir: str | os.PathLike[str] | None = None, progress: bool = False
    ) -> LoadedData:
        """Read the data: a train and a test :class:`~.dataset.Dataset`, and notes to print.

        ``data_dir`` is where the built-in Fashion-MNIST is looked for (as ``--data-dir``);
        ``progress`` draws a bar while an image folder is decoded.
        """
        if self.is_builtin:
            from .dataset import load_fashion_mnist

            return LoadedData(
                train=load_fashion_mnist("train", data_dir),
                test=load_fashion_mnist("test", data_dir),
            )
        from . import parts

        if self.kind in STREAMABLE:
            from .streamed import load_streamed

            loaded = load_streamed(self)
            if loaded is not None:
                return loaded
        train, test = _read(self, progress=progress)
        if test is not None and self.test is not None:
            raise ConfigError(
                f"{self.path} has its own test part; --test-data {self.test.path} would replace it "
                "(pass only one of them)"
            )
        if test is not None and self.test_split is not None:
            raise ConfigError(
                f"{self.path} has its own test part; --test-split applies to data without one"
            )
        if self.test is not None:
            test = _read_test(self, train, progress=progress)
        return parts.assemble(
            train,
            test,
            test_split=DEFAULT_TEST_SPLIT if self.test_split is None else self.test_split,
            max_classes=self.max_classes,
        )

    def with_options(self, **changes: Any) -> DataSpec:
        return replace(self, **changes)


def load_data(spec: DataSpec | str | os.PathLike[str] | None = None, **options: Any) -> LoadedData:
    """``load_data("pets/")``, ``load_data("table.csv", label="species")``: parse and load.

    ``options`` are :meth:`DataSpec.parse`'s, plus ``data_dir`` and ``progress`` for
    :meth:`DataSpec.load`.
    """
    load_options = {k: options.pop(k) for k in ("data_dir", "progress") if k in options}
    if not isinstance(spec, DataSpec):
        spec = DataSpec.parse(spec, **options)
    elif options:
        raise ConfigError("options go with a path, not with a DataSpec (use with_options)")
    return spec.load(**load_options)


# ---- detection ---------------------------------------------------------------------------


def detect(text_or_path: str | os.PathLike[str]) -> tuple[str, Path]:
    """(kind, absolute path) of a data source, from the path alone (a directory is listed)."""
    path = Path(os.path.expanduser(str(text_or_path)))
    name = path.name.lower()
    if name.endswith(PICKLE_SUFFIXES):
        raise ConfigError(
            f"{path}: {Path(name).suffix} files are pickles, which are never unpickled here (a "
            "pickle can run any code); save the arrays instead, e.g. "
            "np.savez('data.npz', x_train=X, y_train=y, x_test=Xt, y_test=yt) "
            "(or .npy / .safetensors)"
        )
    try:
        is_dir = path.is_dir()
        exists = is_dir or path.exists()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if not exists:
        raise DataNotFoundError(f"{path}: no such file or directory")
    path = path.resolve()
    if is_dir:
        return _detect_dir(path), path
    if name.endswith(TABLE_SUFFIXES):
        return "table", path
    for suffix in (".npz", ".npy", ".safetensors"):
        if name.endswith(suffix):
            return suffix[1:], path
    if IDX_NAME.match(path.name) or name.endswith(("-ubyte", "-ubyte.gz", ".idx")):
        return "idx", path
    raise ConfigError(
        f"{path}: unknown kind of data file; supported: a folder of class folders, IDX files, "
        ".npz, .npy, .safetensors, .csv, .tsv, .parquet"
    )


def _names(directory: Path) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(directory) if not e.name.startswith(".")]
    except OSError as e:
        raise DataError(f"{directory}: cannot list the directory ({e.strerror or e})") from None


def _detect_dir(path: Path) -> str:
    entries = _names(path)
    files = {e.name.lower() for e in entries if e.is_file()}
    dirs = {e.name: e for e in entries if e.is_dir()}
    if any(IDX_NAME.match(n) for n in files) or _idx_below(path, dirs):
        return "idx"
    if any(SHARD_NAME.match(n) for n in files):
        return "shards"
    if files & {"x.npy", "x_train.npy"}:
        return "npy"
    if dirs:
        return "folder"
    raise DataError(
        f"{path}: neither class folders, IDX files nor X.npy/y.npy arrays in this directory "
        "(see docs/own-data.md for the layouts read)"
    )


def _idx_below(path: Path, dirs: dict[str, os.DirEntry]) -> bool:
    """torchvision's raw layout: DIR/raw/ or DIR/<Name>/raw/ holding IDX files."""
    candidates = [path / "raw"] if "raw" in dirs else []
    candidates += [path / n / "raw" for n in dirs]
    for raw in candidates:
        try:
            if raw.is_dir() and any(IDX_NAME.match(n.lower()) for n in os.listdir(raw)):
                return True
        except OSError:
            continue
    return False


def _label(kind: str, path: Path, label: Any, option: str) -> str | None:
    if label is None:
        if kind == "npy" and path.is_file():
            raise ConfigError(
                f"{path}: a .npy features file needs its labels: pass {option} LABELS.npy "
                "(or put X.npy and y.npy in one directory)"
            )
        return None
    if kind == "table":
        return str(label)
    if kind in ("npy", "idx") and path.is_file():
        lpath = Path(os.path.expanduser(str(label)))
        if not lpath.is_file():
            raise DataNotFoundError(f"{lpath}: no such labels file ({option})")
        return str(lpath.resolve())
    raise ConfigError(
        f"{option} applies to tables (the label column) and to one .npy or IDX file (its "
        f"labels file), not to {KINDS[kind]} ({path})"
    )


def parse_image_size(value: int | str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``28`` / ``"28"`` -> (28, 28); ``"28x32"`` / ``(28, 32)`` -> (28, 32): height x width."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            parts = value.lower().replace(" ", "").split("x")
            if len(parts) > 2:
                raise ValueError
            sizes = [int(p) for p in parts]
        elif isinstance(value, int) and not isinstance(value, bool):
            sizes = [value]
        else:
            sizes = [int(v) for v in value]  # type: ignore[union-attr]
            if any(isinstance(v, bool) or int(v) != v for v in value):  # type: ignore[union-attr]
                raise ValueError
    except (TypeError, ValueError):
        sizes = []
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or not all(1 <= s <= 16384 for s in sizes):
        raise ConfigError(
            f"--image-size must be H or HxW (pixels, 1 to 16384), e.g. 28 or 32x48; got {value!r}"
        )
    return sizes[0], sizes[1]


def _channels(value: int | str | None) -> int | None:
    if value is None:
        return None
    if str(value) not in ("1", "3"):
        raise ConfigError(f"--channels must be 1 (grayscale) or 3 (RGB), got {value!r}")
    return int(value)


def _fraction(value: float | None) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if isinstance(value, bool) or not 0.0 < f < 1.0:
        raise ConfigError(f"--test-split must be a fraction between 0 and 1, got {value!r}")
    return f


# ---- dispatch ----------------------------------------------------------------------------


def _read(spec: DataSpec, *, progress: bool) -> tuple[Any, Any]:
    path = Path(spec.path or "")
    if spec.kind == "folder":
        from . import folder

        return folder.read(
            path,
            image_size=spec.image_size,
            channels=spec.channels,
            skip_bad=spec.skip_bad,
            progress=progress,
        )
    if spec.kind == "idx":
        from . import idxset

        return idxset.read(path, labels=spec.label)
    if spec.kind in ("npz", "npy", "safetensors"):
        from . import arrays

        return arrays.read(spec.kind, path, labels=spec.label)
    if spec.kind == "table":
        from . import tables

        return tables.read(path, label=spec.label), None
    raise ConfigError(f"unknown kind of data source {spec.kind!r}")


def _read_test(spec: DataSpec, train: Any, *, progress: bool) -> Any:
    """The separate test source (--test-data), read to match the training part."""
    assert spec.test is not None and spec.test.path is not None
    path = Path(spec.test.path)
    if spec.kind == "folder":
        from . import folder

        return folder.read_test(path, train, skip_bad=spec.skip_bad, progress=progress)
    if spec.kind == "table":
        from . import tables

        return tables.read(path, label=spec.label, columns=train.columns)
    one, two = _read(spec.test, progress=progress)
    if two is not None:
        raise ConfigError(
            f"--test-data {path} is itself split into a train and a test part; pass it as --data"
        )
    return one
