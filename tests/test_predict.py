"""Image files become Fashion-MNIST-like 28x28 images by the documented rule, and the model
classifies them as it classifies the dataset's own images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from softmax_regression.config import TrainConfig
from softmax_regression.data import load_fashion_mnist
from softmax_regression.errors import ImageError
from softmax_regression.evaluation import predict_classes
from softmax_regression.predict import (
    load_image,
    predict_each,
    predict_files,
    prepare_image,
    probabilities,
)
from softmax_regression.runs import artifacts
from softmax_regression.train import fit


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    result = fit(TrainConfig(epochs=3), train, test)
    d = tmp_path_factory.mktemp("model")
    artifacts.save_model(d, result.model)
    return artifacts.load_model(d)


@pytest.fixture(scope="module")
def test_set():
    return load_fashion_mnist("test")


def bbox(a: torch.Tensor, level: int = 40) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(a.numpy() > level)
    return rows.min(), rows.max(), cols.min(), cols.max()


def test_light_background_is_inverted_and_the_object_fitted_and_centred() -> None:
    canvas = np.full((300, 400), 250, np.uint8)  # a white page...
    canvas[100:200, 50:250] = 20  # ...with a dark object twice as wide as tall, off-centre
    out = prepare_image(Image.fromarray(canvas))
    assert out.shape == (28, 28) and out.dtype == torch.uint8
    assert int(out[0, 0]) < 10 and int(out[14, 14]) > 200  # light object on dark
    top, bottom, left, right = bbox(out)
    assert (left, right) == (0, 27)  # the longer side fills the 28 pixels
    assert bottom - top + 1 == 14 and top == 7  # aspect kept, centred vertically


def test_dark_background_is_kept() -> None:
    canvas = np.zeros((56, 56), np.uint8)
    canvas[10:50, 20:36] = 200
    out = prepare_image(Image.fromarray(canvas))
    assert int(out[0, 0]) == 0 and int(out[14, 14]) == 200
    top, bottom, left, right = bbox(out)
    assert (top, bottom) == (0, 27) and right - left + 1 == 11  # 16/40 of 28, centred


def _border_image(size: int, light: int) -> np.ndarray:
    """A size x size image whose outermost rows and columns (4 * size values, corners counted
    twice, as the rule counts them) alternate 127 and 128 with ``light`` of them moved from
    127 up to 128, and an object inside."""
    a = np.full((size, size), 60, np.uint8)
    a[size // 4 : -size // 4, size // 3 : -size // 3] = 230
    border = np.where(np.arange(size) % 2 == 0, 127, 128).astype(np.uint8)
    a[0], a[-1], a[:, 0], a[:, -1] = border, border[::-1], border, border[::-1]
    # The four corners are 127, 128, 128, 127, each counted twice: balanced, mean 127.5.
    for k in range(light):
        a[0, 2 + 2 * k] = 128  # even columns hold 127 on the top row
    return a


@pytest.mark.parametrize("size", [28, 56])
def test_the_background_threshold_at_its_edge(size) -> None:
    """Border mean exactly 127.5: dark, kept. One level more on one border pixel: light,
    inverted. A 28x28 image is otherwise taken as it is (neither trimmed nor scaled)."""
    at = _border_image(size, 0)
    border = np.concatenate([at[0], at[-1], at[:, 0], at[:, -1]]).astype(np.float64)
    assert border.mean() == 127.5
    above = _border_image(size, 1)
    assert np.concatenate([above[0], above[-1], above[:, 0], above[:, -1]]).mean() > 127.5
    kept, inverted = prepare_image(Image.fromarray(at)), prepare_image(Image.fromarray(above))
    if size == 28:
        assert torch.equal(kept, torch.from_numpy(at))
        assert torch.equal(inverted, torch.from_numpy(255 - above))
    else:
        assert int(kept[14, 14]) > 200 and int(inverted[14, 14]) < 55  # 230 vs 255 - 230


@pytest.mark.parametrize("light", [False, True])
@pytest.mark.parametrize(("diff", "kept_in_box"), [(13, False), (14, True)])
def test_the_trim_threshold_at_its_edge(light, diff, kept_in_box) -> None:
    """Pixels more than 13 levels (5%) from the background level bound the trimmed box: a
    speck 13 levels off is background, 14 levels off is part of the object. Measured after
    the inversion, from the border's level, not from black."""
    background = 250 if light else 20
    sign = -1 if light else 1
    a = np.full((60, 60), background, np.uint8)
    a[20:40, 20:40] = background + sign * 180  # a 20x20 object
    a[5, 5] = background + sign * diff  # a faint speck far from it
    out = prepare_image(Image.fromarray(a)).numpy()
    inside = 255 - (background - 180) if light else background + 180
    if kept_in_box:  # the box reaches the speck: the object no longer fills the frame
        assert out.min() < 60
    else:  # the box is the object alone, scaled to fill all 28x28 pixels
        assert np.abs(out.astype(int) - inside).max() <= 3


def test_transparency_counts_as_a_white_page() -> None:
    rgba = np.zeros((64, 64, 4), np.uint8)  # fully transparent...
    rgba[8:56, 16:48] = (30, 30, 120, 255)  # ...around an opaque dark-blue object
    out = prepare_image(Image.fromarray(rgba, "RGBA"))
    assert int(out[0, 0]) == 0 and int(out[14, 14]) > 180


def test_colour_16_bit_and_blank_images() -> None:
    rgb = np.full((40, 30, 3), (255, 255, 255), np.uint8)
    rgb[5:35, 5:25] = (200, 0, 0)
    red = prepare_image(Image.fromarray(rgb))
    assert int(red[14, 14]) == 255 - round(0.299 * 200)  # luma of the red, inverted
    deep = (np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)
    out = prepare_image(Image.fromarray(deep))
    assert 100 < int(out.float().mean()) < 200  # scaled down, not clipped to white
    assert int(prepare_image(Image.new("L", (10, 10), 255)).max()) == 0
    assert prepare_image(Image.new("L", (1, 1), 0)).shape == (28, 28)


def test_exif_orientation_is_applied(tmp_path) -> None:
    canvas = np.zeros((80, 20), np.uint8)  # a tall object...
    canvas[:, :] = 220
    exif = Image.Exif()
    exif[0x0112] = 6  # ...stored sideways: "rotate 90 degrees to display"
    path = tmp_path / "tall.jpg"
    Image.fromarray(np.pad(canvas, 10)).save(path, exif=exif)
    top, bottom, left, right = bbox(load_image(path))
    assert right - left > bottom - top  # displayed (and classified) wide


def test_the_datasets_own_images_survive_the_round_trip(saved, test_set, tmp_path) -> None:
    n = 200
    imgs = test_set.images[:n]
    direct = predict_classes(saved.model, imgs).tolist()
    paths, inverted, big = [], [], []
    for i in range(n):
        a = imgs[i].numpy()
        paths.append(_save(tmp_path / f"{i}.png", a))
        inverted.append(_save(tmp_path / f"inv{i}.png", 255 - a))  # a dark-on-white photo
        big.append(_save(tmp_path / f"big{i}.jpg", np.kron(a, np.ones((5, 5), np.uint8))))
    # 28x28 files (dark backgrounds, as every dataset image has) are taken as they are, and a
    # light page is inverted back to exactly the same pixels.
    for i in range(n):
        assert torch.equal(load_image(paths[i]), imgs[i]), i
        assert torch.equal(load_image(inverted[i]), imgs[i]), i
    plain = [p.top[0][0] for p in predict_files(saved, paths, 1)]
    assert plain == [saved.classes[k] for k in direct]
    # Five times larger, JPEG-compressed: fitted back to 28x28, nearly always the same class.
    upscaled = [p.top[0][0] for p in predict_files(saved, big, 1)]
    agree = sum(a == b for a, b in zip(upscaled, plain, strict=True))
    assert agree >= 0.9 * n, agree


def _save(path: Path, a: np.ndarray) -> Path:
    options = {"quality": 95} if path.suffix == ".jpg" else {}
    Image.fromarray(a).save(path, **options)
    return path


def test_probabilities_and_top_k(saved, test_set, tmp_path) -> None:
    probs = probabilities(saved, test_set.images[:10])
    assert probs.shape == (10, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(10))
    path = _save(tmp_path / "x.png", test_set.images[0].numpy())
    (pred,) = predict_files(saved, [path], k=3)
    assert [c for c, _ in pred.top][0] == "ankle boot"
    values = [v for _, v in pred.top]
    assert values == sorted(values, reverse=True) and len(values) == 3
    assert pred.to_dict()["top"][0] == {"class": "ankle boot", "probability": values[0]}


def test_predict_each_keeps_the_order_and_the_errors(saved, test_set, tmp_path) -> None:
    good = [_save(tmp_path / f"{i}.png", test_set.images[i].numpy()) for i in range(3)]
    bad = _write(tmp_path / "bad.png", b"plain text")
    paths = [good[0], bad, good[1], tmp_path / "gone.png", good[2]]
    each = predict_each(saved, paths, k=2)
    assert [p.source for p in each] == [str(p) for p in paths]
    assert [p.to_dict() for p in (each[0], each[2], each[4])] == [
        p.to_dict() for p in predict_files(saved, good, 2)
    ]
    assert (each[1].top, each[1].error) == ([], f"{bad}: not an image file PIL can read")
    assert each[3].to_dict() == {
        "image": str(tmp_path / "gone.png"),
        "error": f"{tmp_path / 'gone.png'}: no such file",
    }
    with pytest.raises(ImageError, match="bad.png: not an image file"):
        predict_files(saved, paths, 2)
    assert predict_each(saved, [bad], 1)[0].error is not None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.png", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "t.png", b"plain text"), "not an image file PIL can read"),
        (lambda d: _truncated_png(d), "cannot decode the image"),
    ],
    ids=["missing", "directory", "text", "truncated"],
)
def test_unreadable_images_are_one_line_errors(tmp_path, make, message) -> None:
    with pytest.raises(ImageError) as e:
        load_image(make(tmp_path))
    assert message in str(e.value) and "\n" not in str(e.value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_png(d: Path) -> Path:
    full = d / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(full)
    data = full.read_bytes()
    return _write(d / "cut.png", data[: len(data) // 2])
