"""Row sources read block by block (data/stream.py): every layout gives the same rows, a
rank's share reads only its files, and each bad input is one clear line."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from softmax_regression.data import stream
from softmax_regression.data.stream import RowSource
from softmax_regression.errors import CorruptDataError, DataError

N, D = 1000, 7


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, D)).astype(np.float32), rng.integers(0, 4, N)


def write_shards(directory: Path, x: np.ndarray, y: np.ndarray, cuts, split="train") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    edges = [0, *cuts, len(x)]
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        np.save(directory / f"x_{split}-{k:05d}.npy", x[lo:hi])
        np.save(directory / f"y_{split}-{k:05d}.npy", y[lo:hi])


def _all(src: RowSource, **kw) -> np.ndarray:
    return np.concatenate(list(src.chunks(**kw)))


def test_every_layout_reads_the_same_rows(tmp_path):
    x, y = _data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    write_shards(tmp_path / "shards", x, y, [333, 334, 900])
    from safetensors.numpy import save_file

    save_file({"x": x, "y": y}, str(tmp_path / "set.safetensors"))
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({**{f"f{j}": x[:, j] for j in range(D)}, "label": y})
    pq.write_table(table, tmp_path / "set.parquet", row_group_size=128)
    sources = [
        stream.open_npy(tmp_path / "x.npy", tmp_path / "y.npy", block_rows=97),
        stream.open_shards(tmp_path / "shards", block_rows=97),
        stream.open_safetensors(tmp_path / "set.safetensors", block_rows=97),
        stream.open_parquet(tmp_path / "set.parquet", block_rows=97),
        RowSource.from_arrays(np.load(tmp_path / "x.npy", mmap_mode="r"), y, block_rows=97),
    ]
    for src in sources:
        assert src.shape == (N, D) and src.num_blocks == -(-N // 97)
        np.testing.assert_array_equal(_all(src), x)
        np.testing.assert_array_equal(src.own_labels(), y)
    # a block that straddles two shards is the same rows as in one file
    assert stream.open_shards(tmp_path / "shards", block_rows=97).block_bounds(3) == (291, 388)


def test_blocks_in_any_order_with_read_ahead(tmp_path):
    x, y = _data()
    write_shards(tmp_path, x, y, [500])
    src = stream.open_shards(tmp_path, block_rows=64)
    order = np.random.default_rng(1).permutation(src.num_blocks)
    seen = list(src.blocks(order, read_ahead=2))
    assert [lo for lo, _ in seen] == [src.block_bounds(k)[0] for k in order]
    for lo, rows in seen:
        np.testing.assert_array_equal(rows, x[lo : lo + len(rows)])
    # into a ring of reused buffers: the same rows, as long as each is used before the next
    reused = [(lo, rows.copy()) for lo, rows in src.blocks(order, read_ahead=2, reuse=True)]
    assert [lo for lo, _ in reused] == [lo for lo, _ in seen]
    for (_, a), (_, b) in zip(reused, seen, strict=True):
        np.testing.assert_array_equal(a, b)
    # stopping early leaves no reader thread behind
    it = src.blocks(read_ahead=2)
    next(it)
    it.close()
    assert not any(t.name.startswith("read-ahead") for t in threading.enumerate())


def test_a_rank_reads_only_its_share(tmp_path):
    x, y = _data()
    write_shards(tmp_path, x, y, [250, 500, 750])
    src = stream.open_shards(tmp_path, block_rows=100)
    shares = [src.share(4, r) for r in range(4)]
    assert [len(s) for s in shares] == [250] * 4
    assert shares[1].files == [str(tmp_path / "x_train-00001.npy")]
    np.testing.assert_array_equal(_all(shares[2]), x[500:750])
    np.testing.assert_array_equal(shares[2].own_labels(), y[500:750])
    # a shard that the rank does not read may go away without it noticing
    os.remove(tmp_path / "x_train-00000.npy")
    np.testing.assert_array_equal(_all(shares[3]), x[750:])
    uneven = [len(src.share(3, r)) for r in range(3)]
    assert sum(uneven) == N and max(uneven) - min(uneven) <= 1


def test_a_shard_of_another_width(tmp_path):
    x, y = _data()
    write_shards(tmp_path, x, y, [500])
    np.save(tmp_path / "x_train-00001.npy", x[500:, :5])
    with pytest.raises(DataError, match=r"x_train-00001.npy: 5 features per row, the shards "):
        stream.open_shards(tmp_path)


def test_a_truncated_shard(tmp_path):
    x, y = _data()
    write_shards(tmp_path, x, y, [500])
    path = tmp_path / "x_train-00001.npy"
    os.truncate(path, path.stat().st_size - 10)
    with pytest.raises(CorruptDataError, match=r"x_train-00001.npy: truncated: 500 rows of 7 "):
        stream.open_shards(tmp_path)


def test_labels_shorter_than_rows(tmp_path):
    x, y = _data()
    write_shards(tmp_path, x, y, [500])
    np.save(tmp_path / "y_train-00000.npy", y[:499])
    with pytest.raises(
        DataError,
        match=r"y_train-00000.npy: 499 labels but x_train-00000.npy "
        r"has 500 rows \(fewer labels than rows\)",
    ):
        stream.open_shards(tmp_path)


def test_missing_shard_or_labels(tmp_path):
    x, y = _data()
    write_shards(tmp_path, x, y, [300, 600])
    os.remove(tmp_path / "y_train-00002.npy")
    with pytest.raises(DataError, match="x_train-00002.npy: no labels shard beside it"):
        stream.open_shards(tmp_path)
    os.remove(tmp_path / "x_train-00001.npy")
    with pytest.raises(DataError, match="shard 1 is missing"):
        stream.open_shards(tmp_path)


def test_a_file_that_changes_while_being_read(tmp_path):
    x, y = _data()
    write_shards(tmp_path, x, y, [500])
    src = stream.open_shards(tmp_path, block_rows=100)
    it = src.blocks(read_ahead=0)
    next(it)
    # same size, new contents: the modification time moves
    np.save(tmp_path / "x_train-00001.npy", x[500:] + 1)
    st = os.stat(tmp_path / "x_train-00001.npy")
    os.utime(tmp_path / "x_train-00001.npy", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=r"x_train-00001.npy: changed while being read \(its "):
        list(it)
    # the next pass refuses to start
    with pytest.raises(DataError, match="changed while being read"):
        next(src.blocks())


def test_a_file_cut_short_mid_pass(tmp_path):
    x, y = _data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    src = stream.open_npy(tmp_path / "x.npy", tmp_path / "y.npy", block_rows=100)
    it = src.blocks(read_ahead=0)
    next(it)
    os.truncate(tmp_path / "x.npy", 128 + 150 * D * 4)
    with pytest.raises(DataError, match=r"x.npy: changed while being read \(rows 101 to 200 come"):
        next(it)


def test_nan_named_by_file_and_row(tmp_path):
    x, y = _data()
    x[620, 3] = np.nan
    write_shards(tmp_path, x, y, [500])
    src = stream.open_shards(tmp_path, block_rows=64)
    with pytest.raises(DataError, match=r"x_train-00001.npy, row 121: NaN or inf"):
        list(src.chunks())
