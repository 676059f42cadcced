"""Data of your own: every source kind read into the same Dataset, the bad-input corpus (one
line each), the image folder cache, and Fashion-MNIST exported and read back bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from softmax_regression.cli import main
from softmax_regression.data import DataSpec, LoadedData, load_data, load_fashion_mnist
from softmax_regression.data import folder as folder_mod
from softmax_regression.data.export import export_fashion_mnist
from softmax_regression.data.idx import write_idx
from softmax_regression.errors import ConfigError, CorruptDataError, DataError, DataNotFoundError
from softmax_regression.images import open_image, resize_rule, to_array


@pytest.fixture(autouse=True)
def folder_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Decoded folders are cached in the test's own directory."""
    root = tmp_path / "folder-cache"
    monkeypatch.setattr(folder_mod, "cache_root", lambda: root)
    return root


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def image_folder(root: Path, per_class: int = 4, classes=("cat", "dog", "emu"), size=(6, 5)):
    """Gray PNGs root/<class>/<i>.png with distinct pixels; returns {relative path: array}."""
    rng = np.random.default_rng(0)
    arrays = {}
    for c in classes:
        for i in range(per_class):
            a = rng.integers(0, 256, size=size, dtype=np.uint8)
            png(root / c / f"{i}.png", a)
            arrays[f"{c}/{i}.png"] = a
    return arrays


def message(excinfo: pytest.ExceptionInfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, text
    return text


# ---- the spec ----------------------------------------------------------------------------


def test_builtin_spec_and_json_round_trip(tmp_path: Path) -> None:
    assert DataSpec.parse().is_builtin and DataSpec.parse("fashion-mnist").is_builtin
    assert DataSpec.from_dict(None) == DataSpec() == DataSpec.from_dict(DataSpec().to_dict())
    image_folder(tmp_path / "pets")
    (tmp_path / "t.csv").write_text("a,label\n1,x\n")
    spec = DataSpec.parse(
        tmp_path / "pets", image_size="6x5", channels="3", skip_bad=True, test_split=0.25
    )
    assert (spec.kind, spec.image_size, spec.channels) == ("folder", (6, 5), 3)
    assert Path(spec.path).is_absolute()
    again = DataSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    table = DataSpec.parse(tmp_path / "t.csv", label="a", test=tmp_path / "t.csv")
    assert DataSpec.from_dict(table.to_dict()) == table and table.test.label == "a"
    assert "table" in table.describe()


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"image_size": "0"}, "--image-size must be H or HxW"),
        ({"image_size": "3x4x5"}, "--image-size must be H or HxW"),
        ({"channels": 2}, "--channels must be 1"),
        ({"test_split": 1.0}, "--test-split must be a fraction"),
        ({"test_split": "x"}, "--test-split must be a fraction"),
        ({"max_classes": 1}, "--max-classes must be an integer"),
    ],
)
def test_bad_options_are_one_line(tmp_path: Path, kwargs, expected) -> None:
    image_folder(tmp_path / "pets", per_class=1)
    with pytest.raises(ConfigError) as e:
        DataSpec.parse(tmp_path / "pets", **kwargs)
    assert expected in message(e)


def test_paths_that_are_refused(tmp_path: Path) -> None:
    for name in ("model.pt", "data.pkl", "x.pickle", "m.joblib", "w.pth"):
        (tmp_path / name).write_bytes(b"\x80\x04")
        with pytest.raises(ConfigError) as e:
            DataSpec.parse(tmp_path / name)
        assert "never unpickled" in message(e) and "np.savez(" in message(e)
    with pytest.raises(DataNotFoundError) as e:
        DataSpec.parse(tmp_path / "nowhere")
    assert "no such file or directory" in message(e)
    (tmp_path / "x.xlsx").write_bytes(b"")
    with pytest.raises(ConfigError, match="unknown kind of data file"):
        DataSpec.parse(tmp_path / "x.xlsx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither class folders"):
        DataSpec.parse(tmp_path / "empty")
    np.savez(tmp_path / "a.npz", X=np.zeros((2, 2)), y=[0, 1])
    with pytest.raises(ConfigError, match="--label applies to tables"):
        DataSpec.parse(tmp_path / "a.npz", label="y")
    with pytest.raises(ConfigError, match="--image-size and --channels apply to image folders"):
        DataSpec.parse(tmp_path / "a.npz", image_size=8)
    (tmp_path / "t.csv").write_text("a,label\n1,x\n")
    with pytest.raises(ConfigError, match="--test-data must be the same kind"):
        DataSpec.parse(tmp_path / "a.npz", test=tmp_path / "t.csv")
    with pytest.raises(ConfigError, match="applies to --data of your own"):
        DataSpec.parse(None, test_split=0.1)
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(ConfigError, match="needs its labels"):
        DataSpec.parse(tmp_path / "x.npy")


def test_spec_module_imports_neither_numpy_nor_torch() -> None:
    code = (
        "import sys, softmax_regression.data.spec as s; s.DataSpec.parse(None); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'torch', 'PIL'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- image folders -----------------------------------------------------------------------


def test_image_folder_layout_order_and_pixels(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    arrays = image_folder(root, per_class=12)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(b"junk")
    (root / ".trash").mkdir()
    png(root / "dog" / "sub" / "deep.PNG", np.full((6, 5), 7, np.uint8))
    d = load_data(root, test_split=0.25)
    assert isinstance(d, LoadedData)
    assert d.train.classes == ("cat", "dog", "emu") and d.train.name == "pets"
    assert d.train.image_rule == "resize" and d.train.input_shape == (1, 6, 5)
    assert any("ignored 1 files that are not images (first: cat/notes.txt)" in n for n in d.notes)
    assert any(n.startswith(f"no test part in {root}: held out 25% (9 of 37") for n in d.notes)
    # torchvision's order: classes sorted, files sorted by name within a folder, sub-folders after
    names = [f"{c}/{i}.png" for c in ("cat", "dog", "emu") for i in sorted(map(str, range(12)))]
    names.insert(names.index("dog/9.png") + 1, "dog/sub/deep.PNG")
    arrays["dog/sub/deep.PNG"] = np.full((6, 5), 7, np.uint8)
    whole = d.train.inputs
    assert whole.shape == (37, 6, 5) and d.test.inputs is whole  # the test split shares it
    expected = np.stack([arrays[n] for n in names])
    assert np.array_equal(whole.numpy(), expected)
    labels = torch.cat([d.train.labels, d.test.labels])
    rows = torch.cat([d.train.index, d.test.index])
    assert torch.equal(
        labels, torch.tensor([["cat", "dog", "emu"].index(n.split("/")[0]) for n in names])[rows]
    )


def test_colour_and_gray_and_sizes(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    png(root / "a" / "0.png", np.full((4, 4), 200, np.uint8))
    png(root / "b" / "0.png", np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    png(root / "b" / "1.png", np.full((4, 4), 9, np.uint8))
    d = DataSpec.parse(root, test_split=0.34).load()
    x = d.train.inputs
    assert x.shape == (3, 3, 4, 4) and d.train.input_shape == (3, 4, 4)
    for i, rel in enumerate(["a/0.png", "b/0.png", "b/1.png"]):
        assert np.array_equal(x[i].numpy(), to_array(open_image(root / rel), 3))
    png(root / "a" / "1.png", np.zeros((10, 12), np.uint8))
    with pytest.raises(ConfigError) as e:
        DataSpec.parse(root).load()
    assert "images are 4x4 to 10x12 (height x width); pass --image-size" in message(e)
    d = DataSpec.parse(root, image_size="5x6", channels=1).load()
    x = d.train.inputs
    assert x.shape == (4, 5, 6)
    img = open_image(root / "a" / "1.png")
    assert np.array_equal(x[1].numpy(), resize_rule(img, 1, 5, 6)[0])


def test_train_and_test_folders(tmp_path: Path) -> None:
    root = tmp_path / "split"
    image_folder(root / "train", per_class=3)
    image_folder(root / "test", per_class=2, classes=("dog", "emu"))
    d = DataSpec.parse(root).load()
    assert (len(d.train), len(d.test)) == (9, 4) and d.notes == []
    assert d.test.classes == ("cat", "dog", "emu") and d.test.labels.tolist() == [1, 1, 2, 2]
    with pytest.raises(ConfigError, match="has its own test part; --test-split"):
        DataSpec.parse(root, test_split=0.2).load()
    image_folder(root / "test", per_class=1, classes=("yak",))
    with pytest.raises(DataError) as e:
        DataSpec.parse(root).load()
    assert "class 'yak' of the test part is not a class of the training part" in message(e)
    # --test: a separate folder, read as the training part (size, channels, classes)
    other = tmp_path / "other"
    png(other / "dog" / "x.png", np.zeros((12, 10, 3), np.uint8))
    d = DataSpec.parse(root / "train", test=other).load()
    assert d.test.inputs.shape == (1, 6, 5) and d.test.labels.tolist() == [1]


def test_folder_class_problems(tmp_path: Path) -> None:
    one = tmp_path / "one"
    image_folder(one, classes=("only",))
    with pytest.raises(DataError) as e:
        DataSpec.parse(one).load()
    assert "at least 2 classes; found only one ('only')" in message(e)
    empty = tmp_path / "empty-class"
    image_folder(empty, classes=("a", "b"))
    (empty / "c").mkdir()
    (empty / "c" / "readme.md").write_text("x")
    with pytest.raises(DataError) as e:
        DataSpec.parse(empty).load()
    assert f"{empty / 'c'}: class folder holds no images" in message(e)


def test_unreadable_truncated_and_bomb_images(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    image_folder(root, per_class=3, classes=("a", "b"))
    (root / "a" / "9-garbage.png").write_bytes(b"not a png at all")
    good = (root / "b" / "0.png").read_bytes()
    (root / "b" / "9-truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptDataError) as e:
        DataSpec.parse(root).load()
    text = message(e)
    assert "9-garbage.png: not an image file PIL can read" in text
    assert "(1 more unreadable)" in text and "--skip-bad" in text
    d = DataSpec.parse(root, skip_bad=True, test_split=0.5).load()
    assert len(d.train) + len(d.test) == 6
    assert any(n.startswith("skipped 2 unreadable images (first: ") for n in d.notes)
    # the note comes back from the cache too
    assert any(n.startswith("skipped 2") for n in DataSpec.parse(root, skip_bad=True).load().notes)
    bomb = tmp_path / "bomb"
    image_folder(bomb, per_class=2, classes=("a", "b"))
    Image.new("1", (9500, 9500)).save(bomb / "a" / "huge.png")
    with pytest.raises(CorruptDataError) as e:
        DataSpec.parse(bomb).load()
    assert "huge.png: image too large to decode safely" in message(e)


def test_folder_cache_hit_and_invalidation(tmp_path: Path, monkeypatch, folder_cache) -> None:
    root = tmp_path / "pets"
    image_folder(root)
    first = DataSpec.parse(root).load()
    assert len(list(folder_cache.glob("*.safetensors"))) == 1
    decoded = []
    real = folder_mod.decode_all
    monkeypatch.setattr(
        folder_mod, "decode_all", lambda *a, **k: decoded.append(1) or real(*a, **k)
    )

    def load() -> LoadedData:
        return DataSpec.parse(root).load()

    hit = load()
    assert decoded == [] and torch.equal(hit.train.images, first.train.images)
    assert hit.train.sha256 == first.train.sha256
    path = root / "cat" / "0.png"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))  # touched
    load()
    assert decoded == [1]
    png(path, np.full((6, 5), 1, np.uint8))  # replaced
    d = load()
    assert decoded == [1, 1] and (d.train.inputs == 1).all(dim=(1, 2)).any()
    png(root / "emu" / "new.png", np.zeros((6, 5), np.uint8))  # added
    assert len(load().train) + 0 == 10 and decoded == [1, 1, 1]
    (root / "emu" / "new.png").unlink()  # removed
    load()
    assert len(decoded) == 4
    load()
    assert len(decoded) == 4
    # a damaged cache file is decoded again, never trusted
    (cache,) = folder_cache.glob("*.safetensors")
    raw = bytearray(cache.read_bytes())
    raw[-1] ^= 0xFF
    cache.write_bytes(bytes(raw))
    load()
    assert len(decoded) == 5
    assert not list(folder_cache.glob("*.tmp")) and not list(folder_cache.glob(".*"))


# ---- IDX ---------------------------------------------------------------------------------


def idx_set(directory: Path, prefix: str = "", n=(20, 6), compress=False, labels_top=4):
    rng = np.random.default_rng(1)
    out = {}
    for split, count in zip(("train", "t10k"), n, strict=True):
        x = rng.integers(0, 256, size=(count, 7, 7), dtype=np.uint8)
        y = (np.arange(count) % labels_top).astype(np.uint8)
        gz = ".gz" if compress else ""
        write_idx(directory / f"{prefix}{split}-images-idx3-ubyte{gz}", x, compress=compress)
        write_idx(directory / f"{prefix}{split}-labels-idx1-ubyte{gz}", y, compress=compress)
        out[split] = (x, y)
    return out


def test_idx_layouts(tmp_path: Path) -> None:
    arrays = idx_set(tmp_path / "root" / "KMNIST" / "raw", compress=True)
    d = DataSpec.parse(tmp_path / "root").load()  # torchvision's root
    assert d.train.classes == ("0", "1", "2", "3") and d.train.image_rule == "fashion-mnist"
    assert d.train.name == "KMNIST"
    assert np.array_equal(d.train.inputs.numpy(), arrays["train"][0])
    assert np.array_equal(d.test.labels.numpy(), arrays["t10k"][1])
    em = tmp_path / "emnist"
    arrays = idx_set(em, "emnist-letters-", labels_top=3)
    (em / "emnist-letters-mapping.txt").write_text("0 65 97\n1 66 98\n2 67 99\n")
    d = DataSpec.parse(em).load()
    assert d.train.classes == ("A", "B", "C") and d.train.name == "emnist-letters"
    d = DataSpec.parse(em / "emnist-letters-train-images-idx3-ubyte").load()
    assert len(d.train) + len(d.test) == 20 and d.notes[0].startswith("no test part")
    d = DataSpec.parse(
        em / "emnist-letters-train-images-idx3-ubyte",
        label=em / "emnist-letters-train-labels-idx1-ubyte",
        test=em / "emnist-letters-t10k-images-idx3-ubyte",
    ).load()
    assert (len(d.train), len(d.test), d.notes) == (20, 6, [])
    idx_set(em, "emnist-digits-")
    with pytest.raises(DataError) as e:
        DataSpec.parse(em).load()
    assert "IDX files of several sets ('emnist-digits-', 'emnist-letters-')" in message(e)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    write_idx(lonely / "train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    with pytest.raises(DataError, match="its labels file is missing"):
        DataSpec.parse(lonely).load()
    (lonely / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09")
    with pytest.raises(CorruptDataError, match="train-labels-idx1-ubyte: payload is 0 bytes"):
        DataSpec.parse(lonely).load()


# ---- arrays ------------------------------------------------------------------------------


def test_npz_one_set_is_split_stratified(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    y = np.repeat(["b", "a"], [80, 20])
    np.savez(tmp_path / "d.npz", X=x, Y=y)
    d = DataSpec.parse(tmp_path / "d.npz").load()
    assert d.train.classes == ("a", "b") and d.train.image_rule is None
    assert (len(d.train), len(d.test)) == (80, 20)
    assert d.test.labels.bincount().tolist() == [4, 16]  # stratified
    assert d.train.inputs is d.test.inputs  # subsets of one storage
    assert torch.equal(d.test.images, torch.from_numpy(x)[d.test.index])
    again = DataSpec.parse(tmp_path / "d.npz").load()
    assert torch.equal(again.test.index, d.test.index)  # seeded
    assert d.notes == [
        f"no test part in {tmp_path / 'd.npz'}: held out 20% (20 of 100 examples, stratified, "
        "seed 0) as the test split"
    ]
    d = DataSpec.parse(tmp_path / "d.npz", test_split=0.5).load()
    assert len(d.test) == 50


def test_npz_four_arrays_classes_and_conversions(tmp_path: Path) -> None:
    xtr = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)  # (N, H, W, C)
    np.savez(
        tmp_path / "d.npz",
        x_train=xtr,
        y_train=[1, 0],
        X_TEST=xtr[:1],
        y_test=[1],
        classes=np.array(["zero", "one", "two"]),
    )
    d = DataSpec.parse(tmp_path / "d.npz").load()
    assert d.train.classes == ("zero", "one", "two")
    assert d.train.inputs.shape == (2, 3, 4, 4) and d.train.image_rule == "resize"
    assert np.array_equal(d.train.inputs.numpy(), xtr.transpose(0, 3, 1, 2))
    assert any("transposed to (N, C, H, W)" in n for n in d.notes)
    np.savez(tmp_path / "f.npz", X=np.ones((4, 2)), y=[0, 1, 0, 1])
    d = DataSpec.parse(tmp_path / "f.npz", test_split=0.5).load()
    assert d.train.inputs.dtype == torch.float32
    assert any("float64 features converted to float32 (a copy in memory)" in n for n in d.notes)
    np.savez(tmp_path / "o.npz", X=np.ones((2, 2)), y=np.array(["a", None], dtype=object))
    with pytest.raises(DataError) as e:
        DataSpec.parse(tmp_path / "o.npz").load()
    assert "holds Python objects, which are never unpickled" in message(e)
    np.savez(tmp_path / "k.npz", data=np.ones((2, 2)))
    with pytest.raises(DataError, match="no arrays named X and y"):
        DataSpec.parse(tmp_path / "k.npz").load()
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 nothing")
    with pytest.raises(CorruptDataError, match="not a readable .npz file"):
        DataSpec.parse(tmp_path / "broken.npz").load()


def mapped_range(path: Path) -> list[tuple[int, int]]:
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
            ranges.append((lo, hi))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux's /proc")
def test_npy_is_memory_mapped_not_copied(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    d = tmp_path / "arrays"
    d.mkdir()
    np.save(d / "X.npy", x)
    np.save(d / "y.npy", np.arange(50) % 5)
    data = DataSpec.parse(d).load()
    ptr = data.train.inputs.data_ptr()
    assert any(lo <= ptr < hi for lo, hi in mapped_range((d / "X.npy").resolve()))
    assert np.array_equal(data.train.inputs.numpy(), x)
    # explicit features file + labels file
    np.save(tmp_path / "labels.npy", np.arange(50) % 5)
    one = DataSpec.parse(d / "X.npy", label=tmp_path / "labels.npy").load()
    assert one.train.classes == ("0", "1", "2", "3", "4")
    np.save(tmp_path / "short.npy", np.arange(49) % 5)
    with pytest.raises(DataError, match="49 labels but 50 rows"):
        DataSpec.parse(d / "X.npy", label=tmp_path / "short.npy").load()


def test_safetensors(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    x = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    save_file(
        {"x_train": x, "y_train": np.arange(12) % 3, "x_test": x[:3], "y_test": np.arange(3)},
        str(tmp_path / "d.safetensors"),
        {"classes": json.dumps(["r", "g", "b"])},
    )
    d = DataSpec.parse(tmp_path / "d.safetensors").load()
    assert d.train.classes == ("r", "g", "b") and np.array_equal(d.train.inputs.numpy(), x)
    assert d.test.labels.tolist() == [0, 1, 2]
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(CorruptDataError, match="bad.safetensors: not a .safetensors file"):
        DataSpec.parse(tmp_path / "bad.safetensors").load()


@pytest.mark.parametrize("bad, what", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_features_name_the_row(tmp_path: Path, bad, what) -> None:
    x = np.ones((30, 4), np.float32)
    x[17, 2] = bad
    np.savez(tmp_path / "d.npz", X=x, y=np.arange(30) % 2)
    with pytest.raises(DataError) as e:
        DataSpec.parse(tmp_path / "d.npz").load()
    assert message(e) == (
        f"{tmp_path / 'd.npz'}: feature 2 of row 18 is {what} (NaN and inf are not inputs; "
        "fill or drop those rows)"
    )


# ---- tables ------------------------------------------------------------------------------


def test_csv_tsv_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "t.csv").write_text("a,b,label\n1,2.5,x\n3,4,y\n5,6,x\n7,8,y\n")
    d = DataSpec.parse(tmp_path / "t.csv", test_split=0.5).load()
    assert d.train.classes == ("x", "y") and d.train.input_shape == (2,)
    assert torch.equal(
        d.train.inputs, torch.tensor([[1, 2.5], [3, 4], [5, 6], [7, 8]], dtype=torch.float32)
    )
    (tmp_path / "t.tsv").write_text("species\tw\n2\t0.5\n1\t1.5\n")
    (tmp_path / "test.tsv").write_text("w\tspecies\n9\t1\n")
    d = DataSpec.parse(tmp_path / "t.tsv", label="species", test=tmp_path / "test.tsv").load()
    assert d.train.classes == ("1", "2") and d.test.labels.tolist() == [0]
    pq.write_table(
        pa.table({"f": [1.0, 2.0, 3.0], "g": [0, 1, 1], "label": ["u", "v", "u"]}),
        tmp_path / "t.parquet",
    )
    d = DataSpec.parse(tmp_path / "t.parquet", test_split=1 / 3).load()
    assert d.train.input_shape == (2,) and d.train.classes == ("u", "v")


@pytest.mark.parametrize(
    "text, label, expected",
    [
        ("a,b\n1,2\n", None, "no column 'label' (no column named 'label'); columns are a, b;"),
        ("a,city,label\n1,Oslo,x\n2,Rome,y\n", None, "column 'city' is not numeric (string)"),
        ("a,label\n1,x\n2,y,3\n", None, "cannot read the table (line 3 has 3 fields, the header 2"),
        ("a,label\n1,x\n2,\n3,y\n", None, "column 'label' has 1 missing labels (first at row 2)"),
        ("a,b,label\n1,,x\n2,3,y\n", None, "column 'b' has 1 missing values (first at row 1)"),
        ("a,label\n1,0.5\n2,1\n", None, "label 0.5 at row 1 is not a whole number"),
        ("a,label\n", None, "no examples (zero rows)"),
    ],
)
def test_bad_tables(tmp_path: Path, text: str, label, expected: str) -> None:
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises((DataError, ConfigError)) as e:
        DataSpec.parse(tmp_path / "t.csv", label=label).load()
    assert expected in message(e)


# ---- labels, shared by every source ------------------------------------------------------


def test_label_checks(tmp_path: Path) -> None:
    def npz(name: str, **arrays) -> Path:
        np.savez(tmp_path / name, **arrays)
        return tmp_path / name

    x = np.ones((6, 2), np.float32)
    unseen = npz("u.npz", x_train=x, y_train=[0, 1] * 3, x_test=x[:3], y_test=[1, 7, 7])
    with pytest.raises(DataError) as e:
        DataSpec.parse(unseen).load()
    assert "test labels never seen in training: 7 (2 test rows)" in message(e)
    one = npz("one.npz", X=x, y=[3] * 6)
    with pytest.raises(DataError, match="every training label is 3; a classifier needs at least 2"):
        DataSpec.parse(one).load()
    zero = npz("z.npz", X=np.ones((0, 2), np.float32), y=np.zeros(0, int))
    with pytest.raises(DataError, match="no examples"):
        DataSpec.parse(zero).load()
    mismatch = npz(
        "m.npz", x_train=x, y_train=[0, 1] * 3, x_test=np.ones((2, 3), np.float32), y_test=[0, 1]
    )
    with pytest.raises(DataError) as e:
        DataSpec.parse(mismatch).load()
    assert "train and test do not match" in message(e) and "has 2 features" in message(e)
    ids = npz("ids.npz", X=np.ones((60_000, 1), np.float32), y=np.arange(60_000))
    with pytest.raises(DataError) as e:
        DataSpec.parse(ids).load()
    assert "60,000 different label values, more than --max-classes 10,000" in message(e)
    assert "pass --max-classes 60000" in message(e)
    images = npz("img.npz", x_train=np.zeros((4, 5, 5), np.uint8), y_train=[0, 1, 0, 1],
                 x_test=np.zeros((2, 3, 5, 5), np.uint8), y_test=[0, 1])  # fmt: skip
    with pytest.raises(DataError) as e:
        DataSpec.parse(images).load()
    assert "has images 5x5 with 1 channel" in message(e) and "5x5 with 3 channels" in message(e)


# ---- scikit-learn's digits, as a folder and as a table -----------------------------------


def test_sklearn_digits_as_folder_and_csv(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[:300]  # 0..16 -> 0..255
    target = digits.target[:300]
    for i, (a, k) in enumerate(zip(images, target, strict=True)):
        png(tmp_path / "digits" / str(k) / f"{i:04d}.png", a)
    d = DataSpec.parse(tmp_path / "digits").load()
    order = np.lexsort((np.arange(len(target)), target))  # class, then file name
    whole = d.train.inputs.numpy()
    assert whole.shape == (300, 8, 8) and np.array_equal(whole, images[order])
    assert d.train.classes == tuple(str(k) for k in range(10))
    got = torch.cat([d.train.labels, d.test.labels])[
        torch.argsort(torch.cat([d.train.index, d.test.index]))
    ]
    assert np.array_equal(got.numpy(), target[order])
    rows = [",".join([f"p{j}" for j in range(64)] + ["digit"])]
    for x, k in zip(digits.data[:300], target, strict=True):
        rows.append(",".join([*map(str, x.tolist()), str(k)]))
    (tmp_path / "digits.csv").write_text("\n".join(rows) + "\n")
    d = DataSpec.parse(tmp_path / "digits.csv", label="digit").load()
    assert d.train.input_shape == (64,)
    assert np.array_equal(
        d.test.images.numpy(), digits.data[:300][d.test.index.numpy()].astype(np.float32)
    )
    assert np.array_equal(
        np.array(d.test.classes)[d.test.labels.numpy()], target[d.test.index.numpy()].astype(str)
    )


# ---- Fashion-MNIST exported and read back ------------------------------------------------


@pytest.fixture(scope="module")
def fashion() -> tuple:
    return load_fashion_mnist("train"), load_fashion_mnist("test")


@pytest.mark.parametrize("fmt", ["npz", "torchvision"])
def test_export_round_trip(tmp_path: Path, fashion, fmt: str) -> None:
    out = export_fashion_mnist(tmp_path / "out", fmt)
    d = DataSpec.parse(out if fmt == "npz" else tmp_path / "out").load()
    assert d.notes == []
    for got, ref in zip((d.train, d.test), fashion, strict=True):
        assert torch.equal(got.inputs, ref.inputs) and torch.equal(got.labels, ref.labels)
        assert got.classes == ref.classes
    assert d.train.image_rule == ("fashion-mnist" if fmt == "torchvision" else "resize")
    if fmt == "torchvision":
        raw = tmp_path / "out" / "FashionMNIST" / "raw"
        names = {p.name for p in raw.iterdir()}
        stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
        stems += ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        assert names == {*stems, *(s + ".gz" for s in stems), "classes.txt"}
        assert DataSpec.parse(raw / "t10k-images-idx3-ubyte.gz").kind == "idx"


def test_export_folder_subset_round_trip(tmp_path: Path, fashion) -> None:
    out = export_fashion_mnist(tmp_path, "folder", limit=250)
    assert out == tmp_path / "fashion-mnist"
    d = DataSpec.parse(out).load()
    assert sorted(d.train.classes) == sorted(fashion[0].classes)
    for got, ref in zip((d.train, d.test), fashion, strict=True):
        ref_names = np.array(ref.classes)[ref.labels[:250].numpy()]
        order = np.lexsort((np.arange(250), ref_names))  # class folder, then file name
        assert np.array_equal(got.inputs.numpy(), ref.inputs[:250].numpy()[order])
        assert np.array_equal(np.array(got.classes)[got.labels.numpy()], ref_names[order])
    assert (out / "train" / "ankle boot").is_dir()
    assert all(len(p.stem) == 3 for p in (out / "test").rglob("*.png"))  # 000..249


def test_cli_export_errors(tmp_path: Path, capsys, fashion) -> None:
    (tmp_path / "taken" / "fashion-mnist.npz").parent.mkdir()
    (tmp_path / "taken" / "fashion-mnist.npz").write_bytes(b"x")
    assert main(["data", "export", "--format", "npz", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "fashion-mnist.npz already exists and is not empty; pass --force to replace it"
    )
    assert "\n" not in err
    (tmp_path / "file").write_text("x")
    assert main(["data", "export", "--format", "torchvision", str(tmp_path / "file")]) == 2
    assert "file: not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["data", "export", "--format", "zip", str(tmp_path)])
    assert e.value.code == 2 and "invalid choice: 'zip'" in capsys.readouterr().err
    assert main(["data", "export", "--format", "npz", str(tmp_path / "taken"), "--force"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert np.load(tmp_path / "taken" / "fashion-mnist.npz")["x_test"].shape == (10_000, 28, 28)
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["fashion-mnist.npz"]


def test_export_failure_leaves_nothing(tmp_path: Path, monkeypatch, fashion) -> None:
    from softmax_regression.data import export

    def boom(*args) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_torchvision", boom)
    with pytest.raises(DataError, match="FashionMNIST: cannot write"):
        export_fashion_mnist(tmp_path, "torchvision")
    assert list(tmp_path.iterdir()) == []


def test_worker_processes_do_not_rerun_an_unguarded_script(tmp_path: Path) -> None:
    """A script without `if __name__ == "__main__":` loads a folder with worker processes."""
    arrays = image_folder(tmp_path / "pets", per_class=6)
    script = tmp_path / "script.py"
    script.write_text(
        "from softmax_regression.data import folder, load_data\n"
        "folder.PARALLEL_MIN, folder.CHUNK = 1, 4  # workers even for 18 images\n"
        "print('RUN')\n"
        f"d = load_data({str(tmp_path / 'pets')!r}, test_split=0.5)\n"
        "print(int(d.train.inputs.sum()))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["RUN", str(int(sum(a.sum() for a in arrays.values())))]
