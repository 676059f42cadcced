"""``softmax-regression data ...``: in-process through ``main(argv)``, plus real subprocess runs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softmax_regression import load_fashion_mnist
from softmax_regression.cli import main
from softmax_regression.data import sources
from softmax_regression.data.download import MIRRORS_ENV
from softmax_regression.data.idx import write_idx
from softmax_regression.data.preview import sample_grid, sample_indices
from softmax_regression.data.sources import STEMS


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["data", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("softmax-regression: error: "), err
    assert "Traceback" not in err
    return err


@pytest.fixture
def no_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> Path:
    monkeypatch.setattr(sources, "torchvision_roots", lambda: [tmp_path / "nowhere"])
    monkeypatch.setattr(sources, "DEBIAN_DIR", tmp_path / "no-debian")
    return isolated_cache


@pytest.fixture
def published(make_dataset: Callable, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path):
    ds = make_dataset(compress=True)
    ds.publish(monkeypatch)
    return ds


# --- where ----------------------------------------------------------------------------------


def test_where_names_the_files_and_how(published, capsys) -> None:
    rc, out, err = run(capsys, "where", "--data-dir", str(published.directory))
    assert rc == 0 and err == ""
    assert out.splitlines()[0] == (
        f"Fashion-MNIST in {published.directory} (found via data_dir / --data-dir)"
    )
    for path in published.files.values():
        assert str(path) in out


def test_where_not_found_is_one_line_and_nonzero(no_places: Path, capsys) -> None:
    rc, out, err = run(capsys, "where")
    assert rc == 3 and out == ""
    line = one_line_error(err)
    assert str(no_places) in line and "apt install dataset-fashion-mnist" in line


def test_where_real_dataset(capsys) -> None:
    rc, out, _ = run(capsys, "where")
    assert rc == 0
    assert out.count("-ubyte") == 4


# --- verify ---------------------------------------------------------------------------------


def test_verify_checks_every_file(published, capsys) -> None:
    rc, out, err = run(capsys, "verify", "--data-dir", str(published.directory))
    assert rc == 0 and err == ""
    assert out.count("  ok    ") == 6  # four files, two splits
    assert "train: 30 images and labels, 3 per class" in out
    assert out.rstrip().endswith("All files verified.")


def test_verify_reports_each_bad_file_and_fails(published, capsys) -> None:
    bad = published.files["t10k-images-idx3-ubyte"]
    data = bytearray(bad.read_bytes())
    data[-8] ^= 0xFF  # gzip CRC
    bad.write_bytes(bytes(data))
    rc, out, err = run(capsys, "verify", "--data-dir", str(published.directory))
    assert rc == 3
    assert f"  FAIL  {bad}: corrupt gzip data (CRC check failed" in out
    assert out.count("  ok    ") == 4  # the other three files and the train split
    assert bad.name in one_line_error(err)


def test_verify_rejects_files_that_are_not_the_published_ones(make_dataset, capsys) -> None:
    own = make_dataset()
    rc, out, err = run(capsys, "verify", "--data-dir", str(own.directory))
    assert rc == 3
    assert out.count("SHA-256 of the decompressed data") == 4
    one_line_error(err)


def test_verify_reports_a_count_mismatch(published, monkeypatch, capsys) -> None:
    labels = np.zeros(29, np.uint8)
    write_idx(published.files["train-labels-idx1-ubyte"], labels, compress=True)
    monkeypatch.setitem(sources.SHA256, "train-labels-idx1-ubyte", _sha(labels))
    rc, out, _ = run(capsys, "verify", "--data-dir", str(published.directory))
    assert rc == 3
    assert (
        "train-labels-idx1-ubyte.gz: 29 labels but train-images-idx3-ubyte.gz has 30 images" in out
    )


def _sha(labels: np.ndarray) -> str:
    head = bytes([0, 0, 8, 1]) + len(labels).to_bytes(4, "big")
    return hashlib.sha256(head + labels.tobytes()).hexdigest()


def test_verify_never_downloads(no_places, mirror_factory, monkeypatch, capsys) -> None:
    m = mirror_factory()
    monkeypatch.setenv(MIRRORS_ENV, m.base)
    rc, _, err = run(capsys, "verify")
    assert rc == 3 and m.requests == []
    one_line_error(err)


# --- download -------------------------------------------------------------------------------


def test_download_into_the_cache_then_keep(
    published, no_places, mirror_factory, monkeypatch, capsys
):
    m = mirror_factory()
    for stem in STEMS:
        m.routes[f"/data/{stem}.gz"] = published.files[stem].read_bytes()
    monkeypatch.setenv(MIRRORS_ENV, m.base)
    rc, out, err = run(capsys, "download")
    assert rc == 0, err
    assert out.splitlines()[0] == f"Fashion-MNIST in {no_places} (downloaded 4 file(s))"
    assert sorted(p.name for p in no_places.iterdir()) == sorted(s + ".gz" for s in STEMS)
    rc, out, _ = run(capsys, "download")
    assert "(downloaded 0 file(s), 4 already there and verified)" in out
    assert len(m.requests) == 4
    rc, out, _ = run(capsys, "download", "--force")
    assert rc == 0 and len(m.requests) == 8
    rc, out, _ = run(capsys, "where")
    assert f"{no_places} (found via user cache)" in out


def test_download_failure_is_one_line(no_places, mirror_factory, tmp_path, monkeypatch, capsys):
    m = mirror_factory()
    monkeypatch.setenv(MIRRORS_ENV, m.base)
    dest = tmp_path / "dest"
    rc, out, err = run(capsys, "download", "--data-dir", str(dest))
    assert rc == 3 and out == ""
    assert f"{m.base}train-images-idx3-ubyte.gz: HTTP 404" in one_line_error(err)
    assert list(dest.iterdir()) == []


# --- show -----------------------------------------------------------------------------------


def test_show_writes_a_labelled_grid(tmp_path: Path, capsys) -> None:
    out_file = tmp_path / "grid" / "samples.png"
    rc, out, err = run(capsys, "show", "--out", str(out_file), "--split", "test", "--n", "5")
    assert rc == 0, err
    assert out.startswith(f"wrote {out_file}")
    with Image.open(out_file) as im:
        assert im.format == "PNG" and im.width > im.height > 100
    assert [p.name for p in out_file.parent.iterdir()] == ["samples.png"]  # no temp left
    again = tmp_path / "again.png"
    run(capsys, "show", "--out", str(again), "--split", "test", "--n", "5")
    other = tmp_path / "other.png"
    run(capsys, "show", "--out", str(other), "--split", "test", "--n", "5", "--seed", "1")
    assert again.read_bytes() == out_file.read_bytes() != other.read_bytes()


def test_grid_titles_are_the_class_names() -> None:
    ds = load_fashion_mnist("test", download=False)
    fig = sample_grid(ds, 12, seed=3, ncols=5)
    axes = fig.axes
    assert len(axes) == 15  # 3 rows of 5, the last three cells empty
    idx = sample_indices(12, len(ds), 3)
    assert [ax.get_title() for ax in axes[:12]] == [ds.classes[i] for i in ds.labels[idx]]
    assert all(ax.get_title() == "" and not ax.images for ax in axes[12:])
    shown = axes[0].images[0].get_array()
    assert np.array_equal(np.asarray(shown), ds.images[idx[0]].numpy())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "{tmp}/x.bmpx"], "unknown image format '.bmpx'"),
        (["--out", "{tmp}/x"], "unknown image format '(no suffix)'"),
        (["--out", "{tmp}/x.png", "--n", "0"], "number of samples must be in 1..400"),
        (["--out", "{tmp}/blocker/x.png"], "cannot write"),
    ],
)
def test_show_bad_arguments(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    (tmp_path / "blocker").write_text("a file where a directory is needed")
    rc, out, err = run(capsys, "show", *[a.format(tmp=tmp_path) for a in argv])
    assert rc == 2 and out == ""
    assert message in one_line_error(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_missing_required_option_is_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["data", "show"])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


# --- unreadable files and directories -------------------------------------------------------


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block without root's right to read anything (tests run as root in CI)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory anyone may enter (pytest's tmp_path sits under a root-only directory)."""
    d = Path(tempfile.mkdtemp(prefix="softmax-regression-test-"))
    d.chmod(0o755)
    yield d
    for p in sorted(d.rglob("*"), reverse=True):
        p.chmod(0o700)
    subprocess.run(["rm", "-rf", str(d)], check=True)


def test_unreadable_directory_and_file(open_dir: Path, make_dataset, isolated_cache, capsys):
    locked = open_dir / "locked"
    make_dataset(locked)
    data = open_dir / "data"
    ds = make_dataset(data)
    ds.files["t10k-labels-idx1-ubyte"].chmod(0o000)
    locked.chmod(0o000)
    run(capsys, "where", "--data-dir", str(data))  # imports done while privileged
    with unprivileged():
        rc_dir, _, err_dir = run(capsys, "where", "--data-dir", str(locked))
        rc_file, out_file, err_file = run(capsys, "verify", "--data-dir", str(data))
    assert rc_dir == 3
    assert f"{locked}: data directory is not readable (permission denied)" in one_line_error(
        err_dir
    )
    assert rc_file == 3
    assert f"FAIL  {ds.files['t10k-labels-idx1-ubyte']}: permission denied" in out_file
    one_line_error(err_file)


# --- real processes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "rc"),
    [(["data", "where"], 0), (["data", "where", "--data-dir", "/nonexistent/fmnist"], 3)],
)
def test_subprocess(argv: list[str], rc: int) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "softmax_regression", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == rc, r.stderr
    if rc:
        assert r.stdout == ""
        assert r.stderr == (
            "softmax-regression: error: /nonexistent/fmnist: data directory does not exist "
            "(given by data_dir / --data-dir)\n"
        )
    else:
        assert r.stdout.startswith("Fashion-MNIST in ")
