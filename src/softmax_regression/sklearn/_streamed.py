"""Rows from disk for the estimators: what ``fit`` and the predictions take without reading
``X`` into memory.

``X`` is read block by block (:class:`~softmax_regression.linear_loss.StreamedRows`) when it
is

* a memory-mapped array: ``np.load(path, mmap_mode="r")``, an ``np.memmap``, or a view of
  one. As an in-memory array it is the rows of this process (under ``torchrun``, this rank's:
  ``X[rank_rows(len(X))]`` is a view, no copy); ``y`` is given as usual;
* a :class:`~softmax_regression.data.stream.RowSource` (``open_npy``, ``open_shards``,
  ``open_safetensors``, ``open_parquet``), or the path of one: a shard directory, a
  ``.safetensors`` file, a Parquet file or directory, a directory with ``x_train.npy`` and
  ``y_train.npy`` (``X.npy``/``y.npy``), or, to predict, a ``.npy`` file of features. ``y``
  None takes the source's own labels. It is the whole data set: under ``torchrun`` each rank
  reads only its own contiguous share of the rows (:meth:`RowSource.share`), and a
  ``sample_weight`` given for every row is cut the same way.

A plain in-memory ``ndarray`` is none of these and takes the estimators' in-memory path,
bit for bit as before.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, column_or_1d

from ..data import stream
from ..errors import DataError
from ..linear_loss import StreamedRows

# Bytes of float32 per block read from a file the estimators opened themselves (a memmap, a
# path): a fit keeps a ring of four of them (one computed on, one read ahead, two spare), so
# smaller than the data layer's 16 MB: 16 MB of ring in all, and still sequential reads.
BLOCK_BYTES = 4 << 20


def is_mapped(X) -> bool:
    """An ndarray whose memory is a file's map (``np.memmap``, ``np.load(mmap_mode=...)``, or
    a view of one)."""
    if not isinstance(X, np.ndarray):
        return False
    base = X
    while base is not None:
        if isinstance(base, np.memmap | mmap.mmap):
            return True
        base = getattr(base, "base", None)
    return False


def is_streamed(X) -> bool:
    """Whether ``X`` is read from disk block by block (the module docstring's inputs)."""
    return isinstance(X, stream.RowSource | StreamedRows | str | os.PathLike) or (
        is_mapped(X) and X.ndim == 2
    )


def open_path(path: str | os.PathLike, split: str = "train") -> stream.RowSource:
    """The source at ``path``: a shard directory, a ``.safetensors`` file, a Parquet file or
    directory, a directory of ``x_train.npy``/``y_train.npy`` (or ``X.npy``/``y.npy``), or
    a ``.npy`` file of features alone (no labels: rows to classify)."""
    from ..data import streamed

    path = Path(path)
    name = path.name.lower()
    if path.is_file() and name.endswith(".npy"):
        return stream.open_features(path)
    if path.is_file() and name.endswith(".safetensors"):
        return stream.open_safetensors(path, split)
    if name.endswith(stream.PARQUET_SUFFIXES) or (
        path.is_dir()
        and any(p.name.lower().endswith(stream.PARQUET_SUFFIXES) for p in path.iterdir())
    ):
        return stream.open_parquet(path)
    if path.is_dir() and any(stream.SHARD.match(p.name) for p in path.iterdir()):
        return stream.open_shards(path, split)
    if path.is_dir():
        train, test = streamed._open("npy", path, None)
        if split == "test":
            if test is None:
                raise DataError(f"{path}: no x_test.npy and y_test.npy")
            return test
        return train
    raise DataError(
        f"{path}: not a .npy, .safetensors or Parquet file, nor a directory of shards or arrays"
    )


@dataclass
class Streamed:
    """This process's rows of a streamed ``X`` and their labels."""

    rows: StreamedRows
    y: np.ndarray
    part: slice  # these rows among those passed (for sample weights given for all of them)
    total: int  # rows passed
    stored: np.dtype  # float32, or float64 when the rows are stored in float64 (or integers)

    @property
    def n_features(self) -> int:
        return self.rows.shape[1]

    def stand_in(self) -> np.ndarray:
        """An ``(n, 0)`` array: what scikit-learn's helpers take to count the rows."""
        return np.empty((self.rows.shape[0], 0))


def open_streamed(X, y, world=None, device="cpu") -> Streamed:
    """``X`` (:func:`is_streamed`) as rows read block by block and ``y`` as a 1-D array (None:
    the source's own labels). Under ``torchrun`` (``world``) a source or path is cut into the
    ranks' shares; a memory-mapped array is this rank's rows already."""
    stored = None
    if isinstance(X, StreamedRows):
        if y is None:
            raise DataError("streamed rows need their labels y")
        y = np.asarray(y)
        stream._check_count("y", len(y), X.shape[0], "X")
        return Streamed(X, y, slice(0, len(y)), len(y), _stored(X.source))
    if isinstance(X, np.ndarray):  # memory-mapped: this rank's rows, as in memory
        if y is None:
            raise DataError("a memory-mapped X needs its labels y")
        check_consistent_length(X, y)  # scikit-learn's ValueError, as in memory
        source = stream.RowSource.from_arrays(X, np.asarray(y), where="X", block_rows=_rows(X))
        stored = np.dtype(np.float32 if X.dtype == np.float32 else np.float64)
        return Streamed(
            StreamedRows(source, device=device),
            source.own_labels(),
            slice(0, len(X)),
            len(X),
            stored,
        )
    if isinstance(X, str | os.PathLike):
        source = open_path(X)
        source = source.with_block_rows(_rows(source))
    else:
        source = X  # as the caller made it, its block size too
    labels = source.own_labels() if y is None else np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if y is None and len(labels) == 0 and len(source):
        raise DataError(f"{source.where}: no labels; pass them as y")
    stream._check_count("y" if y is not None else source.where, len(labels), len(source), "X")
    n = len(source)
    part = slice(0, n)
    if world is not None:
        lo, hi = stream.share_of(n, world.size, world.rank)
        source, part = source.rows(lo, hi), slice(lo, hi)
    return Streamed(StreamedRows(source, device=device), labels[part], part, n, _stored(source))


def _stored(source: stream.RowSource) -> np.dtype:
    """scikit-learn's rule for the answer's dtype: float32 when every file stores float32,
    else float64 (float64, integers, or a mix)."""
    narrow = all(p.stored == np.float32 for p in source.pieces)
    return np.dtype(np.float32 if narrow else np.float64)


@dataclass
class FitInputs:
    """A streamed ``X`` as ``fit`` takes it, its rows not read."""

    X: np.ndarray  # an (n, 0) stand-in in the answer's dtype: what the checks look at
    y: np.ndarray  # 1-D, checked as classification targets
    rows: StreamedRows
    sample_weight: np.ndarray | None  # cut to these rows when given for every row
    n_features: int


def fit_inputs(X, y, sample_weight=None, world=None, device="cpu") -> FitInputs:
    """:func:`open_streamed`, then ``y`` and ``sample_weight`` as an in-memory ``fit`` has
    them after scikit-learn's validation."""
    data = open_streamed(X, y, world, device)
    y = column_or_1d(data.y, warn=True)
    check_classification_targets(y)
    if sample_weight is not None and np.ndim(sample_weight) == 1:
        sample_weight = np.asarray(sample_weight)
        if len(sample_weight) == data.total:  # weights for every row: this rank's
            sample_weight = sample_weight[data.part]
    return FitInputs(
        np.empty((data.rows.shape[0], 0), data.stored),
        y,
        data.rows,
        sample_weight,
        data.n_features,
    )


def features_of(X) -> StreamedRows:
    """Rows to predict on (no labels needed), read block by block."""
    if isinstance(X, StreamedRows):
        return X
    if isinstance(X, np.ndarray):
        return StreamedRows(stream.RowSource.from_arrays(X, None, where="X", block_rows=_rows(X)))
    if isinstance(X, str | os.PathLike):
        source = open_path(X)
        return StreamedRows(source.with_block_rows(_rows(source)))
    return StreamedRows(X)


def _rows(x) -> int:
    """Rows per block read: :data:`BLOCK_BYTES` of float32 (of float64 for float64 rows)."""
    item = 8 if getattr(x, "dtype", None) == np.float64 else 4
    return stream.block_rows_for(x.shape[1], BLOCK_BYTES * 4 // item)


def decision(X, coef: np.ndarray, intercept: np.ndarray, n_features: int) -> np.ndarray:
    """``X @ coef.T + intercept`` over rows read block by block, ``(n, K)`` in ``coef``'s
    dtype: the only thing of size ``n`` made."""
    import torch

    rows = features_of(X)
    if rows.shape[1] != n_features:
        raise ValueError(
            f"X has {rows.shape[1]} features, but this estimator is expecting {n_features} "
            "features as input."
        )
    dtype = torch.float64 if coef.dtype == np.float64 else torch.float32
    w = torch.from_numpy(np.ascontiguousarray(coef)).to(dtype)
    b = torch.from_numpy(np.ascontiguousarray(intercept)).to(dtype)
    out = np.empty((rows.shape[0], w.shape[0]), dtype=coef.dtype)
    target = torch.from_numpy(out)
    for lo, hi, xb in rows.iterate(None, dtype):
        torch.addmm(b, xb, w.t(), out=target[lo:hi])
    return out
