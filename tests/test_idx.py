"""The IDX reader against the format spec, on files written here, and every bad input."""

from __future__ import annotations

import gzip
import hashlib
import re
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmax_regression.data import dataset, idx
from softmax_regression.data.idx import IDX_DTYPES, read_idx, write_idx
from softmax_regression.data.sources import FILES, Found
from softmax_regression.errors import CorruptDataError

FIXTURE_CHECK = HealthCheck.function_scoped_fixture  # tmp_path is reused; each example overwrites


def idx_bytes(dims: tuple[int, ...], payload: bytes, code: int = 0x08) -> bytes:
    """An IDX file as the spec lays it out, built by hand (not by write_idx)."""
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def put(path: Path, data: bytes, *, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_reads_hand_built_file(tmp_path: Path, gz: bool) -> None:
    images = np.arange(3 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(3, 28, 28)
    raw = idx_bytes((3, 28, 28), images.tobytes())
    p = put(tmp_path / "x", raw, gz=gz)
    item = read_idx(p, expect_magic=2051)
    assert item.array.dtype == np.uint8
    assert item.array.shape == (3, 28, 28)
    np.testing.assert_array_equal(item.array, images)
    assert item.sha256 == hashlib.sha256(raw).hexdigest()  # of the decompressed bytes
    assert item.header == raw[:16]
    assert item.path == p


def test_big_endian_dtypes(tmp_path: Path) -> None:
    values = np.array([[1, -2, 300], [70000, -5, 6]], dtype=">i4")
    p = put(tmp_path / "x", idx_bytes((2, 3), values.tobytes(), code=0x0C))
    item = read_idx(p)
    assert item.array.tolist() == values.tolist()


def test_checksum_can_be_skipped(tmp_path: Path) -> None:
    p = put(tmp_path / "x", idx_bytes((5,), bytes(range(5))))
    item = read_idx(p, checksum=False)
    assert item.sha256 == ""
    assert item.array.tolist() == [0, 1, 2, 3, 4]


@settings(max_examples=40, deadline=None, suppress_health_check=[FIXTURE_CHECK])
@given(
    code=st.sampled_from(sorted(IDX_DTYPES)),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    compress=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_write_read_round_trip(
    tmp_path: Path, code: int, shape: list[int], compress: bool, seed: int
) -> None:
    dtype = IDX_DTYPES[code]
    rng = np.random.default_rng(seed)
    arr = (rng.standard_normal(shape) * 100).astype(dtype)
    p = tmp_path / "rt"
    write_idx(p, arr, compress=compress)
    item = read_idx(p)
    assert item.array.dtype == dtype
    np.testing.assert_array_equal(item.array, arr)
    assert item.sha256 == hashlib.sha256(idx_bytes(tuple(shape), arr.tobytes(), code)).hexdigest()


@settings(max_examples=40, deadline=None, suppress_health_check=[FIXTURE_CHECK])
@given(cut=st.integers(0, 400), gz=st.booleans())
def test_any_truncation_is_a_named_corrupt_error(tmp_path: Path, cut: int, gz: bool) -> None:
    raw = idx_bytes((5, 28, 2), bytes(range(256)) * 1 + bytes(24))
    data = gzip.compress(raw, mtime=0) if gz else raw
    cut = min(cut, len(data) - 1)
    p = put(tmp_path / "trunc", data[:cut])
    with pytest.raises(CorruptDataError, match=str(p)):
        read_idx(p)


# --- every bad input: a distinct one-line message naming the file -------------------------


def _crc_corrupted(p: Path) -> Path:
    data = bytearray(gzip.compress(idx_bytes((1, 28, 28), bytes(784)), mtime=0))
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    p.write_bytes(bytes(data))
    return p


def _count_mismatch(d: Path) -> None:
    write_idx(d / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(d / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))


def _label_out_of_range(d: Path) -> None:
    write_idx(d / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(d / "train-labels-idx1-ubyte", np.array([1, 10, 2], np.uint8))


def _wrong_image_shape(d: Path) -> None:
    write_idx(d / "train-images-idx3-ubyte", np.zeros((3, 32, 32), np.uint8))
    write_idx(d / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))


FILE_CASES = {
    "missing": (lambda p: p, "file not found"),
    "empty": (lambda p: put(p, b""), "empty file"),
    "directory": (lambda p: (p.mkdir(), p)[1], "is a directory"),
    "short header": (lambda p: put(p, b"\x00\x00\x08"), "file ends early"),
    "not idx": (lambda p: put(p, b"\x89PNG\r\n\x1a\n" + bytes(20)), "not an IDX file"),
    "wrong magic": (lambda p: put(p, idx_bytes((2,), bytes(2))), "wrong magic number 2049"),
    "unknown dtype": (lambda p: put(p, idx_bytes((2,), bytes(2), code=0x07)), "dtype code 0x07"),
    "zero dims": (lambda p: put(p, bytes([0, 0, 8, 0])), "zero dimensions"),
    "raw payload short": (
        lambda p: put(p, idx_bytes((2, 28, 28), bytes(100))),
        "payload is 100 bytes but the header",
    ),
    "raw payload long": (
        lambda p: put(p, idx_bytes((1, 28, 28), bytes(800))),
        "payload is 800 bytes but the header",
    ),
    "gz payload short": (
        lambda p: put(p, idx_bytes((2, 28, 28), bytes(100)), gz=True),
        "payload is 100 bytes but the header",
    ),
    "gz payload long": (
        lambda p: put(p, idx_bytes((1, 28, 28), bytes(800)), gz=True),
        "longer than the 784 bytes",
    ),
    "truncated gzip": (
        lambda p: put(p, gzip.compress(idx_bytes((1, 28, 28), bytes(784)), mtime=0)[:-12]),
        "truncated gzip stream",
    ),
    "gzip crc": (_crc_corrupted, "CRC check failed"),
    "huge header": (lambda p: put(p, idx_bytes((2**31, 28, 28), b"")), "over the"),
}
SPLIT_CASES = {
    "count mismatch": (_count_mismatch, "4 labels but"),
    "label out of range": (_label_out_of_range, "label 10 at index 1 is outside 0..9"),
    "wrong image shape": (_wrong_image_shape, "expected uint8 images of shape (N, 28, 28)"),
}


def _file_error(tmp_path: Path, name: str) -> tuple[Path, str]:
    make, _ = FILE_CASES[name]
    p = make(tmp_path / f"case-{name.replace(' ', '-')}")
    with pytest.raises(CorruptDataError) as info:
        read_idx(p, expect_magic=2051)
    return p, str(info.value)


def _split_error(tmp_path: Path, name: str) -> tuple[Path, str]:
    make, _ = SPLIT_CASES[name]
    d = tmp_path / f"split-{name.replace(' ', '-')}"
    d.mkdir()
    make(d)
    files = {stem: d / stem for stem in FILES["train"]}
    with pytest.raises(CorruptDataError) as info:
        dataset.read_split(Found(d, "test", files), "train", verify=False)
    return d, str(info.value)


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_bad_file(tmp_path: Path, name: str) -> None:
    p, message = _file_error(tmp_path, name)
    assert message.startswith(f"{p}: ")
    assert FILE_CASES[name][1] in message
    assert "\n" not in message


@pytest.mark.parametrize("name", list(SPLIT_CASES))
def test_bad_split(tmp_path: Path, name: str) -> None:
    d, message = _split_error(tmp_path, name)
    assert message.startswith(str(d / "train-"))  # names the offending file
    assert SPLIT_CASES[name][1] in message
    assert "\n" not in message


# Variants of one problem (a payload of the wrong length), worded alike on purpose.
SAME_KIND = {"raw payload long", "gz payload short"}


def test_every_kind_of_bad_input_has_its_own_wording(tmp_path: Path) -> None:
    messages = [_file_error(tmp_path, n)[1] for n in FILE_CASES if n not in SAME_KIND]
    messages += [_split_error(tmp_path, n)[1] for n in SPLIT_CASES]
    wordings = [re.sub(r"[\d,]+", "#", m.split(": ", 1)[1]) for m in messages]
    assert len(set(wordings)) == len(wordings), wordings


class _Counted:
    """A file object that counts the (decompressed) bytes the reader takes from it."""

    def __init__(self, f) -> None:
        self.f, self.taken = f, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.taken += len(data)
        return data

    def readinto(self, b) -> int:
        k = self.f.readinto(b)
        self.taken += k or 0
        return k

    def __getattr__(self, name: str):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[_Counted]:
    """Every file read_idx opens, wrapped to count what it reads."""
    opened: list[_Counted] = []
    original = idx._open

    def _open(path):
        f, gz = original(path)
        opened.append(_Counted(f))
        return opened[-1], gz

    monkeypatch.setattr(idx, "_open", _open)
    return opened


@pytest.mark.parametrize("gz", [False, True])
def test_huge_header_fails_before_allocating(tmp_path: Path, gz: bool, counted) -> None:
    p = put(tmp_path / "huge", idx_bytes((2**31, 28, 28), bytes(1000)), gz=gz)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptDataError, match="1,683,627,180,032 bytes"):
            read_idx(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    (f,) = counted
    assert f.taken == 16  # the header and its three sizes, not a byte of the payload


def test_gzip_bomb_fails_fast_in_bounded_memory(tmp_path: Path, counted) -> None:
    # 10 images declared, then 64 MiB of zeros squeezed into ~64 KB of gzip.
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(idx_bytes((10, 28, 28), b""))]
    zeros = bytes(1 << 20)
    parts += [comp.compress(zeros) for _ in range(64)]
    parts.append(comp.flush())
    p = tmp_path / "bomb.gz"
    p.write_bytes(b"".join(parts))
    assert p.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(CorruptDataError, match="longer than the 7,840 bytes"):
            read_idx(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # a chunk of decompression, never the 64 MiB
    (f,) = counted
    # Decompression stops one byte past what the header declares: the work is bounded by
    # the header, whatever the compressed stream would unfold to.
    assert f.taken == 16 + 7840 + 1


def test_max_bytes_is_the_limit(tmp_path: Path) -> None:
    p = put(tmp_path / "x", idx_bytes((100,), bytes(100)))
    assert read_idx(p, max_bytes=100).array.shape == (100,)
    with pytest.raises(CorruptDataError, match="100 bytes of data"):
        read_idx(p, max_bytes=99)


def test_write_idx_is_atomic_and_deterministic(tmp_path: Path) -> None:
    arr = np.arange(10, dtype=np.uint8)
    a, b = tmp_path / "a.gz", tmp_path / "b.gz"
    write_idx(a, arr, compress=True)
    write_idx(b, arr, compress=True)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.gz", "b.gz"]
    with pytest.raises(ValueError, match="no IDX code"):
        write_idx(tmp_path / "c", np.zeros(3, dtype=np.uint64))
    assert not (tmp_path / "c").exists()
