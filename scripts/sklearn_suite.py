"""scikit-learn's own test file as the judge of ``softmax_regression.sklearn``.

Copies the installed scikit-learn's ``sklearn/linear_model/tests/test_logistic.py`` and
``sklearn/conftest.py`` (its fixtures: ``global_random_seed``, ``global_dtype``, ...) into a
temporary folder and runs the file twice with pytest: once as shipped, once with
``from softmax_regression.sklearn import LogisticRegression, LogisticRegressionCV`` in place
of scikit-learn's two public classes (its private helpers stay scikit-learn's). Prints both
counts and every test that passes for scikit-learn but not for ours.

The tests allowed to differ, each with its reason, are the list in docs/sklearn.md under the
heading "scikit-learn's own tests" (items ``- `TEST ID`: reason``, or several ids before one
reason, ``- `A`, `B`: reason``). The script exits 1 when a test differs that the list does
not name, or when a listed test no longer differs (the list must stay true), and 2 when a
run could not be judged (nothing collected, pytest crashed).

Each run is a fresh pytest process in its own folder with its own empty ini: this
repository's pytest settings (``filterwarnings = error``, ``testpaths``) and plugins do not
apply, nor do ``PYTHONWARNINGS`` or ``SKLEARN_TESTS_GLOBAL_RANDOM_SEED`` from the caller.

    python scripts/sklearn_suite.py                 # both runs, judged against the list
    python scripts/sklearn_suite.py -- -k warm      # extra pytest arguments (only those run)
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "sklearn.md"
SECTION = "scikit-learn's own tests"
TEST_FILE = "test_logistic.py"
OURS = "softmax_regression.sklearn"
CLASSES = ("LogisticRegression", "LogisticRegressionCV")
# One entry: "- `test_id[params]`: reason", or several ids, "- `a[1]`, `a[2]`: reason" (the
# reason may run on over indented lines).
_ENTRY = re.compile(r"^[-*]\s+(?P<ids>`[^`]+`(?:\s*,\s*`[^`]+`)*)\s*:\s*(?P<reason>.*)$")


def sklearn_dir() -> Path:
    import sklearn

    return Path(sklearn.__file__).resolve().parent


def ours_source(source: str) -> str:
    """``source`` with scikit-learn's ``LogisticRegression`` and ``LogisticRegressionCV``
    imported from this package instead: the names are taken out of the module-level
    ``from sklearn.linear_model import ...`` that holds them (the rest of it kept) and our
    import put in its place. Raises when the file imports them some other way."""
    tree = ast.parse(source)
    for node in tree.body:
        if not (isinstance(node, ast.ImportFrom) and node.module == "sklearn.linear_model"):
            continue
        names = [a.name for a in node.names]
        if not set(CLASSES) <= set(names):
            continue
        if any(a.asname for a in node.names if a.name in CLASSES):
            break
        rest = [a for a in node.names if a.name not in CLASSES]
        lines = source.splitlines(keepends=True)
        new = f"from {OURS} import {', '.join(CLASSES)}\n"
        if rest:
            kept = ", ".join(a.name if not a.asname else f"{a.name} as {a.asname}" for a in rest)
            new = f"from sklearn.linear_model import {kept}\n" + new
        start, end = node.lineno - 1, node.end_lineno
        return "".join(lines[:start]) + new + "".join(lines[end:])
    raise SystemExit(
        f"{TEST_FILE} does not import {' and '.join(CLASSES)} in one plain "
        "'from sklearn.linear_model import ...' line: the substitution needs updating"
    )


def documented(doc: Path = DOC) -> dict[str, str]:
    """The tests allowed to differ, ``{test id: reason}``, from ``doc``'s section: each entry
    a list item whose indented continuation lines belong to it."""
    entries: list[str] = []
    inside = False
    for line in doc.read_text().splitlines():
        if line.startswith("#"):
            inside = line.lstrip("#").strip() == SECTION
        elif inside and re.match(r"[-*]\s", line):
            entries.append(line)
        elif inside and entries and line.startswith("  ") and line.strip():
            entries[-1] += " " + line.strip()
    allowed: dict[str, str] = {}
    for entry in entries:
        m = _ENTRY.match(entry)
        if not m or not m["reason"].strip():
            raise SystemExit(f"{doc.name}: not '- `TEST ID`: reason': {entry[:120]}")
        for test in re.findall(r"`([^`]+)`", m["ids"]):
            if test in allowed:
                raise SystemExit(f"{doc.name}: {test} is listed twice")
            allowed[test] = m["reason"].strip()
    return allowed


def results(junit: Path) -> dict[str, str]:
    """``{test id: "passed" | "failed" | "skipped"}`` from a junit XML report (errors count
    as failed; an expected failure as skipped)."""
    out: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")[1:]  # the module's name dropped
        test = "::".join([*parts, case.get("name", "")])
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            out[test] = "failed"
        elif "skipped" in tags:
            out[test] = "skipped"
        else:
            out[test] = "passed"
    return out


def run(label: str, source: str, conftest: Path, work: Path, extra: list[str]) -> dict[str, str]:
    folder = work / label
    folder.mkdir()
    (folder / TEST_FILE).write_text(source)
    shutil.copyfile(conftest, folder / "conftest.py")
    ini = folder / "pytest.ini"
    ini.write_text("[pytest]\n")  # no filterwarnings, no testpaths: pytest's defaults
    junit = folder / "junit.xml"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONWARNINGS", "SKLEARN_TESTS_GLOBAL_RANDOM_SEED", "PYTEST_ADDOPTS")
    }
    env["SKLEARN_SKIP_NETWORK_TESTS"] = "1"
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the plugins of this virtualenv stay out
    command = [
        sys.executable,
        "-m",
        "pytest",
        TEST_FILE,
        "-q",
        "-p",
        "no:cacheprovider",
        "-c",
        str(ini),
        "--rootdir",
        str(folder),
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit1",
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    # pytest's exit codes: 0 all passed, 1 some failed, 5 nothing collected; else it broke.
    if proc.returncode not in (0, 1) or not junit.exists():
        sys.stdout.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        print(f"{label}: pytest exited with {proc.returncode}; nothing to judge")
        raise SystemExit(2)
    found = results(junit)
    counts = {s: sum(v == s for v in found.values()) for s in ("passed", "failed", "skipped")}
    print(
        f"{label:>12}: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped ({seconds:.0f} s)"
    )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="run in this (new) folder and keep it")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    args = parser.parse_args(argv)
    allowed = documented()
    here = sklearn_dir()
    shipped = (here / "linear_model" / "tests" / TEST_FILE).read_text()
    conftest = here / "conftest.py"
    import sklearn

    print(f"scikit-learn {sklearn.__version__}: {here / 'linear_model' / 'tests' / TEST_FILE}")
    with tempfile.TemporaryDirectory(prefix="sklearn-suite-") as tmp:
        work = Path(tmp)
        if args.keep:
            work = args.keep.resolve()
            work.mkdir(parents=True)
        theirs = run("scikit-learn", shipped, conftest, work, args.pytest_args)
        ours = run("ours", ours_source(shipped), conftest, work, args.pytest_args)
    if not theirs:
        print("scikit-learn's run collected no test")
        return 2
    differ = sorted(t for t, s in theirs.items() if s == "passed" and ours.get(t) != "passed")
    gained = sorted(t for t, s in ours.items() if s == "passed" and theirs.get(t) != "passed")
    print(f"\n{len(differ)} pass for scikit-learn and not for ours:")
    for test in differ:
        mark = "listed" if test in allowed else "NOT LISTED"
        print(f"  {ours.get(test, 'missing'):>7}  {test}  [{mark}]")
    if gained:
        print(f"\n{len(gained)} pass for ours and not for scikit-learn:")
        for test in gained:
            print(f"  {test}")
    unlisted = [t for t in differ if t not in allowed]
    # With extra pytest arguments only the tests that ran can be judged stale.
    judged = set(theirs) if args.pytest_args else set(theirs) | set(allowed)
    stale = sorted(t for t in allowed if t in judged and t not in differ)
    if stale:
        print(f"\nlisted in {DOC.relative_to(ROOT)} but not differing (take them off the list):")
        for test in stale:
            why = "not in the file" if test not in theirs else f"scikit-learn {theirs[test]}"
            print(f"  {test}  ({why}; ours {ours.get(test, 'missing')})")
    if unlisted:
        print(f"\ndiffering but not listed in {DOC.relative_to(ROOT)} ({SECTION!r}):")
        for test in unlisted:
            print(f"  {test}")
    if unlisted or stale:
        return 1
    print(f"\nevery difference is listed in {DOC.relative_to(ROOT)}, and every listed one differs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
