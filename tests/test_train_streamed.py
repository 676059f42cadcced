"""The book recipe, evaluate and predict over features read from disk block by block: the
same answers as in memory, shards and one file alike, and one line for bad data."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from softmax_regression.cli import main
from softmax_regression.config import TrainConfig
from softmax_regression.data import stream
from softmax_regression.data.spec import DataSpec
from softmax_regression.data.streamed import StreamedDataset, block_windows
from softmax_regression.errors import ConfigError
from softmax_regression.evaluation import evaluate
from softmax_regression.train import fit

N, D, K = 3000, 20, 5


@pytest.fixture(scope="module")
def arrays(tmp_path_factory) -> dict[str, Path]:
    """One problem three ways: x_train.npy etc. in a directory, the same cut into shards,
    and features to classify."""
    root = tmp_path_factory.mktemp("streamed")
    rng = np.random.default_rng(0)
    w = rng.normal(size=(D, K))
    x = rng.normal(size=(N, D)).astype(np.float32)
    xt = rng.normal(size=(500, D)).astype(np.float32)
    y, yt = (x @ w).argmax(1), (xt @ w).argmax(1)
    one = root / "one"
    one.mkdir()
    for name, a in (("x_train", x), ("y_train", y), ("x_test", xt), ("y_test", yt)):
        np.save(one / f"{name}.npy", a)
    shards = root / "shards"
    shards.mkdir()
    for k, (lo, hi) in enumerate([(0, 1234), (1234, 1300), (1300, N)]):
        np.save(shards / f"x_train-{k:05d}.npy", x[lo:hi])
        np.save(shards / f"y_train-{k:05d}.npy", y[lo:hi])
    np.save(shards / "x_test-00000.npy", xt)
    np.save(shards / "y_test-00000.npy", yt)
    return {"one": one, "shards": shards, "root": root}


CONFIG = TrainConfig(epochs=3, batch_size=256)


def _history(result) -> list[tuple[float, float, float]]:
    return [(r.train_loss, r.train_acc, r.test_acc) for r in result.history]


def test_one_block_is_the_in_memory_run_bit_for_bit(arrays):
    memory = DataSpec.parse(arrays["one"]).load()
    streamed = DataSpec.parse(arrays["one"], stream="always").load()
    assert isinstance(streamed.train, StreamedDataset) and streamed.train.num_blocks == 1
    assert not isinstance(memory.train, StreamedDataset)
    for config in (CONFIG, CONFIG.replace(val_split=300), CONFIG.replace(engine="autograd")):
        a, b = fit(config, memory.train, memory.test), fit(config, streamed.train, streamed.test)
        assert _history(a) == _history(b)
        assert torch.equal(a.model.weight, b.model.weight)
        assert torch.equal(a.model.bias, b.model.bias)


def test_shards_and_one_file_give_the_same_run(arrays, monkeypatch):
    monkeypatch.setattr(stream, "BLOCK_BYTES", 100 * D * 4)  # 30 blocks of 100 rows
    one = DataSpec.parse(arrays["one"], stream="always").load()
    shards = DataSpec.parse(arrays["shards"]).load()
    assert shards.train.num_blocks == 30
    a, b = fit(CONFIG, one.train, one.test), fit(CONFIG, shards.train, shards.test)
    assert _history(a) == _history(b)
    assert torch.equal(a.model.weight, b.model.weight)
    # and it learns as the in-memory run does (another shuffle, the same problem)
    memory = DataSpec.parse(arrays["one"]).load()
    c = fit(CONFIG, memory.train, memory.test)
    assert abs(a.history.last.test_acc - c.history.last.test_acc) < 0.03
    assert abs(a.history.last.train_loss - c.history.last.train_loss) < 0.02


def test_block_shuffling_windows():
    gen = torch.Generator().manual_seed(3)
    windows = block_windows(10, 4, gen)
    assert [len(w) for w in windows] == [4, 4, 2]
    assert sorted(k for w in windows for k in w) == list(range(10))
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    assert [k for w in windows for k in w] == expected
    state = gen.get_state()
    assert block_windows(1, 4, gen) == [[0]]
    assert torch.equal(gen.get_state(), state)  # one block draws nothing


def test_every_row_once_per_epoch_in_windows(arrays, monkeypatch):
    """Each epoch's batches are a permutation of the rows, and a window's rows come only from
    its blocks: the first batches draw on 4 blocks of 100 rows (the window) at most."""
    monkeypatch.setattr(stream, "BLOCK_BYTES", 100 * D * 4)
    data = DataSpec.parse(arrays["shards"]).load().train
    seen = []
    import softmax_regression.train as train_module

    original = train_module._Loop._epoch_streamed

    def spy(self, gen, epoch, progress):
        step = self.step

        def recording(idx, y, pred, mx, loss_sum):
            seen.append(self.window.index_select(0, idx).clone())
            step(idx, y, pred, mx, loss_sum)

        self.step = recording
        return original(self, gen, epoch, progress)

    monkeypatch.setattr(train_module._Loop, "_epoch_streamed", spy)
    fit(CONFIG.replace(epochs=1, batch_size=100), data)
    rows = torch.cat(seen)
    x = torch.from_numpy(np.concatenate(list(data.source.chunks())))
    assert rows.shape == x.shape
    # every row exactly once: compare sorted by the first feature
    assert torch.equal(rows[rows[:, 0].argsort()], x[x[:, 0].argsort()])
    first_window = torch.cat(seen[:4])  # 400 rows = the first window exactly
    row_of = {tuple(r.tolist()): i for i, r in enumerate(x)}
    blocks = {row_of[tuple(r.tolist())] // 100 for r in first_window}
    assert len(blocks) == 4


def test_train_evaluate_predict_commands(arrays, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(stream, "BLOCK_BYTES", 256 * D * 4)
    out = tmp_path / "run"
    assert main(["train", "--data", str(arrays["shards"]), "--epochs", "2", "--out", str(out)]) == 0
    _, err = capsys.readouterr()
    assert "read block by block from disk" in err
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "completed"
    assert main(["evaluate", str(out), "--json"]) == 0
    ev = json.loads(capsys.readouterr()[0])
    assert ev["total"] == 500 and ev["accuracy"] == status["metrics"]["test_acc"]
    # predict --features: a .npy classified block by block, the same as in memory
    xt = np.load(arrays["shards"] / "x_test-00000.npy")
    np.save(tmp_path / "rows.npy", xt)
    assert main(["predict", str(out), "--features", str(tmp_path / "rows.npy"), "--json"]) == 0
    body = json.loads(capsys.readouterr()[0])
    assert [p["row"] for p in body["predictions"]] == list(range(500))
    from softmax_regression.runs.artifacts import load_model

    saved = load_model(out)
    pred = saved.model(torch.from_numpy(xt)).argmax(1).tolist()
    assert [int(p["top"][0]["class"]) for p in body["predictions"]] == pred
    data = DataSpec.parse(arrays["shards"]).load()
    assert evaluate(saved.model, data.test).accuracy == ev["accuracy"]


def test_stream_choices_and_errors(arrays, tmp_path):
    with pytest.raises(ConfigError, match="--stream must be one of auto, always, never"):
        DataSpec.parse(arrays["one"], stream="sometimes")
    with pytest.raises(ConfigError, match="a shard directory is always read block by block"):
        DataSpec.parse(arrays["shards"], stream="never").load()
    with pytest.raises(ConfigError, match="--stream applies to --data of your own"):
        DataSpec.parse(None, stream="always")
    np.savetxt(tmp_path / "t.csv", np.ones((4, 3)), delimiter=",", header="a,b,label")
    with pytest.raises(ConfigError, match="only Parquet tables are read block by block"):
        DataSpec.parse(tmp_path / "t.csv", stream="always").load()
    spec = DataSpec.parse(arrays["one"], stream="always")
    assert DataSpec.from_dict(spec.to_dict()) == spec
    assert "stream" not in DataSpec.parse(arrays["one"]).to_dict()  # old descriptions unchanged


def test_a_shard_changed_during_training_fails_the_run_in_one_line(arrays, tmp_path, capsys):
    shards = tmp_path / "shards"
    shards.mkdir()
    for f in arrays["shards"].iterdir():
        (shards / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "run"

    class Touch:
        """Progress that rewrites a shard during epoch 2."""

        def epoch_start(self, epoch, epochs, steps):
            if epoch == 2:
                path = shards / "x_train-00001.npy"
                st = path.stat()
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

        def advance(self, steps):
            pass

        def epoch_end(self, record):
            pass

    from softmax_regression.errors import DataError
    from softmax_regression.runs.book import train_run

    config = CONFIG.replace(data=DataSpec.parse(shards).to_dict())
    with pytest.raises(DataError, match=r"x_train-00001.npy: changed while being read"):
        train_run(config, out=out, progress=Touch(), plots=False)
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and "changed while being read" in status["error"]
    assert status["epochs_completed"] == 1  # the first epoch's checkpoint is kept
    assert (out / "checkpoint.safetensors").exists()


def test_a_rank_reads_its_share_of_a_split(arrays):
    data = DataSpec.parse(arrays["shards"]).load().train
    first, second = data.share(2, 0), data.share(2, 1)
    assert (len(first), len(second)) == (1500, 1500)
    # shards of rows 0-1233, 1234-1299 and 1300-2999: the second rank opens only the last
    assert second.source.files == [str(arrays["shards"] / "x_train-00002.npy")]
    assert data.share(4, 0).source.files == [str(arrays["shards"] / "x_train-00000.npy")]
    x = np.concatenate(list(data.source.chunks()))
    got = torch.cat(list(second.chunks())).numpy()
    np.testing.assert_array_equal(got, x[1500:])
    # a subset (a validation split's rows) shares by its own examples
    held = data.subset(torch.arange(0, N, 3))
    part = held.share(3, 2)
    rows = torch.cat(list(part.chunks())).numpy()
    np.testing.assert_array_equal(rows, x[::3][667:])
    assert torch.equal(part.labels, held.labels[667:])


def test_two_ranks_each_reading_its_share(arrays, tmp_path):
    from distributed_helpers import run

    args = [sys.executable, "-m", "softmax_regression", "train", "--device", "cpu"]
    args += ["--data", str(arrays["shards"]), "--epochs", "3", "--no-plots", "--no-report"]
    done = run([*args, "--out", str(tmp_path / "two"), "--nproc", "2"], 300)
    assert done.returncode == 0, done.stderr[-3000:]
    status = json.loads((tmp_path / "two" / "status.json").read_text())
    assert status["status"] == "completed" and status["ranks"] == 2
    one = DataSpec.parse(arrays["shards"]).load()
    alone = fit(CONFIG, one.train, one.test)
    # another order of the rows (each rank shuffles its own share), the same problem learned
    assert abs(status["metrics"]["test_acc"] - alone.history.last.test_acc) < 0.03
    assert abs(status["metrics"]["train_loss"] - alone.history.last.train_loss) < 0.03


def test_best_linear_reads_streamed_data(arrays, capsys, tmp_path):
    """The best-linear recipe reads a shard directory block by block too
    (tests/test_fullbatch_stream.py has its answers)."""
    argv = ["train", "--recipe", "best-linear", "--data", str(arrays["shards"])]
    assert main(
        [*argv, "--device", "cpu", "--no-plots", "--no-report", "--out", str(tmp_path / "bl")]
    ) in (0, None)
    report = json.loads((tmp_path / "bl" / "best_linear.json").read_text())
    assert report["test"]["accuracy"] > 0.5


def test_a_streamed_run_resumes_bit_for_bit(arrays, monkeypatch):
    monkeypatch.setattr(stream, "BLOCK_BYTES", 100 * D * 4)
    data = DataSpec.parse(arrays["shards"]).load()
    states = []
    whole = fit(CONFIG, data.train, data.test, on_epoch=states.append)
    resumed = fit(CONFIG, data.train, data.test, state=states[0])
    assert _history(resumed) == _history(whole)
    assert torch.equal(resumed.model.weight, whole.model.weight)


def test_parquet_and_safetensors_stream_to_the_same_run(arrays, tmp_path, monkeypatch):
    """Blocks are rows of the whole set, whatever the format: the same run from a Parquet
    file (read by row groups of another size) and from a .safetensors file."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from safetensors.numpy import save_file

    monkeypatch.setattr(stream, "BLOCK_BYTES", 100 * D * 4)
    one = arrays["one"]
    x, y = np.load(one / "x_train.npy"), np.load(one / "y_train.npy")
    xt, yt = np.load(one / "x_test.npy"), np.load(one / "y_test.npy")
    for name, (a, b) in {"train": (x, y), "test": (xt, yt)}.items():
        table = pa.table({**{f"f{j}": a[:, j] for j in range(D)}, "label": b})
        pq.write_table(table, tmp_path / f"{name}.parquet", row_group_size=333)
    save_file(
        {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt},
        str(tmp_path / "set.safetensors"),
    )
    runs = []
    for spec in (
        DataSpec.parse(one, stream="always"),
        DataSpec.parse(tmp_path / "train.parquet", test=tmp_path / "test.parquet", stream="always"),
        DataSpec.parse(tmp_path / "set.safetensors", stream="always"),
    ):
        data = spec.load()
        assert isinstance(data.train, StreamedDataset) and data.train.num_blocks == 30
        runs.append(fit(CONFIG, data.train, data.test))
    assert _history(runs[1]) == _history(runs[0]) == _history(runs[2])
    assert torch.equal(runs[1].model.weight, runs[0].model.weight)


def test_auto_streams_only_features_too_big_for_memory(tmp_path, monkeypatch):
    from softmax_regression.data import streamed

    x = np.zeros((40, 6), np.float32)
    images = np.zeros((40, 8, 8), np.uint8)
    y = np.arange(40) % 2
    for name, a in (("feat", x), ("img", images)):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "X.npy", a)
        np.save(tmp_path / name / "y.npy", y)
    assert not isinstance(DataSpec.parse(tmp_path / "feat").load().train, StreamedDataset)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < streamed.memory_budget() <= total
    monkeypatch.setattr(streamed, "memory_budget", lambda: 1000)  # 960 bytes > half of it
    assert isinstance(DataSpec.parse(tmp_path / "feat").load().train, StreamedDataset)
    # images are not rows of features: they stay mapped in memory, as before
    assert not isinstance(DataSpec.parse(tmp_path / "img").load().train, StreamedDataset)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("width", r"x_train-00001.npy: 7 features per row, the shards before it have 20"),
        ("truncate", r"x_train-00001.npy: truncated: 66 rows of 20 float32 need"),
        ("labels", r"y_train-00001.npy: 65 labels but x_train-00001.npy has 66 rows"),
    ],
)
def test_bad_shards_are_one_line_on_the_command_line(arrays, tmp_path, capsys, damage, message):
    import re

    shards = tmp_path / "shards"
    shards.mkdir()
    for f in arrays["shards"].iterdir():
        (shards / f.name).write_bytes(f.read_bytes())
    x = np.load(shards / "x_train-00001.npy")
    if damage == "width":
        np.save(shards / "x_train-00001.npy", x[:, :7])
    elif damage == "truncate":
        os.truncate(shards / "x_train-00001.npy", (shards / "x_train-00001.npy").stat().st_size - 4)
    else:
        np.save(shards / "y_train-00001.npy", np.zeros(65, int))
    assert main(["train", "--data", str(shards), "--out", str(tmp_path / "run")]) == 3
    err = capsys.readouterr()[1]
    lines = [line for line in err.splitlines() if line.startswith("softmax-regression:")]
    assert len(lines) == 1 and re.search(message, lines[0]) and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before a run directory was made
