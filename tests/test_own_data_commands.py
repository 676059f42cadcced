"""Every command on models that are not Fashion-MNIST's: features (arrays) and colour images
(an image folder), through ``main(argv)`` as a user types them; the model file records what
the model takes, and a model refuses inputs of another kind with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from softmax_regression.cli import main
from softmax_regression.runs import artifacts

CLASSES = ("ant", "bee", "cat", "dog")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("softmax-regression:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    """A separable 4-class problem of 12 features far outside [0, 1], string labels."""
    d = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 12)) * 3
    y = rng.integers(0, 4, 2000)
    x = ((means[y] + rng.normal(size=(2000, 12))) * 40 + 100).astype(np.float32)
    np.savez(d / "feat.npz", X=x, y=np.array(CLASSES)[y])
    np.savetxt(d / "rows.csv", x[:5], delimiter=",", header=",".join(f"f{i}" for i in range(12)))
    np.savetxt(d / "wide.csv", np.ones((2, 13)), delimiter=",")
    return d


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Colour 12x10 images in class folders: each class a different hue."""
    d = tmp_path_factory.mktemp("folder") / "pets"
    rng = np.random.default_rng(1)
    hues = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])
    for k, name in enumerate(CLASSES):
        (d / name).mkdir(parents=True)
        for i in range(40):
            a = np.clip(hues[k] + rng.normal(0, 30, (12, 10, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(d / name / f"{i}.png")
    return d


@pytest.fixture(scope="module")
def feature_run(features, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "feat"
    argv = ["train", "--data", str(features / "feat.npz"), "--standardize", "--epochs", "3"]
    assert main([*argv, "--out", str(out), "--quiet", "--no-report"]) == 0
    return out


def test_a_feature_model_records_what_it_takes(feature_run) -> None:
    saved = artifacts.load_model(feature_run)
    assert saved.input_shape == (12,) and saved.image_rule is None and not saved.is_image
    assert saved.classes == CLASSES
    assert saved.preprocessing.standardized and saved.preprocessing.mean.shape == (12,)
    assert saved.data["name"] == "feat" and saved.data["train_examples"] == 1600
    info = json.loads((feature_run / "model.json").read_text())
    assert info["architecture"].endswith("nn.Linear(12, 4)): logits, no softmax")
    config = json.loads((feature_run / "config.json").read_text())["config"]
    assert config["data"]["path"].endswith("feat.npz") and config["standardize"] is True
    # no pictures of features
    assert not (feature_run / "weights.png").exists()
    assert (feature_run / "confusion.png").exists()


def test_evaluate_a_feature_model_on_its_own_data(feature_run, capsys) -> None:
    rc, out, _ = run(capsys, "evaluate", str(feature_run), "--json")
    assert rc == 0
    body = json.loads(out)
    assert body["classes"] == list(CLASSES) and body["total"] == 400
    assert body["accuracy"] > 0.95


def test_predict_rows_of_features(feature_run, features, capsys) -> None:
    rc, out, _ = run(capsys, "predict", str(feature_run), "--features", str(features / "rows.csv"))
    assert rc == 0
    lines = out.strip().splitlines()
    assert len(lines) == 5 and lines[0].startswith("row 0: ")
    assert all(line.split(": ")[1].split()[0] in CLASSES for line in lines)
    rc, out, _ = run(
        capsys, "predict", str(feature_run), "--features", str(features / "rows.csv"), "--json"
    )
    rows = json.loads(out)["predictions"]
    assert [r["row"] for r in rows] == list(range(5)) and len(rows[0]["top"]) == 3


def test_a_feature_model_refuses_other_inputs(feature_run, features, folder, capsys) -> None:
    rc, _, err = run(capsys, "predict", str(feature_run), "--features", str(features / "wide.csv"))
    assert rc == 2 and "13 features per row" in one_line_error(err) and "takes 12" in err
    image = next((folder / "ant").iterdir())
    rc, _, err = run(capsys, "predict", str(feature_run), str(image))
    assert rc == 2 and "not images" in one_line_error(err)
    rc, _, err = run(capsys, "evaluate", str(feature_run), "--data", str(folder))
    assert rc == 3 and "takes inputs of shape 12 features" in one_line_error(err)


def test_resume_reads_the_data_from_the_run(features, tmp_path, capsys) -> None:
    out = tmp_path / "r"
    data = ["--data", str(features / "feat.npz"), "--standardize"]
    assert main(["train", *data, "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    rc, _, err = run(capsys, "train", "--resume", str(out), "--epochs", "3", *data[:2])
    assert rc == 2 and "--resume reads the data from the run" in one_line_error(err)
    rc, out_text, _ = run(capsys, "train", "--resume", str(out), "--epochs", "3", "--quiet")
    assert rc == 0 and "final (3 epochs" in out_text
    assert artifacts.load_model(out).classes == CLASSES


def test_raw_features_blow_up_and_the_guard_says_standardize(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(600, 5)) * 1e30).astype(np.float32)
    np.savez(tmp_path / "huge.npz", X=x, y=rng.integers(0, 2, 600))
    rc, _, err = run(
        capsys, "train", "--data", str(tmp_path / "huge.npz"), "--epochs", "2",
        "--out", str(tmp_path / "h"), "--quiet",
    )  # fmt: skip
    assert rc == 6 and "--standardize" in one_line_error(err)


def test_an_image_folder_model_predicts_files_by_its_own_rule(folder, tmp_path, capsys) -> None:
    out = tmp_path / "img"
    rc, _, _ = run(
        capsys, "train", "--data", str(folder), "--epochs", "5", "--out", str(out), "--quiet",
        "--no-report",
    )  # fmt: skip
    assert rc == 0
    saved = artifacts.load_model(out)
    assert saved.input_shape == (3, 12, 10) and saved.image_rule == "resize"
    assert saved.classes == CLASSES
    assert (out / "weights.png").exists() and (out / "predictions.png").exists()
    # A larger photo of a green thing: resized to 12x10 as training did; and in grayscale
    # (converted to RGB the way the folder reader converts one).
    big = tmp_path / "green.jpg"
    Image.fromarray(np.full((120, 100, 3), (40, 200, 40), np.uint8)).save(big)
    rc, out_text, _ = run(capsys, "predict", str(out), str(big), "--json")
    assert rc == 0
    top = json.loads(out_text)["predictions"][0]["top"]
    assert top[0]["class"] == "bee"
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((12, 10), 128, np.uint8)).save(gray)
    rc, _, _ = run(capsys, "predict", str(out), str(gray))
    assert rc == 0
    rc, _, err = run(capsys, "predict", str(out), "--features", str(gray))
    assert rc == 2 and "not features" in one_line_error(err)
    rc, out_text, _ = run(capsys, "evaluate", str(out))
    assert rc == 0 and "(32 images)" in out_text


def test_a_fashion_mnist_model_file_of_before_still_loads(tmp_path) -> None:
    """A model file written before other data (no input shape, no image rule) is a
    Fashion-MNIST model."""
    from safetensors.torch import save_file

    meta = {
        "format": artifacts.MODEL_FORMAT,
        "format_version": "1",
        "classes": json.dumps(list(artifacts.CLASSES)),
        "normalize": "true",
    }
    tensors = {"1.weight": torch.zeros(10, 784), "1.bias": torch.zeros(10)}
    save_file(tensors, tmp_path / "old.safetensors", metadata=meta)
    saved = artifacts.load_model(tmp_path / "old.safetensors")
    assert saved.input_shape == (1, 28, 28) and saved.image_rule == "fashion-mnist"
    assert not saved.preprocessing.standardized and saved.classes == artifacts.CLASSES


def test_data_is_not_taken_for_data_dir(tmp_path, capsys) -> None:
    """No abbreviations: ``--data-d`` is not ``--data-dir``, and ``--data`` is its own option."""
    with pytest.raises(SystemExit) as e:
        main(["train", "--data-d", str(tmp_path)])
    assert e.value.code == 2 and "unrecognized arguments: --data-d" in capsys.readouterr().err
    rc, _, err = run(capsys, "train", "--data", str(tmp_path / "nothing-here"), "--epochs", "1")
    assert rc != 0 and "nothing-here" in one_line_error(err)


def test_sweep_on_own_data(features, tmp_path, capsys) -> None:
    out = tmp_path / "sw"
    rc, text, _ = run(
        capsys, "sweep", "--data", str(features / "feat.npz"), "--standardize", "--epochs", "1",
        "--seeds", "1", "--lr", "0.1,0.3", "--out", str(out), "--quiet", "--no-report",
    )  # fmt: skip
    assert rc == 0 and "0.3" in text
    body = json.loads((out / "sweep.json").read_text())
    assert body["base_config"]["data"]["path"].endswith("feat.npz")


def test_a_table_model_names_its_features(tmp_path, capsys) -> None:
    """A table's feature columns travel into the model file and name the features of the
    report's strongest-features table (not "feature 3")."""
    rng = np.random.default_rng(3)
    columns = ["petal_length", "petal_width", "sepal_length"]
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 3)) + 3 * np.eye(3)[y]
    lines = [",".join([*columns, "species"])]
    lines += [",".join([*(f"{v:.4f}" for v in row), f"s{k}"]) for row, k in zip(x, y, strict=True)]
    (tmp_path / "flowers.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "flowers.csv"), "--label", "species"]
    assert main([*argv, "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    saved = artifacts.load_model(out)
    assert saved.data["feature_names"] == columns
    page = (out / "report.html").read_text()
    assert all(f'"{name}"' in page for name in columns)


def test_an_evaluation_of_many_classes_holds_no_dense_matrix() -> None:
    """Past DENSE_CONFUSION_CLASSES the confusion matrix is not built (K x K cells); the
    per-class numbers and the most confused pairs are the dense matrix's all the same."""
    from softmax_regression.evaluation import DENSE_CONFUSION_CLASSES, evaluation_from_predictions

    rng = np.random.default_rng(0)
    k = DENSE_CONFUSION_CLASSES + 1
    labels = torch.from_numpy(rng.integers(0, k, 20_000))
    pred = torch.where(
        torch.rand(20_000) < 0.6, labels, torch.from_numpy(rng.integers(0, 30, 20_000))
    )
    names = tuple(f"c{i}" for i in range(k))
    sparse = evaluation_from_predictions(pred, labels, names)
    dense = evaluation_from_predictions(pred, labels, names, dense_up_to=k)
    assert sparse.confusion is None and len(dense.confusion) == k
    assert sparse.per_class == dense.per_class and sparse.correct == dense.correct
    brute = sorted(
        (
            (-n, i, j)
            for i, row in enumerate(dense.confusion)
            for j, n in enumerate(row)
            if i != j and n
        ),
    )
    assert sparse.most_confused(20) == [(names[i], names[j], -n) for n, i, j in brute[:20]]
    assert sparse.to_dict()["confusion"] is None


def test_a_run_of_many_classes_skips_the_confusion_picture(tmp_path, capsys) -> None:
    k = 2100  # past DENSE_CONFUSION_CLASSES: no K x K matrix anywhere, every command works
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(k), 6)
    x = (np.eye(k, 16, dtype=np.float32)[y % 16] * 3 + rng.normal(size=(len(y), 16))).astype(
        np.float32
    )
    np.savez(tmp_path / "many.npz", x_train=x[::2], y_train=y[::2], x_test=x[1::2], y_test=y[1::2])
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "many.npz"), "--epochs", "1", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    assert (out / "curves.png").exists() and not (out / "confusion.png").exists()
    assert (out / "report.html").exists()
    capsys.readouterr()
    rc, text, _ = run(capsys, "evaluate", str(out), "--json")
    body = json.loads(text)
    assert rc == 0 and body["confusion"] is None and body["total"] == k * 3
    assert len(body["per_class"]) == k and len(body["most_confused"]) == 5
