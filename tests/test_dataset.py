"""The in-memory dataset and its batches: the real files, book semantics, the load cache."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from softmax_regression import CLASSES, FashionMNIST, load_fashion_mnist
from softmax_regression.data import dataset, loadcache, to_float
from softmax_regression.data.idx import write_idx
from softmax_regression.data.sources import FILES, SHA256, STEMS
from softmax_regression.errors import ConfigError, CorruptDataError, DeviceError

# --- the real dataset (installed by `make data`; CI has Debian's package) -------------------


@pytest.fixture(scope="module")
def train() -> FashionMNIST:
    return load_fashion_mnist("train", download=False)


@pytest.fixture(scope="module")
def test() -> FashionMNIST:
    return load_fashion_mnist("test", download=False)


def test_real_splits(train: FashionMNIST, test: FashionMNIST) -> None:
    for ds, n, split in ((train, 60_000, "train"), (test, 10_000, "test")):
        assert ds.split == split
        assert ds.images.shape == (n, 28, 28) and ds.images.dtype == torch.uint8
        assert ds.labels.shape == (n,) and ds.labels.dtype == torch.int64
        assert ds.device == torch.device("cpu")  # device=None keeps it on the CPU
        assert len(ds) == n
        per_class = ds.labels.bincount(minlength=10).tolist()
        assert per_class == [n // 10] * 10
        assert ds.sha256 == {stem: SHA256[stem] for stem in FILES[split]}
    assert train.classes == CLASSES == (
        "t-shirt", "trouser", "pullover", "dress", "coat",
        "sandal", "shirt", "sneaker", "bag", "ankle boot",
    )  # fmt: skip


def test_real_pixels_are_the_files_bytes(train: FashionMNIST) -> None:
    # An independent decode of the first image: gzip + the 16-byte header, nothing else.
    path = train.source.files["train-images-idx3-ubyte"]
    with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as f:
        first = np.frombuffer(f.read(16 + 784)[16:], dtype=np.uint8).reshape(28, 28)
    assert np.array_equal(train.images[0].numpy(), first)
    assert train.images.float().mean().item() == pytest.approx(72.94, abs=0.01)


def test_book_batch_counts(train: FashionMNIST, test: FashionMNIST) -> None:
    tb = train.batches(256)
    sizes = [len(y) for _, y in tb]
    assert len(tb) == len(sizes) == 235
    assert sizes[-1] == 96 and set(sizes[:-1]) == {256}
    sizes = [len(y) for _, y in test.batches(256)]
    assert len(sizes) == 40 and sizes[-1] == 16
    assert len(train.batches(256, drop_last=True)) == 234


def test_test_batches_are_in_file_order_and_exact(test: FashionMNIST) -> None:
    xs, ys = zip(*test.batches(256), strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.dtype == torch.float32 and x.shape == (10_000, 1, 28, 28)
    assert torch.equal(y, test.labels)
    # Exactly ToTensor's arithmetic: uint8 -> float32, divided by 255.
    assert torch.equal(x, test.images.unsqueeze(1).to(torch.float32) / 255)
    assert x.min() == 0 and x.max() == 1


def test_shuffled_batches_follow_the_seeded_permutation(train: FashionMNIST) -> None:
    perm = train.batches(256, seed=7).order()
    x, y = next(iter(train.batches(256, seed=7)))
    assert torch.equal(y, train.labels[perm[:256]])
    assert torch.equal(x, train.images[perm[:256]].unsqueeze(1).float() / 255)
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32


def test_each_pass_is_a_new_permutation_of_everything(train: FashionMNIST) -> None:
    batches = train.batches(4096, seed=1)
    passes = [torch.cat([y for _, y in batches]) for _ in range(2)]
    assert not torch.equal(passes[0], passes[1])
    for labels in passes:  # every example exactly once per pass
        assert labels.bincount(minlength=10).tolist() == [6000] * 10
    orders = [batches.order() for _ in range(2)]
    assert not torch.equal(orders[0], orders[1])
    assert torch.equal(orders[0].sort().values, torch.arange(60_000))


def test_seeds_reproduce_and_differ(train: FashionMNIST) -> None:
    def labels(seed: int, passes: int = 2) -> list[torch.Tensor]:
        b = train.batches(1000, seed=seed)
        return [torch.cat([y for _, y in b]) for _ in range(passes)]

    a, b, c = labels(3), labels(3), labels(4)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    gen = torch.Generator().manual_seed(3)
    assert torch.equal(torch.cat([y for _, y in train.batches(1000, generator=gen)]), a[0])


@pytest.mark.parametrize("size", [64, 14, (20, 36)])
def test_resize_matches_pil_bilinear(test: FashionMNIST, size: int | tuple[int, int]) -> None:
    h, w = (size, size) if isinstance(size, int) else size
    x, _ = next(iter(test.batches(32, resize=size)))
    assert x.shape == (32, 1, h, w) and x.dtype == torch.float32
    # torchvision's Resize on a PIL image is PIL's bilinear resize (antialiased when shrinking).
    ref = np.stack(
        [
            np.asarray(Image.fromarray(im.numpy()).resize((w, h), Image.BILINEAR))
            for im in test.images[:32]
        ]
    )
    diff = np.abs(x[:, 0].numpy() - ref / np.float32(255))
    assert diff.max() <= 1 / 255 + 1e-6
    assert (diff < 1e-6).mean() > 0.85  # most pixels identical, the rest one level apart


def test_resize_to_the_same_size_changes_nothing(test: FashionMNIST) -> None:
    x, _ = next(iter(test.batches(16, resize=28)))
    assert torch.equal(x, to_float(test.images[:16]))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "256"])
def test_bad_batch_size(test: FashionMNIST, bad: object) -> None:
    with pytest.raises(ConfigError, match="batch size"):
        test.batches(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, (28,) * 3, (10, 0), 1.5, True])
def test_bad_resize(test: FashionMNIST, bad: object) -> None:
    with pytest.raises(ConfigError, match="resize"):
        test.batches(256, resize=bad)  # type: ignore[arg-type]


def test_bad_split_and_device() -> None:
    with pytest.raises(ConfigError, match="split must be 'train' or 'test'"):
        load_fashion_mnist("validation")
    with pytest.raises(DeviceError, match="not a torch device"):
        load_fashion_mnist("test", device="gpu0")


def test_subset_and_to(test: FashionMNIST) -> None:
    sub = test.subset([3, 1, 2], split="val")
    assert sub.split == "val" and len(sub) == 3
    assert torch.equal(sub.images, test.images[[3, 1, 2]])
    assert test.to(None) is test and test.to("cpu") is test


def test_loads_are_independent_copies() -> None:
    a = load_fashion_mnist("test", download=False)
    a.images[0].zero_()
    a.labels[0] = 99
    b = load_fashion_mnist("test", download=False)
    assert b.images[0].any() and b.labels[0] != 99


# --- the load cache, on small files made the 'published' ones ------------------------------


@pytest.fixture
def published(make_dataset: Callable, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path):
    ds = make_dataset(compress=True)
    ds.publish(monkeypatch)
    return ds


def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Record (file name, hashed?) for every read_idx call from the dataset module."""
    calls: list[tuple[str, bool]] = []
    real = dataset.read_idx

    def spy(path, **kwargs):
        calls.append((Path(path).name, kwargs.get("checksum", True)))
        return real(path, **kwargs)

    monkeypatch.setattr(dataset, "read_idx", spy)
    return calls


def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset, "_MEMO", {})


def test_verified_gz_is_later_read_from_its_decompressed_copy(
    published, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = reads(monkeypatch)
    first = load_fashion_mnist("train", published.directory)
    assert calls == [("train-images-idx3-ubyte.gz", True), ("train-labels-idx1-ubyte.gz", True)]
    sha = published.sha256("train-images-idx3-ubyte")
    assert (loadcache.cache_root() / f"{sha}.idx").is_file()

    calls.clear()
    load_fashion_mnist("train", published.directory)
    assert calls == []  # same process: the memo

    fresh_process(monkeypatch)
    second = load_fashion_mnist("train", published.directory)
    lbl_sha = published.sha256("train-labels-idx1-ubyte")
    assert calls == [(f"{sha}.idx", False), (f"{lbl_sha}.idx", False)]
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.sha256 == first.sha256
    assert (
        second.source.files["train-images-idx3-ubyte"] == published.files["train-images-idx3-ubyte"]
    )


def test_a_changed_file_is_verified_again(published, monkeypatch: pytest.MonkeyPatch) -> None:
    load_fashion_mnist("test", published.directory)
    fresh_process(monkeypatch)
    path = published.files["t10k-labels-idx1-ubyte"]
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[-1] = (data[-1] + 1) % 10  # still a valid label, no longer the published file
    write_idx(path, np.frombuffer(bytes(data[8:]), np.uint8), compress=True)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(CorruptDataError, match="SHA-256 of the decompressed data"):
        load_fashion_mnist("test", published.directory)


def test_a_damaged_copy_falls_back_to_the_file(published, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = load_fashion_mnist("train", published.directory)
    sha = published.sha256("train-images-idx3-ubyte")
    copy = loadcache.cache_root() / f"{sha}.idx"
    st = copy.stat()
    copy.write_bytes(copy.read_bytes()[:100])
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its old mtime
    fresh_process(monkeypatch)
    calls = reads(monkeypatch)
    again = load_fashion_mnist("train", published.directory)
    assert torch.equal(again.images, expected.images)
    assert ("train-images-idx3-ubyte.gz", True) in calls  # verified again
    assert copy.stat().st_size == 16 + 30 * 28 * 28  # and the copy rewritten


def test_unwritable_cache_costs_only_time(
    published, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert len(load_fashion_mnist("train", published.directory)) == 30


def test_own_files_load_without_verification(make_dataset: Callable, isolated_cache: Path) -> None:
    own = make_dataset(compress=False)
    with pytest.raises(CorruptDataError, match="verify=False"):
        load_fashion_mnist("train", own.directory)
    ds = load_fashion_mnist("train", own.directory, verify=False)
    assert np.array_equal(ds.images.numpy(), own.arrays["train-images-idx3-ubyte"])
    assert ds.labels.tolist() == (np.arange(30) % 10).tolist()
    assert not loadcache.cache_root().exists()  # nothing recorded for unverified files
    assert set(STEMS) == set(own.files)


def test_batches_are_copies(test: FashionMNIST) -> None:
    for shuffle in (False, True):
        x, y = next(iter(test.batches(8, shuffle=shuffle, seed=0)))
        x.zero_()
        y.fill_(99)
    assert test.labels.max() == 9 and test.images[:8].any()
