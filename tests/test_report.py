"""The report page: what it contains, that it is safe and self-contained, and, in a real
headless Chromium, that it works: the confusion gallery, drawing, the file picker, and "Try it"
computing the same 28x28 input and probabilities as ``softmax-regression predict``; and the
same for models of other data: features (the strongest-features table), colour images of
another size, 60 classes (a bounded page, a canvas matrix), standardised inputs.

The browser is Debian's ``chromium`` driven by Playwright (``make test`` installs it as root).
Without it the browser tests skip on a developer's machine and fail under CI=true.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from contextlib import redirect_stdout
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from softmax_regression import TrainConfig, load_fashion_mnist, load_model, save_model, train_run
from softmax_regression.best_linear import BestLinearConfig
from softmax_regression.cli import main
from softmax_regression.data import Dataset
from softmax_regression.errors import NonFiniteLossError, ReportError
from softmax_regression.predict import area_resize, load_image, probabilities
from softmax_regression.report import REPORT_HTML, collect, write_index, write_report
from softmax_regression.runs.best_linear import best_linear_run

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EVIL = "<img src=x onerror=alert(1)>"
SHOTS = (
    Path(os.environ.get("REPORT_SCREENSHOTS", "")) if os.environ.get("REPORT_SCREENSHOTS") else None
)


# --------------------------------------------------------------------------- runs, made once


@pytest.fixture(scope="session")
def splits():
    return load_fashion_mnist("train"), load_fashion_mnist("test")


@pytest.fixture(scope="session")
def runs(tmp_path_factory, splits) -> Path:
    """A directory of runs of every kind: book, failed, best-linear, seeds, sweep, hostile."""
    root = tmp_path_factory.mktemp("runs")
    train, test = splits
    train_run(TrainConfig(), out=root / "book", train=train, test=test, plots=False)
    with pytest.raises(NonFiniteLossError):
        bad = TrainConfig(loss="naive", normalize=False, epochs=2)
        train_run(bad, out=root / "failed", train=train, test=test, plots=False)
    quick = BestLinearConfig(weight_decays=(1e-3, 5e-4), select_iters=4, refit_iters=4)
    best_linear_run(quick, out=root / "best", train=train, test=test, plots=False)
    with redirect_stdout(io.StringIO()):
        common = ["--epochs", "2", "--quiet", "--no-plots"]
        assert main(["train", "--seeds", "0,1", "--out", str(root / "seeds"), *common]) == 0
        sweep = ["--lr", "0.1,0.3", "--epochs", "2", "--seeds", "1", "--out", str(root / "sweep")]
        assert main(["sweep", *sweep]) == 0
    # Both commands wrote their pages at the end (and the seeds' own pages).
    for page in ("seeds", "seeds/seed-0", "seeds/seed-1", "sweep"):
        assert (root / page / REPORT_HTML).exists(), page
    # Hostile strings: a directory name and a class name that are HTML.
    evil = root / EVIL
    shutil.copytree(root / "book", evil)
    saved = load_model(evil)
    save_model(evil, saved.model, classes=(*saved.classes[:9], EVIL))
    return root


@pytest.fixture(scope="session")
def pages(runs, splits) -> Path:
    _, test = splits
    for name in ("book", "failed", "best", "seeds", "sweep", EVIL):
        write_report(runs / name, test=test)
    write_index(runs, test=test)
    return runs


def page_data(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script id="run-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


# --------------------------------------------------------------------------- without a browser


def test_book_page_is_one_small_offline_file(pages) -> None:
    page = pages / "book" / REPORT_HTML
    text = page.read_text(encoding="utf-8")
    assert page.stat().st_size < 2_000_000
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1)
    assert "default-src &#x27;none&#x27;" in csp and "unsafe-eval" not in csp
    assert "connect-src" not in csp  # nothing overrides default-src 'none' for the network
    # No external resource of any kind: every src/href is inline data or a fragment.
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', text)
    assert "<script src" not in text and "@import" not in text and "url(" not in text
    data = page_data(page)
    assert data["kind"] == "run" and data["problems"] == []
    ev = data["evaluation"]
    assert ev["total"] == 10_000 and abs(ev["accuracy"] - data["history"][-1]["test_acc"]) < 1e-12
    assert sum(map(sum, ev["confusion"])) == 10_000
    gallery = data["gallery"]
    n = len(gallery["items"])
    assert len(base64.b64decode(gallery["images"])) == n * 784
    for key, idx in gallery["cells"].items():
        i, j = map(int, key.split(","))
        assert 0 < len(idx) <= gallery["per_cell"] and len(idx) == min(ev["confusion"][i][j], 8)
        assert all(
            gallery["items"][k]["label"] == i and gallery["items"][k]["pred"] == j for k in idx
        )
    losses = [gallery["items"][k]["loss"] for k in gallery["top_losses"]]
    assert losses == sorted(losses, reverse=True) and len(losses) == 16


def test_gallery_images_and_probabilities_are_the_test_images_and_the_model(pages, splits) -> None:
    _, test = splits
    data = page_data(pages / "book" / REPORT_HTML)
    g = data["gallery"]
    imgs = np.frombuffer(base64.b64decode(g["images"]), np.uint8).reshape(-1, 28, 28)
    saved = load_model(pages / "book")
    sel = [it["index"] for it in g["items"][:50]]
    probs = probabilities(saved, test.images[sel])
    for k, it in enumerate(g["items"][:50]):
        assert np.array_equal(imgs[k], test.images[it["index"]].numpy())
        assert it["label"] == int(test.labels[it["index"]])
        top_c, top_p = it["top"][0]
        assert top_c == it["pred"] == int(probs[k].argmax())
        assert abs(top_p - float(probs[k, top_c])) < 1e-5


def test_strings_from_the_run_are_never_markup(pages) -> None:
    text = (pages / EVIL / REPORT_HTML).read_text(encoding="utf-8")
    assert EVIL not in text and "<img" not in text
    data = page_data(pages / EVIL / REPORT_HTML)
    assert data["name"] == EVIL and data["model"]["classes"][-1] == EVIL
    assert EVIL not in (pages / REPORT_HTML).read_text(encoding="utf-8")


def test_failed_partial_and_broken_runs_get_pages_that_say_what_is_missing(pages, tmp_path) -> None:
    failed = page_data(pages / "failed" / REPORT_HTML)
    assert failed["status"]["status"] == "failed" and failed["model"] is None
    assert any("no model.safetensors (the run failed" in p for p in failed["problems"])
    assert any(p.startswith("no history.json") for p in failed["problems"])  # failed in epoch 1

    partial = tmp_path / "partial"
    shutil.copytree(pages / "book", partial)
    (partial / "history.json").unlink()
    (partial / "config.json").write_text("{not json", encoding="utf-8")
    (partial / "model.safetensors").write_bytes(b"garbage")
    data = page_data(write_report(partial))
    text = " ".join(data["problems"])
    assert "no history.json" in text and "config.json is unreadable" in text
    assert "not a valid safetensors file" in text and data["model"] is None

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="not a run directory"):
        write_report(empty)
    assert list(empty.iterdir()) == []  # nothing written where there is nothing to report

    with pytest.raises(ReportError, match="no such directory"):
        write_report(tmp_path / "nowhere")


def test_without_the_test_split_the_page_says_so(pages, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SOFTMAX_REGRESSION_DATA", str(tmp_path))
    run = tmp_path / "run"
    shutil.copytree(pages / "book", run)
    data = page_data(write_report(run, data_dir=str(tmp_path)))
    assert data["evaluation"] is None and data["gallery"] is None
    assert "test split could not be loaded" in data["data_problem"]
    assert data["model"] is not None  # Try it still works


def test_cli_report_and_its_errors(pages, tmp_path, capsys) -> None:
    out = tmp_path / "page.html"
    assert main(["report", str(pages / "best"), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = page_data(out)
    assert data["recipe"] == "best-linear" and len(data["candidates"]) == 2
    assert data["history"] is None and data["problems"] == []
    assert main(["report", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such directory" in err and "Traceback" not in err
    assert main(["report", str(out)]) == 1
    assert "not a directory" in capsys.readouterr().err


def test_seeds_sweep_and_index_pages(pages) -> None:
    seeds = page_data(pages / "seeds" / REPORT_HTML)
    assert [r["name"] for r in seeds["rows"]] == ["seed-0", "seed-1"]
    assert seeds["summary"]["test_acc"]["n"] == 2
    assert all((pages / "seeds" / r["href"]).exists() for r in seeds["rows"])
    sweep = page_data(pages / "sweep" / REPORT_HTML)
    assert [r["settings"]["lr"] for r in sweep["rows"]] == [0.1, 0.3]
    assert all(len(r["curves"]["test_acc"]) == 2 for r in sweep["rows"])
    index = page_data(pages / REPORT_HTML)
    names = {r["name"] for r in index["rows"]}
    assert {"book", "failed", "best", "seeds", "sweep", EVIL} <= names


def test_train_and_sweep_write_their_page_unless_told_not_to(tmp_path, capsys) -> None:
    one = ["train", "--epochs", "1", "--quiet", "--no-plots", "--out"]
    assert main([*one, str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(", report.html")
    assert page_data(tmp_path / "a" / REPORT_HTML)["evaluation"]["total"] == 10_000
    assert main([*one, str(tmp_path / "b"), "--no-report"]) == 0
    assert not (tmp_path / "b" / REPORT_HTML).exists()
    assert "report.html" not in capsys.readouterr().out
    sweep = ["sweep", "--epochs", "1", "--seeds", "1", "--quiet", "--no-report"]
    assert main([*sweep, "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "sweep.json").exists() and not (tmp_path / "s" / REPORT_HTML).exists()


def test_area_resize_is_exact_area_averaging() -> None:
    rng = np.random.default_rng(0)
    for h, w, H, W in [
        (7, 5, 3, 2),
        (3, 2, 28, 19),
        (1, 1, 28, 28),
        (56, 5, 28, 3),
        (31, 17, 9, 28),
    ]:
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        got = area_resize(a, W, H)
        for Y in range(H):
            for X in range(W):
                total = Fraction(0)
                for j in range(h):
                    oy = max(
                        0,
                        min(Fraction(Y + 1, H), Fraction(j + 1, h))
                        - max(Fraction(Y, H), Fraction(j, h)),
                    )
                    for i in range(w):
                        ox = max(
                            0,
                            min(Fraction(X + 1, W), Fraction(i + 1, w))
                            - max(Fraction(X, W), Fraction(i, w)),
                        )
                        total += ox * oy * int(a[j, i])
                mean = total * H * W  # the covered area is 1/(H*W)
                assert int(got[Y, X]) == int(mean + Fraction(1, 2)), (h, w, H, W, Y, X)
    big = rng.integers(0, 256, (2000, 3000), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(big).resize((28, 19), Image.Resampling.BOX), np.int16)
    assert np.abs(area_resize(big, 28, 19).astype(np.int16) - pil).max() <= 1  # the same filter


# --------------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: `make test` installs chromium (as root)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


class Watched:
    """A page whose console errors, page errors, dialogs and network requests are recorded."""

    def __init__(self, browser, url: str, **context) -> None:
        self.url = url
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("dialog", lambda d: (self.errors.append(f"dialog: {d.message}"), d.dismiss()))
        self.page.on("request", lambda r: r.url != url and self.requests.append(r.url))
        self.page.goto(url)
        self.page.wait_for_selector("html[data-ready]", state="attached", timeout=10_000)

    def check(self) -> None:
        assert self.errors == [], self.errors
        assert self.requests == [], self.requests
        self.context.close()


@pytest.fixture
def open_page(browser):
    opened: list[Watched] = []

    def open_(path: Path, **context) -> Watched:
        w = Watched(browser, path.resolve().as_uri(), **context)
        opened.append(w)
        return w

    yield open_
    for w in opened:
        w.check()


def predict_json(model_dir: Path, files: list[Path]) -> list[dict]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["predict", str(model_dir), *map(str, files), "--top", "10", "--json"]) == 0
    return json.loads(buf.getvalue())["predictions"]


def classify_in_page(page, png: bytes) -> dict:
    b64 = base64.b64encode(png).decode()
    return page.evaluate("(b) => window.softmaxReport.classifyBase64(b)", b64)


def assert_same(result: dict, path: Path, predicted: dict, classes: list[str]) -> None:
    want = load_image(path).numpy().reshape(-1).astype(int)
    got = np.array(result["pixels"], int)
    assert np.abs(got - want).max() <= 1, f"{path.name}: pixels differ"
    probs = {t["class"]: t["probability"] for t in predicted["top"]}
    page_probs = dict(zip(classes, result["probabilities"], strict=True))
    assert max(abs(page_probs[c] - probs[c]) for c in classes) < 1e-4, path.name
    top_page = max(page_probs, key=page_probs.get)
    assert top_page == predicted["top"][0]["class"], path.name


def made_images(rng: np.random.Generator) -> dict[str, Image.Image]:
    """Photos and drawings of many kinds: light and dark pages, transparency, odd sizes."""
    yy, xx = np.mgrid[0:400, 0:300]
    blob = ((yy - 210) / 150.0) ** 2 + ((xx - 140) / 90.0) ** 2 < 1
    photo = np.full((400, 300, 3), (245, 240, 235), np.uint8)
    photo[blob] = (rng.integers(20, 90, (int(blob.sum()), 3))).astype(np.uint8)
    big = np.full((2000, 3000, 3), 250, np.uint8)
    big[300:1700, 900:2100] = (40, 60, 90)
    big[800:1200, 1300:1700] = (200, 30, 30)
    dark = np.zeros((90, 61), np.uint8)
    dark[10:80, 15:50] = rng.integers(120, 255, (70, 35))
    cut = np.zeros((64, 64, 4), np.uint8)
    cut[8:56, 16:48] = (30, 30, 120, 255)
    la = np.zeros((50, 37, 2), np.uint8)
    la[5:45, 5:30] = (70, 255)
    noise = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
    light28 = np.full((28, 28), 255, np.uint8)
    light28[4:24, 8:20] = 30
    thin = np.full((56, 5), 255, np.uint8)  # 5 * 28 / 56 = 2.5: rounded half up to 3
    thin[3:53, 1:4] = 0
    pal = Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return {
        "photo-light.png": Image.fromarray(photo),
        "photo-3000x2000.png": Image.fromarray(big),
        "dark-background.png": Image.fromarray(dark),
        "cut-out-rgba.png": Image.fromarray(cut, "RGBA"),
        "grey-alpha.png": Image.fromarray(la, "LA"),
        "noise-odd-size.png": Image.fromarray(noise),
        "light-28x28.png": Image.fromarray(light28),
        "thin-5x56.png": Image.fromarray(thin),
        "palette.png": pal,
        "one-pixel.png": Image.new("RGB", (1, 1), (10, 200, 30)),
        "two-by-one.png": Image.new("L", (2, 1), 255),
    }


def test_try_it_matches_predict_on_test_images_and_made_images(
    open_page, pages, splits, tmp_path
) -> None:
    _, test = splits
    files = []
    for i in range(200):
        files.append(tmp_path / f"test-{i:03d}.png")
        Image.fromarray(test.images[i].numpy()).save(files[-1])
    for name, img in made_images(np.random.default_rng(0)).items():
        files.append(tmp_path / name)
        img.save(files[-1])
    for i in range(20):  # dataset images as dark-on-white product shots of other sizes
        page = np.full((40 + 3 * i, 90 - 2 * i), 255, np.uint8)
        big = np.asarray(Image.fromarray(255 - test.images[i].numpy()).resize((35, 35)))
        page[2 : 2 + 35, 5 : 5 + 35] = big
        files.append(tmp_path / f"shot-{i:02d}.png")
        Image.fromarray(page).save(files[-1])
    predicted = predict_json(pages / "book", files)
    classes = list(load_model(pages / "book").classes)
    w = open_page(pages / "book" / REPORT_HTML)
    for path, pred in zip(files, predicted, strict=True):
        assert_same(classify_in_page(w.page, path.read_bytes()), path, pred, classes)


def test_semi_transparent_pixels_within_one_level(open_page, pages, tmp_path) -> None:
    # The canvas blends premultiplied colours, Pillow unpremultiplied ones: allowed to differ
    # by one level (in Chromium they have agreed exactly). The 28x28 ones are not resampled,
    # so any difference in the blending would show as it is.
    yy, xx = np.mgrid[0:80, 0:60]
    soft = np.zeros((80, 60, 4), np.uint8)
    soft[..., :3] = (20, 40, 160)
    soft[..., 3] = np.clip(255 - np.hypot(yy - 40, xx - 30) * 6, 0, 255).astype(np.uint8)
    rng = np.random.default_rng(1)
    files = []
    for name, a in [
        ("soft-edges.png", soft),
        *((f"alpha-{k}.png", rng.integers(0, 256, (28, 28, 4), dtype=np.uint8)) for k in range(3)),
    ]:
        files.append(tmp_path / name)
        Image.fromarray(a, "RGBA").save(files[-1])
    w = open_page(pages / "book" / REPORT_HTML)
    classes = list(load_model(pages / "book").classes)
    for path, pred in zip(files, predict_json(pages / "book", files), strict=True):
        assert_same(classify_in_page(w.page, path.read_bytes()), path, pred, classes)


def test_file_picker_loads_an_image(open_page, pages, splits, tmp_path) -> None:
    _, test = splits
    path = tmp_path / "boot.png"
    Image.fromarray(255 - test.images[0].numpy()).resize((140, 140)).save(path)  # light page
    w = open_page(pages / "book" / REPORT_HTML)
    w.page.set_input_files("#file", str(path))
    w.page.wait_for_selector("#try-status[data-top]")
    last = w.page.evaluate("() => window.softmaxReport.last")
    want = predict_json(pages / "book", [path])[0]
    assert_same(last, path, want, list(load_model(pages / "book").classes))
    status = w.page.inner_text("#try-status")
    assert status.startswith("boot.png: " + want["top"][0]["class"])
    assert len(w.page.query_selector_all("#bars .bar")) == 10
    # Dropped on the drop zone: the same path as the picker.
    w.page.evaluate(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            const ev = new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true });
            document.getElementById("drop").dispatchEvent(ev);
        }""",
        base64.b64encode(path.read_bytes()).decode(),
    )
    w.page.wait_for_selector("#try-status:has-text('dropped.png: ')")
    assert w.page.evaluate("() => window.softmaxReport.last")["pixels"] == last["pixels"]
    text = tmp_path / "notes.txt"
    text.write_text("not an image", encoding="utf-8")
    w.page.set_input_files("#file", str(text))
    w.page.wait_for_selector("#try-status:has-text('cannot read it as an image')")
    assert w.page.evaluate("() => window.softmaxReport.last") is None


def test_drawing_strokes_classifies_the_drawing(open_page, pages, tmp_path) -> None:
    w = open_page(pages / "book" / REPORT_HTML)
    w.page.locator("#draw").scroll_into_view_if_needed()
    box = w.page.locator("#draw").bounding_box()
    mouse = w.page.mouse
    # A trouser: two legs joined at the waist.
    for stroke in [
        [(0.3, 0.1), (0.7, 0.1)],
        [(0.32, 0.1), (0.3, 0.9)],
        [(0.68, 0.1), (0.7, 0.9)],
        [(0.5, 0.12), (0.5, 0.4)],
    ]:
        (x0, y0), (x1, y1) = stroke
        mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        mouse.down()
        for t in np.linspace(0, 1, 12)[1:]:
            mouse.move(
                box["x"] + (x0 + t * (x1 - x0)) * box["width"],
                box["y"] + (y0 + t * (y1 - y0)) * box["height"],
            )
        mouse.up()
    w.page.wait_for_selector("#try-status[data-top]")
    last = w.page.evaluate("() => window.softmaxReport.last")
    assert np.array(last["pixels"]).max() > 200  # ink, inverted: light on dark
    png = w.page.evaluate("() => window.softmaxReport.drawingPNG()")
    path = tmp_path / "drawing.png"
    path.write_bytes(base64.b64decode(png.split(",", 1)[1]))
    assert_same(
        last,
        path,
        predict_json(pages / "book", [path])[0],
        list(load_model(pages / "book").classes),
    )
    assert w.page.inner_text("#try-status").startswith("drawing: ")
    w.page.click("#clear")
    assert w.page.evaluate("() => window.softmaxReport.last") is None


def test_clicking_a_confusion_cell_shows_its_images(open_page, pages) -> None:
    data = page_data(pages / "book" / REPORT_HTML)
    conf = data["evaluation"]["confusion"]
    classes = data["model"]["classes"]
    w = open_page(pages / "book" / REPORT_HTML)
    w.page.click("[data-cell='4,2']")  # true coat, predicted pullover
    tiles = w.page.query_selector_all("#cell-gallery .tile")
    assert len(tiles) == min(conf[4][2], 8) > 0
    for t in tiles:
        assert f"{classes[4]} → {classes[2]}" in t.inner_text()
    index = {it["index"]: it for it in data["gallery"]["items"]}
    for t in tiles:
        it = index[int(t.get_attribute("data-index"))]
        assert (it["label"], it["pred"]) == (4, 2)
    assert str(conf[4][2]) in w.page.inner_text("#cell-caption")
    w.page.click("[data-cell='1,1']")
    assert len(w.page.query_selector_all("#cell-gallery .tile")) == 8
    assert len(w.page.query_selector_all("#top-losses .tile")) == 16


def test_hostile_names_render_as_text(open_page, pages) -> None:
    w = open_page(pages / EVIL / REPORT_HTML)
    assert w.page.inner_text("h1") == EVIL
    assert EVIL in w.page.inner_text("#evaluation")
    assert w.page.query_selector_all("img") == []
    w2 = open_page(pages / REPORT_HTML)
    assert EVIL in w2.page.inner_text("#runs-table")
    assert w2.page.query_selector_all("img") == []


def test_csp_blocks_every_network_request(browser, pages) -> None:
    w = Watched(browser, (pages / "book" / REPORT_HTML).resolve().as_uri())
    violated = w.page.evaluate(
        """async () => {
            const seen = [];
            document.addEventListener(
                "securitypolicyviolation", (e) => seen.push(e.effectiveDirective));
            try { await fetch("http://127.0.0.1:9/x"); } catch (e) { /* refused */ }
            const img = new Image();
            await new Promise((r) => {
                img.onerror = r; img.onload = r; img.src = "http://127.0.0.1:9/i.png";
            });
            const s = document.createElement("script");
            s.textContent = "window.injected = 1";  // an inline script that is not the page's
            document.body.append(s);
            await new Promise((r) => setTimeout(r, 50));
            return [seen.sort(), window.injected === undefined];
        }"""
    )
    assert violated == [["connect-src", "img-src", "script-src-elem"], True]
    w.context.close()


def test_index_sorts_and_overlays(open_page, pages) -> None:
    w = open_page(pages / REPORT_HTML)
    header = w.page.locator("#runs-table th", has_text="test acc").first
    header.click()
    col = [c.inner_text() for c in w.page.query_selector_all("#runs-table thead th")].index(
        "test acc"
    )

    def column() -> list[float]:
        rows = w.page.query_selector_all("#runs-table tbody tr")
        vals = [r.query_selector_all("td")[col].inner_text() for r in rows]
        return [float(v) for v in vals if v != "–"]

    assert column() == sorted(column()) and len(column()) >= 3
    header.click()
    assert column() == sorted(column(), reverse=True)
    assert w.page.query_selector_all("#overlay path.series")
    for page in ("seeds", "sweep", "failed", "best"):
        open_page(pages / page / REPORT_HTML)


def test_hovering_a_curve_shows_its_values(open_page, pages) -> None:
    w = open_page(pages / "book" / REPORT_HTML)
    hist = page_data(pages / "book" / REPORT_HTML)["history"]
    chart = w.page.locator("#curves svg.chart").nth(1)  # accuracy
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    w.page.mouse.move(box["x"] + box["width"] * 0.999, box["y"] + box["height"] / 2)
    tip = w.page.locator("#curves .tip").nth(1).inner_text()
    assert (
        tip
        == f"epoch 10: train acc {hist[-1]['train_acc']:.4f}, test acc {hist[-1]['test_acc']:.4f}"
    )


@pytest.mark.parametrize(("scheme", "width"), [("light", 1100), ("dark", 390), ("light", 390)])
def test_screenshots_light_dark_and_phone_width(open_page, pages, tmp_path, scheme, width) -> None:
    w = open_page(
        pages / "book" / REPORT_HTML, color_scheme=scheme, viewport={"width": width, "height": 800}
    )
    w.page.click("[data-cell='6,0']")
    overflow = w.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0  # nothing wider than a phone's screen
    bg = w.page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert (bg == "rgb(255, 255, 255)") == (scheme == "light")
    out = (SHOTS or tmp_path) / f"report-{scheme}-{width}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    w.page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000


# --------------------------------------------------------------------------- any data
# Small models of other shapes, trained in a second or two: features (standardised), colour
# images of a size of their own (the "resize" rule, standardised), and 60 classes of grey
# images under the Fashion-MNIST rule at 20x24.

COLOURS = ("red square", "green bar", "blue ring", "grey")


def toy_images(n: int, shape: tuple[int, ...], k: int, seed: int, split: str) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    protos = torch.randint(0, 256, (k, *shape), generator=torch.Generator().manual_seed(99))
    labels = torch.arange(n) % k
    noise = torch.randint(-40, 41, (n, *shape), generator=g)
    x = (protos[labels] + noise).clamp(0, 255).to(torch.uint8)
    if k > 10:  # a third of the labels shuffled: confusions spread over many cells
        flip = torch.randperm(n, generator=g)[: n // 3]
        labels[flip] = torch.randint(0, k, (len(flip),), generator=g)
    rule = "resize" if shape[0] == 3 else "fashion-mnist"
    names = COLOURS if k == len(COLOURS) else tuple(f"class {i:02d}" for i in range(k))
    return Dataset(inputs=x, labels=labels, split=split, classes=names, image_rule=rule, name="toy")


def toy_features(n: int, seed: int, split: str) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 20, generator=torch.Generator().manual_seed(7)) * 2
    labels = torch.arange(n) % 3
    scales = torch.logspace(0, 2, 20)  # features of very different sizes
    x = (centres[labels] + torch.randn(n, 20, generator=g)) * scales
    classes = ("alpha", "beta", "gamma")
    return Dataset(
        inputs=x.float(), labels=labels, split=split, classes=classes, image_rule=None, name="t"
    )


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> dict[str, tuple[Path, Dataset]]:
    root = tmp_path_factory.mktemp("toy")
    sets = {
        "features": (toy_features(480, 0, "train"), toy_features(120, 1, "test")),
        "colour": (
            toy_images(480, (3, 12, 16), 4, 0, "train"),
            toy_images(120, (3, 12, 16), 4, 1, "test"),
        ),
        "many": (
            toy_images(1800, (1, 20, 24), 60, 0, "train"),
            toy_images(600, (1, 20, 24), 60, 1, "test"),
        ),
    }
    out = {}
    for name, (train, test) in sets.items():
        config = TrainConfig(epochs=2, standardize=name != "many")
        train_run(config, out=root / name, train=train, test=test, plots=False)
        write_report(root / name, test=test)
        out[name] = (root / name, test)
    return out


def test_a_feature_models_page_lists_its_strongest_features(toy) -> None:
    run, test = toy["features"]
    data = page_data(run / REPORT_HTML)
    model = data["model"]
    assert model["input_shape"] == [20] and model["image_rule"] is None
    assert model["weight"] is None  # nothing on the page needs them
    assert model["preprocessing"]["standardized"] is True
    w = load_model(run).model.weight.detach().numpy()
    feats = model["features"]
    assert feats["top"] == 5 and feats["names"] is None
    for k, row in enumerate(feats["classes"]):
        assert [i for i, _ in row["positive"]] == list(np.argsort(-w[k])[:5])
        assert [i for i, _ in row["negative"]] == list(np.argsort(w[k])[:5])
        assert all(abs(v - w[k, i]) < 1e-7 for i, v in row["positive"] + row["negative"])
    g = data["gallery"]
    assert g["images"] is None and g["shape"] is None
    assert (
        data["evaluation"]["total"] == len(test) == sum(map(sum, data["evaluation"]["confusion"]))
    )


def test_a_colour_models_page_embeds_its_images_weights_and_statistics(toy) -> None:
    run, test = toy["colour"]
    data = page_data(run / REPORT_HTML)
    model, g = data["model"], data["gallery"]
    assert model["input_shape"] == [3, 12, 16] and model["image_rule"] == "resize"
    saved = load_model(run)
    prep = saved.preprocessing
    for key in ("mean", "std"):
        got = np.frombuffer(base64.b64decode(model["preprocessing"][key]), "<f4")
        assert np.array_equal(got, getattr(prep, key).numpy())
    w = np.frombuffer(base64.b64decode(model["weight"]), "<f4").reshape(4, 3 * 12 * 16)
    assert np.array_equal(w, saved.model.weight.detach().numpy())
    assert g["shape"] == [len(g["items"]), 3, 12, 16]
    imgs = np.frombuffer(base64.b64decode(g["images"]), np.uint8).reshape(g["shape"])
    probs = probabilities(saved, test.images[[it["index"] for it in g["items"]]])
    for n, it in enumerate(g["items"]):
        assert np.array_equal(imgs[n], test.images[it["index"]].numpy())
        assert it["top"][0][0] == it["pred"] == int(probs[n].argmax())
        assert abs(it["top"][0][1] - float(probs[n, it["pred"]])) < 1e-5


def test_many_classes_keep_the_page_small(toy, tmp_path, monkeypatch) -> None:
    run, test = toy["many"]
    page = run / REPORT_HTML
    data = page_data(page)
    g, conf = data["gallery"], data["evaluation"]["confusion"]
    assert page.stat().st_size < 1_500_000
    assert len(conf) == 60 and sum(map(sum, conf)) == len(test)
    assert len(base64.b64decode(g["images"])) == len(g["items"]) * 20 * 24
    # Bounds this small page does not reach, as a 100-class page of larger images does: every
    # class's own cell first, then the largest confusions, fewer images per cell.
    monkeypatch.setattr(collect, "MAX_CELLS", 90)
    monkeypatch.setattr(collect, "IMAGE_BUDGET", 200 * 20 * 24)
    g = page_data(write_report(run, tmp_path / "small.html", test=test))["gallery"]
    assert len(g["items"]) <= 200 and len(g["top_losses"]) == 16
    assert len(g["cells"]) <= 90 < g["cells_nonempty"] and g["per_cell"] < 8
    assert all(f"{i},{i}" in g["cells"] for i in range(60) if conf[i][i])
    kept = [conf[i][j] for i, j in (map(int, c.split(",")) for c in g["cells"]) if i != j]
    dropped = [
        conf[i][j]
        for i in range(60)
        for j in range(60)
        if i != j and conf[i][j] and f"{i},{j}" not in g["cells"]
    ]
    assert kept and min(kept) >= max(dropped)
    for key, idx in g["cells"].items():
        i, j = map(int, key.split(","))
        assert len(idx) == min(conf[i][j], g["per_cell"])
    # Past DENSE_CONFUSION classes the matrix is its non-zero cells; the numbers are the same.
    monkeypatch.setattr(collect, "DENSE_CONFUSION", 50)
    sparse = page_data(write_report(run, tmp_path / "sparse.html", test=test))["evaluation"]
    assert sparse["confusion"] is None
    assert {(i, j): n for i, j, n in sparse["confusion_cells"]} == {
        (i, j): conf[i][j] for i in range(60) for j in range(60) if conf[i][j]
    }
    for key in ("per_class", "accuracy", "correct", "macro_f1"):
        assert sparse[key] == data["evaluation"][key], key


def test_a_run_trained_on_a_data_spec_gets_its_own_test_split(toy, tmp_path) -> None:
    from softmax_regression.data.spec import DataSpec

    _, colour = toy["colour"]
    train, test = toy_features(240, 2, "train"), toy_features(60, 3, "test")
    npz = tmp_path / "toy.npz"
    np.savez(
        npz,
        x_train=train.inputs.numpy(),
        y_train=train.labels.numpy(),
        x_test=test.inputs.numpy(),
        y_test=test.labels.numpy(),
        classes=np.array(train.classes),
    )
    runs = tmp_path / "runs"
    config = TrainConfig(epochs=1, standardize=True, data=DataSpec.parse(npz).to_dict())
    train_run(config, out=runs / "npz", train=None, test=None, plots=False)
    shutil.copytree(toy["colour"][0], runs / "colour", ignore=shutil.ignore_patterns("*.html"))
    # The split given fits the colour model only: the other run loads its own, by its spec.
    write_index(runs, test=colour)
    own = page_data(runs / "npz" / REPORT_HTML)
    assert own["data_problem"] is None and own["evaluation"]["total"] == 60
    assert page_data(runs / "colour" / REPORT_HTML)["evaluation"]["total"] == len(colour)
    # Given explicitly for one run, a split that does not fit is said so.
    wrong = page_data(write_report(runs / "npz", tmp_path / "wrong.html", test=colour))
    assert "the model takes (20,)" in wrong["data_problem"] and wrong["evaluation"] is None


def test_the_page_computes_the_inputs_of_a_standardised_model_exactly(open_page, toy) -> None:
    run, test = toy["colour"]
    saved = load_model(run)
    w = open_page(run / REPORT_HTML)
    img = test.images[0].numpy()  # (3, 12, 16)
    rgba = np.concatenate([img.transpose(1, 2, 0), np.full((12, 16, 1), 255, np.uint8)], 2)
    got = w.page.evaluate(
        "([a, w, h]) => window.softmaxReport.classifyRGBA(a, w, h)", [rgba.ravel().tolist(), 16, 12]
    )
    assert got["pixels"] == img.ravel().tolist()
    x = np.array(list(got["x"].values()) if isinstance(got["x"], dict) else got["x"], np.float64)
    want = saved.preprocessing(torch.from_numpy(img.reshape(1, -1)))[0].numpy()
    assert np.array_equal(x.astype(np.float32), want) and np.array_equal(x, want.astype(np.float64))
    probs = probabilities(saved, test.images[:1])[0].numpy()
    assert np.abs(np.array(got["probabilities"]) - probs).max() < 1e-5


def assert_same_for(saved, result: dict, path: Path, predicted: dict) -> None:
    want = load_image(path, saved).numpy().reshape(-1).astype(int)
    got = np.array(result["pixels"], int)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1, f"{path.name}: pixels"
    probs = {t["class"]: t["probability"] for t in predicted["top"]}
    page = dict(zip(saved.classes, result["probabilities"], strict=True))
    assert max(abs(page[c] - probs[c]) for c in probs) < 1e-4, path.name


def test_colour_model_in_the_browser(open_page, toy, tmp_path) -> None:
    run, test = toy["colour"]
    saved = load_model(run)
    files = []
    for i in range(20):
        files.append(tmp_path / f"test-{i:02d}.png")
        Image.fromarray(test.images[i].numpy().transpose(1, 2, 0)).save(files[-1])
    for name, img in made_images(np.random.default_rng(2)).items():
        files.append(tmp_path / name)
        img.save(files[-1])
    w = open_page(run / REPORT_HTML)
    sizes = w.page.eval_on_selector_all(
        "#weights canvas, #cell-gallery canvas, #top-losses canvas",
        "(cs) => cs.filter((c) => !c.closest('.colorbar')).map((c) => [c.width, c.height])",
    )
    assert len(sizes) >= 4 + 1 and set(map(tuple, sizes)) == {(16, 12)}
    assert len(w.page.query_selector_all("#weights figure")) == 4
    assert w.page.query_selector("#try #ink") is not None
    w.page.click("[data-cell='2,2']")
    tiles = w.page.query_selector_all("#cell-gallery .tile canvas")
    assert len(tiles) == min(8, page_data(run / REPORT_HTML)["evaluation"]["confusion"][2][2])
    assert COLOURS[2] in w.page.inner_text("#cell-caption")
    for path, pred in zip(files, predict_json(run, files), strict=True):
        assert_same_for(saved, classify_in_page(w.page, path.read_bytes()), path, pred)


def test_feature_model_in_the_browser(open_page, toy) -> None:
    run, _ = toy["features"]
    w = open_page(run / REPORT_HTML)
    assert w.page.query_selector("#weights") is None and w.page.query_selector("#try") is None
    text = w.page.inner_text("#features")
    assert "standardised inputs" in text and "feature " in text
    assert len(w.page.query_selector_all("#features-table tbody tr")) == 3
    w.page.click("[data-cell='1,1']")
    conf = page_data(run / REPORT_HTML)["evaluation"]["confusion"]
    assert len(w.page.query_selector_all("#cell-gallery tr.example")) == min(8, conf[1][1])
    assert "beta → beta" in w.page.inner_text("#cell-gallery")
    assert w.page.query_selector_all("#top-losses tr.example")
    assert "20 features" in w.page.inner_text("#settings")


def test_sixty_classes_in_the_browser(open_page, toy, tmp_path) -> None:
    run, test = toy["many"]
    saved = load_model(run)
    data = page_data(run / REPORT_HTML)
    conf = data["evaluation"]["confusion"]
    w = open_page(run / REPORT_HTML)
    assert w.page.query_selector_all(".confusion button") == []  # a canvas, not 3,600 buttons
    canvas = w.page.locator("#confusion-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    i, j = 7, 7
    w.page.mouse.move(
        box["x"] + (j + 0.5) * box["width"] / 60, box["y"] + (i + 0.5) * box["height"] / 60
    )
    assert w.page.inner_text("#confusion-tip") == f"true class 07, predicted class 07: {conf[i][j]}"
    w.page.mouse.down()
    w.page.mouse.up()
    assert w.page.inner_text("#cell-caption").startswith(
        f"true class 07, predicted class 07: {conf[i][j]} "
    )
    assert len(w.page.query_selector_all("#cell-gallery .tile")) == min(
        conf[i][j], data["gallery"]["per_cell"]
    )
    first = w.page.locator("#evaluation button[data-cell]").first
    a, b = map(int, first.get_attribute("data-cell").split(","))
    off = max(conf[r][c] for r in range(60) for c in range(60) if r != c)
    assert a != b and conf[a][b] == off
    first.click()
    assert str(off) in w.page.inner_text("#cell-caption")
    # Try it under the Fashion-MNIST rule at this model's 20x24 (height x width).
    files = []
    for name, img in made_images(np.random.default_rng(3)).items():
        files.append(tmp_path / name)
        img.save(files[-1])
    for k in range(3):
        files.append(tmp_path / f"test-{k}.png")
        Image.fromarray(test.images[k, 0].numpy()).save(files[-1])  # already 20x24
    for path, pred in zip(files, predict_json(run, files), strict=True):
        assert_same_for(saved, classify_in_page(w.page, path.read_bytes()), path, pred)
    assert len(w.page.query_selector_all("#bars .bar")) == 20  # the most likely 20 of 60
