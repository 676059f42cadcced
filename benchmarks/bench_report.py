"""The report page of a book run: how long writing it takes, and how long Chromium takes to
open it and answer a click.

Trains one book run (10 epochs, no figures) into a temporary directory, then, ``--repeats``
times each, alternating:

- ``write_report`` in this process, test split loaded by it (from the verified cache), beside
  ``runs.write_plots``, the run's four matplotlib PNGs that the page sits next to (the thing
  it is compared with: what a run already spends on pictures);
- ``softmax-regression report RUN`` as a whole process (import torch included), for scale;
- in headless Chromium (Debian's, driven by Playwright, one browser for all repeats, a fresh
  page each time): from ``goto`` to the page having drawn itself (``html[data-ready]``) and
  then to a confusion-cell click having filled the gallery: time to interactive. The page's
  own ``performance.now()`` at ready (navigation start to drawn) is reported too.

Targets: writing under 0.5 s, interactive under 1 s. Reports medians (and min-max).

    .venv/bin/python benchmarks/bench_report.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def median(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} s (min {min(xs):.3f}, max {max(xs):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from softmax_regression import TrainConfig, evaluate, load_fashion_mnist, train_run
    from softmax_regression.report import write_report
    from softmax_regression.runs.book import write_plots

    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    run = tmp / "book"
    outcome = train_run(TrainConfig(), out=run, train=train, test=test, plots=False)
    ev = evaluate(outcome.result.model, test)

    write_s, plots_s, cli_s = [], [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        page = write_report(run)
        write_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        write_plots(tmp / "plots", outcome.result, ev, test)
        plots_s.append(time.perf_counter() - t)
        exe = Path(sys.executable).with_name("softmax-regression")
        t = time.perf_counter()
        subprocess.run([str(exe), "report", str(run)], check=True, capture_output=True)
        cli_s.append(time.perf_counter() - t)

    ready_s, click_s, in_page_ms = [], [], []
    from playwright.sync_api import sync_playwright

    args_ = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args_)
        for _ in range(args.repeats):
            ctx = browser.new_context()
            pg = ctx.new_page()
            t = time.perf_counter()
            pg.goto(page.resolve().as_uri())
            pg.wait_for_selector("html[data-ready]", state="attached")
            ready_s.append(time.perf_counter() - t)
            pg.click("[data-cell='6,0']")
            pg.wait_for_selector("#cell-gallery .tile")
            click_s.append(time.perf_counter() - t)
            in_page_ms.append(pg.evaluate("() => window.softmaxReport.readyAt"))
            ctx.close()
        version = browser.version
        browser.close()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; Chromium {version}")  # fmt: skip
    print(f"page: {page.stat().st_size / 1e6:.2f} MB, repeats {args.repeats}")
    print(f"write_report (in process)           {median(write_s)}   target < 0.5 s")
    print(f"write_plots, the four PNGs (same)   {median(plots_s)}")
    print(f"softmax-regression report (process) {median(cli_s)}")
    print(f"Chromium: goto -> drawn             {median(ready_s)}")
    print(f"Chromium: goto -> cell click shown  {median(click_s)}   target < 1 s")
    print(f"Chromium: navigation start -> drawn (page's clock) "
          f"{statistics.median(in_page_ms):.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
