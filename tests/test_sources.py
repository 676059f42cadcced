"""Discovery order: explicit dir > $SOFTMAX_REGRESSION_DATA > ../data/FashionMNIST/raw > user
cache > Debian dir (> download, in test_download.py), on temporary directories."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from softmax_regression.data import sources
from softmax_regression.data.sources import ENV_VAR, STEMS, locate
from softmax_regression.errors import DataNotFoundError


@dataclass
class Places:
    explicit: Path
    env: Path
    torchvision: Path  # <root>/FashionMNIST/raw
    cache: Path
    debian: Path


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> Places:
    """Every place discovery looks in, redirected under tmp_path and empty."""
    root = tmp_path / "book" / "data"
    monkeypatch.setattr(sources, "torchvision_roots", lambda: [root])
    monkeypatch.setattr(sources, "DEBIAN_DIR", tmp_path / "debian")
    return Places(
        explicit=tmp_path / "explicit",
        env=tmp_path / "env",
        torchvision=root / "FashionMNIST" / "raw",
        cache=isolated_cache,
        debian=tmp_path / "debian",
    )


def fill(directory: Path, *, gz: bool = True, stems: tuple[str, ...] = STEMS) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        (directory / (stem + ".gz" if gz else stem)).write_bytes(b"placeholder")


def test_order_of_the_automatic_places(places: Places) -> None:
    with pytest.raises(DataNotFoundError):
        locate()
    expected = [
        (places.debian, "Debian package dataset-fashion-mnist"),
        (places.cache, "user cache"),
        (places.torchvision, "torchvision layout"),
    ]
    for directory, how in expected:
        fill(directory)
        found = locate()
        assert (found.directory, found.how) == (directory, how)
        assert found.files == {s: directory / (s + ".gz") for s in STEMS}


def test_env_var_beats_automatic_places_and_explicit_beats_env(
    places: Places, monkeypatch: pytest.MonkeyPatch
) -> None:
    for d in (places.torchvision, places.cache, places.debian, places.env, places.explicit):
        fill(d)
    monkeypatch.setenv(ENV_VAR, str(places.env))
    assert locate().directory == places.env
    assert locate(places.explicit).directory == places.explicit


@pytest.mark.parametrize("use_env", [False, True])
def test_named_directory_lacking_files_is_an_error_not_a_fallback(
    places: Places, monkeypatch: pytest.MonkeyPatch, use_env: bool
) -> None:
    fill(places.cache)  # a good copy elsewhere must not be used instead
    fill(places.explicit, stems=STEMS[:3])
    if use_env:
        monkeypatch.setenv(ENV_VAR, str(places.explicit))
    with pytest.raises(DataNotFoundError) as info:
        locate(None if use_env else places.explicit)
    message = str(info.value)
    assert message.startswith(f"{places.explicit}: missing t10k-labels-idx1-ubyte (.gz or raw)")
    assert ("$SOFTMAX_REGRESSION_DATA" if use_env else "--data-dir") in message
    assert "nothing is downloaded" in message


def test_named_directory_that_does_not_exist(places: Places) -> None:
    with pytest.raises(DataNotFoundError, match="data directory does not exist"):
        locate(places.explicit)


def test_named_path_that_is_a_file(places: Places) -> None:
    places.explicit.write_text("x")
    with pytest.raises(DataNotFoundError, match=f"^{places.explicit}: not a directory"):
        locate(places.explicit)


def test_named_directory_may_use_the_torchvision_layout(places: Places) -> None:
    inner = places.explicit / "FashionMNIST" / "raw"
    fill(inner, gz=False)
    found = locate(places.explicit)
    assert found.directory == inner
    assert "torchvision layout" in found.how


def test_raw_file_wins_over_gz_and_mixed_sets_are_complete(places: Places) -> None:
    fill(places.explicit, gz=True)
    fill(places.explicit, gz=False, stems=STEMS[:1])
    found = locate(places.explicit)
    assert found.files[STEMS[0]] == places.explicit / STEMS[0]
    assert all(found.files[s] == places.explicit / (s + ".gz") for s in STEMS[1:])


def test_incomplete_automatic_place_is_skipped(places: Places) -> None:
    fill(places.torchvision, stems=STEMS[1:])
    fill(places.debian)
    assert locate().directory == places.debian


def test_not_found_lists_every_place_and_the_three_fixes(places: Places) -> None:
    with pytest.raises(DataNotFoundError) as info:
        locate()
    message = str(info.value)
    assert "\n" not in message
    for d in (places.torchvision, places.cache, places.debian):
        assert str(d) in message
    assert "--data-dir" in message
    assert "apt install dataset-fashion-mnist" in message
    assert "softmax-regression data download" in message


def test_book_root_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "chapter" / "notebooks"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert (tmp_path / "chapter" / "data").resolve() in sources.torchvision_roots()


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sources.cache_dir() == tmp_path / "softmax-regression" / "fashion-mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sources.cache_dir() == tmp_path / "home" / ".cache" / "softmax-regression" / (
        "fashion-mnist"
    )


def test_real_dataset_is_found_automatically() -> None:
    # CI installs Debian's package; a developer may have it in the cache or ../data instead.
    found = locate()
    assert set(found.files) == set(STEMS)
    assert all(os.path.getsize(p) > 0 for p in found.files.values())
