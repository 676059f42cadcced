"""Downloading against loopback mirrors: fallback, verification, nothing half-written."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from softmax_regression.data import download, sources
from softmax_regression.data.download import download_dataset, ensure_dataset
from softmax_regression.data.sources import STEMS
from softmax_regression.errors import ConfigError, DataNotFoundError, DownloadError


@pytest.fixture
def upstream(make_dataset: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Small gz files, made the published ones; ``payloads[stem]`` is what a good mirror serves."""
    ds = make_dataset(tmp_path / "upstream", compress=True)
    ds.publish(monkeypatch)
    ds.payloads = {stem: ds.files[stem].read_bytes() for stem in STEMS}
    return ds


def serve(mirror, payloads: dict[str, bytes | int | Callable]) -> None:
    for stem, body in payloads.items():
        mirror.routes[f"/data/{stem}.gz"] = body


@pytest.fixture
def no_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> Path:
    """No dataset anywhere discovery looks; returns the (empty) user cache."""
    monkeypatch.setattr(sources, "torchvision_roots", lambda: [tmp_path / "nowhere"])
    monkeypatch.setattr(sources, "DEBIAN_DIR", tmp_path / "no-debian")
    return isolated_cache


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_downloads_and_verifies_every_file(upstream, mirror_factory, tmp_path: Path) -> None:
    m = mirror_factory()
    serve(m, upstream.payloads)
    dest = tmp_path / "dest"
    found = download_dataset(dest, mirrors=[m.base])
    assert listing(dest) == sorted(s + ".gz" for s in STEMS)  # and no temporary file
    for stem in STEMS:
        assert found.files[stem].read_bytes() == upstream.payloads[stem]
    assert found.how == "downloaded 4 file(s)"
    assert sorted(m.requests) == sorted(f"/data/{s}.gz" for s in STEMS)


def test_verified_files_are_kept_and_bad_ones_replaced(
    upstream, mirror_factory, tmp_path: Path
) -> None:
    m = mirror_factory()
    serve(m, upstream.payloads)
    dest = tmp_path / "dest"
    download_dataset(dest, mirrors=[m.base])
    m.requests.clear()
    bad = dest / (STEMS[1] + ".gz")
    bad.write_bytes(gzip.compress(b"not the labels"))
    found = download_dataset(dest, mirrors=[m.base])
    assert m.requests == [f"/data/{STEMS[1]}.gz"]
    assert bad.read_bytes() == upstream.payloads[STEMS[1]]
    assert found.how == "downloaded 1 file(s), 3 already there and verified"
    download_dataset(dest, mirrors=[m.base], force=True)
    assert len(m.requests) == 1 + 4


def test_falls_back_to_the_next_mirror(upstream, mirror_factory, tmp_path: Path) -> None:
    first, second = mirror_factory(), mirror_factory()
    serve(second, upstream.payloads)  # the first answers 404 to everything
    found = download_dataset(tmp_path / "dest", mirrors=[first.base, second.base])
    assert len(first.requests) == len(second.requests) == 4
    assert all(found.files[s].read_bytes() == upstream.payloads[s] for s in STEMS)


@pytest.mark.parametrize(
    "corruption",
    ["garbage", "other data", "truncated", "short transfer"],
)
def test_corrupt_payload_is_rejected_and_the_next_mirror_used(
    upstream, mirror_factory, tmp_path: Path, corruption: str
) -> None:
    stem = STEMS[0]
    good = upstream.payloads[stem]

    def short_transfer(handler) -> None:  # announces every byte, sends half, hangs up
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(good)))
        handler.end_headers()
        handler.wfile.write(good[: len(good) // 2])

    body = {
        "garbage": b"<html>Service Unavailable</html>",
        "other data": upstream.payloads[STEMS[2]],  # a valid IDX file, the wrong one
        "truncated": good[:-100],  # complete HTTP response of a cut file
        "short transfer": short_transfer,
    }[corruption]
    first, second = mirror_factory(), mirror_factory()
    serve(first, {**upstream.payloads, stem: body})
    serve(second, upstream.payloads)
    dest = tmp_path / "dest"
    found = download_dataset(dest, mirrors=[first.base, second.base])
    assert found.files[stem].read_bytes() == good
    assert second.requests == [f"/data/{stem}.gz"]
    assert listing(dest) == sorted(s + ".gz" for s in STEMS)


def test_every_mirror_bad_leaves_nothing_behind(upstream, mirror_factory, tmp_path: Path) -> None:
    first, second = mirror_factory(), mirror_factory()
    serve(first, {STEMS[0]: b"junk"})
    serve(second, {STEMS[0]: 503})
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError) as info:
        download_dataset(dest, mirrors=[first.base, second.base])
    message = str(info.value)
    assert f"{first.base}{STEMS[0]}.gz: corrupt payload (not an IDX file" in message
    assert f"{second.base}{STEMS[0]}.gz: HTTP 503" in message
    assert "\n" not in message
    assert listing(dest) == []


def test_interrupted_download_leaves_nothing_behind(
    upstream, mirror_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = mirror_factory()
    serve(m, upstream.payloads)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "verify_file", interrupt)
    dest = tmp_path / "dest"
    with pytest.raises(KeyboardInterrupt):
        download_dataset(dest, mirrors=[m.base])
    assert listing(dest) == []


def test_stale_partial_files_are_cleared(upstream, mirror_factory, tmp_path: Path) -> None:
    m = mirror_factory()
    serve(m, upstream.payloads)
    dest = tmp_path / "dest"
    dest.mkdir()
    stale, fresh = dest / ".a.stale.part", dest / ".b.fresh.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    download_dataset(dest, mirrors=[m.base])
    assert not stale.exists()
    assert fresh.exists()  # maybe another process's download in progress


def test_upstream_gz_md5_is_accepted(
    upstream, mirror_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = mirror_factory()
    serve(m, upstream.payloads)
    for stem in STEMS:  # decompressed digests that cannot match; the gz MD5 must settle it
        monkeypatch.setitem(sources.SHA256, stem, "0" * 64)
        md5 = hashlib.md5(upstream.payloads[stem], usedforsecurity=False).hexdigest()
        monkeypatch.setitem(sources.UPSTREAM_GZ_MD5, stem, md5)
    found = download_dataset(tmp_path / "dest", mirrors=[m.base])
    assert set(found.files) == set(STEMS)


def test_unreachable_and_slow_mirrors(upstream, mirror_factory, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/data/"
    # The slow mirror answers nothing until the test is over (or a minute has passed): only
    # a client that honours its timeout can report "timed out"; one that waited would see
    # the connection closed without an answer instead.
    release = threading.Event()
    slow = mirror_factory()
    serve(slow, {STEMS[0]: lambda handler: release.wait(60)})
    try:
        with pytest.raises(DownloadError) as info:
            download_dataset(tmp_path / "dest", mirrors=[dead, slow.base], timeout=0.3)
    finally:
        release.set()
    assert f"{dead}{STEMS[0]}.gz: Connection refused" in str(info.value)
    assert f"{slow.base}{STEMS[0]}.gz: timed out" in str(info.value)
    assert slow.requests == [f"/data/{STEMS[0]}.gz"]  # asked once, not retried


def test_no_progress_bar_when_not_a_terminal(
    upstream, mirror_factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = mirror_factory()
    serve(m, upstream.payloads)
    download_dataset(tmp_path / "dest", mirrors=[m.base])
    out, err = capsys.readouterr()
    assert out == err == ""
    download_dataset(tmp_path / "again", mirrors=[m.base], progress=True)
    err = capsys.readouterr().err
    assert f"{STEMS[0]}: " in err and "B/s" in err


# --- discovery's last step ------------------------------------------------------------------


def test_ensure_dataset_downloads_into_the_cache_when_nothing_is_found(
    upstream, mirror_factory, no_places: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    m = mirror_factory()
    serve(m, upstream.payloads)
    monkeypatch.setenv(download.MIRRORS_ENV, f"{mirror_factory().base}, {m.base}")
    found = ensure_dataset()
    assert found.directory == no_places
    assert listing(no_places) == sorted(s + ".gz" for s in STEMS)
    assert f"downloading into {no_places}" in capsys.readouterr().err
    m.requests.clear()
    again = ensure_dataset()  # now discovery finds the cache; no request
    assert (again.directory, again.how) == (no_places, "user cache")
    assert m.requests == []


def test_ensure_dataset_reports_everything_when_all_fails(
    upstream, mirror_factory, no_places: Path, tmp_path: Path
) -> None:
    m = mirror_factory()  # 404 for everything
    with pytest.raises(DataNotFoundError) as info:
        ensure_dataset(mirrors=[m.base])
    message = str(info.value)
    assert "\n" not in message
    for place in (tmp_path / "nowhere", no_places, tmp_path / "no-debian"):
        assert str(place) in message
    assert f"{m.base}{STEMS[0]}.gz: HTTP 404" in message
    for fix in ("--data-dir", "apt install dataset-fashion-mnist", "network"):
        assert fix in message
    assert listing(no_places) == []


@pytest.mark.parametrize("how", ["data_dir", "env", "download=False"])
def test_no_download_for_a_named_directory_or_when_disabled(
    upstream, mirror_factory, no_places: Path, tmp_path: Path, monkeypatch, how: str
) -> None:
    m = mirror_factory()
    serve(m, upstream.payloads)
    named = tmp_path / "mine"
    named.mkdir()
    with pytest.raises(DataNotFoundError) as info:
        if how == "data_dir":
            ensure_dataset(named, mirrors=[m.base])
        elif how == "env":
            monkeypatch.setenv(sources.ENV_VAR, str(named))
            ensure_dataset(mirrors=[m.base])
        else:
            ensure_dataset(download=False, mirrors=[m.base])
    assert m.requests == []
    if how != "download=False":
        assert str(info.value).startswith(f"{named}: missing")


def test_mirror_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(download.MIRRORS_ENV, raising=False)
    assert download.configured_mirrors() == download.MIRRORS
    assert download.MIRRORS[0].startswith("http://fashion-mnist.s3-website")
    assert "tf-keras-datasets" in download.MIRRORS[1]
    monkeypatch.setenv(download.MIRRORS_ENV, " http://a/x/ ,https://b/y\n")
    assert download.configured_mirrors() == ("http://a/x/", "https://b/y")
    monkeypatch.setenv(download.MIRRORS_ENV, "ftp://a/x/")
    with pytest.raises(ConfigError, match="not an http"):
        download.configured_mirrors()


def test_unwritable_destination_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DownloadError, match="cannot create the directory"):
        download_dataset(blocker / "sub", mirrors=["http://127.0.0.1:9/"])


def test_load_fashion_mnist_downloads_as_a_last_resort(
    upstream, mirror_factory, no_places: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from softmax_regression import load_fashion_mnist

    m = mirror_factory()
    serve(m, upstream.payloads)
    monkeypatch.setenv(download.MIRRORS_ENV, m.base)
    with pytest.raises(DataNotFoundError):
        load_fashion_mnist("test", download=False)
    assert m.requests == []
    ds = load_fashion_mnist("test")
    assert ds.source.directory == no_places
    assert ds.labels.tolist() == upstream.arrays["t10k-labels-idx1-ubyte"].tolist()
