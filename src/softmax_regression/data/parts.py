"""What every reader returns (:class:`Part`), and what every source shares after reading
(:func:`assemble`): class names, labels encoded as int64 indices, the checks, and a held-out
test split when the source has none.

A reader only gets its arrays out of its files; the rules here are the same for an image
folder and a CSV table, so they are written once:

* classes come from the source when it names them (folder names, a ``classes`` entry, a
  mapping file: ``Part.names``), else they are the sorted unique training label values (ints
  sorted as numbers, strings as strings); float labels must be whole numbers;
* zero rows, fewer than 2 classes, more than ``max_classes`` classes, a test label never
  seen in training and a train/test shape mismatch are each refused in one line;
* a source without a test part gives ``test_split`` of its examples (stratified, seed 0,
  independent of any training seed) as the test split; both are subsets sharing storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .spec import LoadedData

# Seed of the held-out test split: fixed, so that every run on a source tests on the same part.
TEST_SPLIT_SEED = 0


@dataclass
class Part:
    """One split as a reader found it.

    ``inputs``: numpy uint8 images ``(N, H, W)`` / ``(N, C, H, W)`` or float32 features
    ``(N, D)`` (a memory map stays one); ``labels``: ``(N,)`` label values of any kind;
    ``names``: label value -> class name when the source names its classes (their order is
    the order of the sorted values); ``where``: the file or directory, for messages.
    """

    inputs: Any
    labels: Any
    where: str
    name: str
    image_rule: str | None = None
    names: dict[Any, str] | None = None
    sha256: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    columns: list[str] | None = None  # a table's feature columns, in order


def assemble(
    train: Part,
    test: Part | None,
    *,
    test_split: float,
    max_classes: int,
) -> LoadedData:
    import torch

    from .dataset import Dataset

    for part in (train, test):
        if part is None:
            continue
        if len(part.labels) == 0:
            raise DataError(f"{part.where}: no examples (zero rows)")
        if len(part.labels) != len(part.inputs):
            raise DataError(
                f"{part.where}: {len(part.labels):,} labels but {len(part.inputs):,} inputs"
            )
    if test is not None:
        _check_shapes(train, test)
    classes, train_idx, test_idx = encode_labels(train, test, max_classes)
    notes = list(train.notes) + (list(test.notes) if test is not None else [])

    def dataset(part: Part, idx: np.ndarray, split: str) -> Dataset:
        if getattr(part.inputs, "blocks", None) is not None:  # a RowSource: rows stay on disk
            from .streamed import StreamedDataset

            return StreamedDataset(  # type: ignore[return-value]
                source=part.inputs,
                labels=torch.from_numpy(idx.astype(np.int64, copy=False)),
                split=split,
                classes=classes,
                sha256=dict(part.sha256),
                name=part.name,
                feature_names=None if part.columns is None else tuple(part.columns),
            )
        return Dataset(
            inputs=torch.from_numpy(part.inputs),
            labels=torch.from_numpy(idx.astype(np.int64, copy=False)),
            split=split,
            classes=classes,
            source=part.where,
            sha256=dict(part.sha256),
            image_rule=part.image_rule,
            name=part.name,
            feature_names=None if part.columns is None else tuple(part.columns),
        )

    whole = dataset(train, train_idx, "train")
    if test is not None:
        assert test_idx is not None
        return LoadedData(whole, dataset(test, test_idx, "test"), notes)
    from .split import split_validation  # torch, imported only when a split is made

    n = len(whole)
    n_test = round(test_split * n)
    if n_test < 1 or n_test >= n:
        raise ConfigError(
            f"{train.where}: {n:,} examples are too few to hold out {test_split:.0%} as a test "
            "split; pass --test-data with a test set, or another --test-split"
        )
    keep, held = split_validation(n_test, whole.labels, TEST_SPLIT_SEED, len(classes))
    notes.insert(
        0,
        f"no test part in {train.where}: held out {test_split:.0%} ({n_test:,} of {n:,} "
        f"examples, stratified, seed {TEST_SPLIT_SEED}) as the test split",
    )
    return LoadedData(whole.subset(keep, split="train"), whole.subset(held, split="test"), notes)


def _describe_shape(part: Part) -> str:
    shape = part.inputs.shape[1:]
    if part.inputs.dtype == np.uint8 and len(shape) in (2, 3):
        c, h, w = (1, *shape) if len(shape) == 2 else shape
        return f"images {h}x{w} with {c} channel{'s' if c > 1 else ''}"
    return f"{shape[0]:,} features" if len(shape) == 1 else f"inputs of shape {shape}"


def _check_shapes(train: Part, test: Part) -> None:
    def key(p: Part) -> tuple:
        shape = tuple(p.inputs.shape[1:])
        if p.inputs.dtype == np.uint8 and len(shape) == 2:
            shape = (1, *shape)
        return p.inputs.dtype == np.uint8, shape

    if key(train) != key(test):
        raise DataError(
            f"train and test do not match: {train.where} has {_describe_shape(train)}, "
            f"{test.where} has {_describe_shape(test)}"
        )


def _values(part: Part) -> np.ndarray:
    """The label values as a 1-D int64 or str array; floats must be whole numbers."""
    y = np.asarray(part.labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{part.where}: labels must be one value per row, got shape {y.shape}")
    if y.dtype.kind in "biu":
        return y.astype(np.int64, copy=False)
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        whole = finite & (y == np.round(np.where(finite, y, 0)))
        if not whole.all():
            bad = int(np.argmin(whole))
            raise DataError(
                f"{part.where}: label {y[bad].item()!r} at row {bad + 1} is not a whole number; a "
                "classification label must be integers or strings (a regression target?)"
            )
        return y.astype(np.int64)
    if y.dtype.kind in "US":
        return y.astype(str)
    if y.dtype.kind == "O":
        return y.astype(str)
    raise DataError(f"{part.where}: labels of type {y.dtype} are neither integers nor strings")


def encode_labels(
    train: Part, test: Part | None, max_classes: int
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray | None]:
    """(class names, train indices, test indices) with the checks of the module docstring."""
    ytr = _values(train)
    yte = None if test is None else _values(test)
    if yte is not None and (ytr.dtype.kind == "U") != (yte.dtype.kind == "U"):
        ytr, yte = ytr.astype(str), yte.astype(str)  # "3" in one file, 3 in the other
    if train.names is not None:
        keys = np.array(sorted(train.names), dtype=ytr.dtype)
        names = tuple(str(train.names[k]) for k in keys.tolist())
        present = np.unique(ytr)
        _count_check(train.where, len(names), max_classes)
        if len(present) < 2:
            raise DataError(
                f"{train.where}: every training example is of one class ({names[0]!r}); a "
                "classifier needs at least 2"
            )
        idx = _positions(keys, ytr)
        if (idx < 0).any():
            bad = ytr[int(np.argmax(idx < 0))].item()
            raise DataError(
                f"{train.where}: label {bad!r} is not one of the {len(names)} named classes"
            )
    else:
        keys = np.unique(ytr)
        _count_check(train.where, len(keys), max_classes)
        if len(keys) < 2:
            raise DataError(
                f"{train.where}: every training label is {keys.tolist()[0]!r}; a classifier "
                "needs at least 2 classes"
            )
        names = tuple(str(k) for k in keys.tolist())
        idx = np.searchsorted(keys, ytr)
    tidx = None
    if yte is not None:
        assert test is not None
        tidx = _positions(keys, yte)
        if (tidx < 0).any():
            unseen = np.unique(yte[tidx < 0])
            shown = ", ".join(repr(v) for v in unseen[:5].tolist())
            more = f" and {len(unseen) - 5:,} more" if len(unseen) > 5 else ""
            raise DataError(
                f"{test.where}: test labels never seen in training: {shown}{more} "
                f"({int((tidx < 0).sum()):,} test rows); every class needs training examples"
            )
    return names, idx, tidx


def _positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted ``keys``, -1 where it is not there."""
    pos = np.searchsorted(keys, values)
    ok = pos < len(keys)
    ok[ok] = keys[pos[ok]] == values[ok]
    return np.where(ok, pos, -1)


def _count_check(where: str, k: int, max_classes: int) -> None:
    if k > max_classes:
        raise DataError(
            f"{where}: {k:,} different label values, more than --max-classes {max_classes:,} "
            f"(IDs or measurements rather than classes?); if this really is a classification "
            f"label, pass --max-classes {k}"
        )
