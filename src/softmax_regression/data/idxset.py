"""IDX files of the MNIST family (MNIST, Fashion-MNIST, KMNIST, EMNIST, ...), any of them.

Where: torchvision's raw layout (``DIR/<Name>/raw/`` or ``DIR/raw/``), or a directory of the
files, under any prefix (``train-images-idx3-ubyte[.gz]``, ``t10k-...``,
``emnist-balanced-train-images-idx3-ubyte.gz``), or one images file (its labels file is the
same name with ``labels-idx1``). Every file goes through :func:`~.idx.read_idx`: header,
length and gzip checks and the size limit, before anything is allocated; no checksum (these
are not the published Fashion-MNIST files; ``load_fashion_mnist`` verifies those).

Class names: ``classes.txt`` beside the files (one name per line, line k names label k), or
EMNIST's ``<prefix>mapping.txt`` (``label code ...`` per line, the character with that code
names the label); otherwise the label values themselves ("0", "1", ...). Images keep the
rule of the family, light on dark (``image_rule="fashion-mnist"``). EMNIST stores its images
transposed; they are read as stored.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from ..errors import CorruptDataError, DataError
from .arrays import read_class_names
from .idx import read_idx
from .parts import Part
from .spec import IDX_NAME

SPLIT_NAMES = {"train": "train", "t10k": "test", "test": "test"}


def _idx_files(directory: Path) -> dict[tuple[str, str, str], Path]:
    """(prefix, split, images|labels) -> file; a raw file wins over its .gz."""
    found: dict[tuple[str, str, str], Path] = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise DataError(f"{directory}: cannot list the directory ({e.strerror or e})") from None
    for n in names:
        m = IDX_NAME.match(n)
        if m is None:
            continue
        key = (m["prefix"], SPLIT_NAMES[m["split"]], m["what"])
        if key not in found or not m["gz"]:
            found[key] = directory / n
    return found


def locate(path: Path) -> tuple[Path, dict[tuple[str, str, str], Path]]:
    """The directory holding the files (following torchvision's raw layout) and the files."""
    tried = [path, path / "raw"]
    with contextlib.suppress(OSError):
        tried += sorted(p / "raw" for p in path.iterdir() if p.is_dir() and p.name != "raw")
    holding = [(d, f) for d in tried if d.is_dir() and (f := _idx_files(d))]
    if not holding:
        raise DataError(f"{path}: no IDX files (*-images-idx3-ubyte[.gz], *-labels-idx1-ubyte)")
    if len(holding) > 1:
        raise DataError(
            f"{path}: IDX files in several places ({', '.join(str(d) for d, _ in holding)}); "
            "pass the one to read"
        )
    return holding[0]


def read(path: Path, labels: str | None = None) -> tuple[Part, Part | None]:
    """(train part, test part or None) from a directory or one images file (its labels file
    ``labels``, else found by name)."""
    if path.is_file():
        m = IDX_NAME.match(path.name)
        found = Path(labels) if labels is not None else None
        if found is None and m is not None and m["what"] == "images":
            guess = path.with_name(path.name.replace("-images-idx3-", "-labels-idx1-"))
            if not guess.exists():
                alt = guess.with_name(
                    guess.name[:-3] if guess.name.endswith(".gz") else guess.name + ".gz"
                )
                guess = alt if alt.exists() else guess
            found = guess
        if found is None or not found.exists():
            raise DataError(
                f"{path}: its labels file was not found (expected "
                f"{found.name if found else 'NAME-labels-idx1-ubyte beside it'}; or pass --label)"
            )
        prefix = m["prefix"] if m is not None else ""
        names = _class_names(path.parent, prefix)
        return _part(path, found, names, _name(path.parent, prefix)), None
    directory, files = locate(path)
    prefixes = sorted({k[0] for k in files})
    if len(prefixes) > 1:
        shown = ", ".join(repr(p) for p in prefixes)
        raise DataError(
            f"{directory}: IDX files of several sets ({shown}); pass one images file, e.g. "
            f"{files.get((prefixes[0], 'train', 'images'), next(iter(files.values())))}"
        )
    prefix = prefixes[0]
    names = _class_names(directory, prefix)
    parts: dict[str, Part] = {}
    for split in ("train", "test"):
        img, lbl = files.get((prefix, split, "images")), files.get((prefix, split, "labels"))
        if img is None and lbl is None:
            continue
        if img is None or lbl is None:
            have = img or lbl
            raise DataError(f"{have}: its {'labels' if lbl is None else 'images'} file is missing")
        parts[split] = _part(img, lbl, names, _name(directory, prefix))
    if "train" not in parts:
        raise DataError(f"{directory}: no training files (*train-images-idx3-ubyte)")
    return parts["train"], parts.get("test")


def _name(directory: Path, prefix: str) -> str:
    if prefix.strip("-_"):
        return prefix.strip("-_")
    return directory.parent.name if directory.name == "raw" else directory.name


def _class_names(directory: Path, prefix: str) -> dict[int, str] | None:
    txt = directory / "classes.txt"
    if txt.is_file():
        return dict(enumerate(read_class_names(txt)))
    mapping = directory / f"{prefix}mapping.txt"
    if not mapping.is_file():
        return None
    names: dict[int, str] = {}
    n = 0
    try:
        for line in mapping.read_text(encoding="utf-8").splitlines():
            n += 1
            if not line.strip():
                continue
            fields = line.split()
            names[int(fields[0])] = chr(int(fields[1]))
    except (OSError, UnicodeDecodeError, ValueError, IndexError, OverflowError):
        raise DataError(
            f"{mapping}: cannot read the class mapping (expected 'label code' per line; line {n})"
        ) from None
    return names or None


def _part(images: Path, labels: Path, names: dict[int, str] | None, name: str) -> Part:
    img = read_idx(images, checksum=True)
    lbl = read_idx(labels, checksum=True)
    x, y = img.array, lbl.array
    if x.ndim == 3 and x.dtype == np.uint8:
        rule: str | None = "fashion-mnist"
    elif x.ndim == 2:
        x, rule = np.ascontiguousarray(x, dtype=np.float32), None
    else:
        raise CorruptDataError(
            f"{images}: expected uint8 images (N, H, W) or features (N, D), got {x.dtype} {x.shape}"
        )
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise CorruptDataError(f"{labels}: expected integer labels (N,), got {y.dtype} {y.shape}")
    if len(y) != len(x):
        raise CorruptDataError(
            f"{labels}: {len(y):,} labels but {images.name} has {len(x):,} images"
        )
    if names is not None:
        unknown = np.setdiff1d(np.unique(y), np.array(sorted(names)))
        if unknown.size:
            raise DataError(f"{labels}: label {int(unknown[0])} has no class name in the mapping")
    return Part(
        inputs=x,
        labels=y.astype(np.int64),
        where=str(images),
        name=name,
        image_rule=rule,
        names=names,
        sha256={images.name: img.sha256, labels.name: lbl.sha256},
    )
